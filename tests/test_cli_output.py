"""CLI messages and output: --version, --json everywhere, verbatim user text, untruncated
tables when not on a terminal, and --help with examples and choices."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from custody import __version__


def test_version_prints_and_exits_zero(cli) -> None:  # type: ignore[no-untyped-def]
    assert cli("--version").expect(0).out == f"custody {__version__}\n"
    # eager: works before any command and ignores the rest of the line
    assert cli("--version", "list").expect(0).out == f"custody {__version__}\n"


def test_version_from_the_console_script() -> None:
    run = subprocess.run([sys.executable, "-m", "custody.cli", "--version"], capture_output=True,
                         text=True, check=False)
    assert (run.returncode, run.stdout, run.stderr) == (0, f"custody {__version__}\n", "")


@pytest.fixture
def project(tmp_path: Path, cli) -> Path:  # type: ignore[no-untyped-def]
    """A SQLite workspace with one dataset and a model trained on it."""
    cli("init", cwd=tmp_path).expect(0)
    data = tmp_path / "train.csv"
    data.write_text("a,b\n1,2\n3,4\n", encoding="utf-8")
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights")
    cli("record", data, "--name", "train", "--kind", "dataset", cwd=tmp_path).expect(0)
    cli("record", model, "--name", "m", "--kind", "model", "--input", "train@1",
        cwd=tmp_path).expect(0)
    return tmp_path


def test_lineage_json_alone_is_json(cli, project) -> None:  # type: ignore[no-untyped-def]
    body = cli("lineage", "m", "--json", cwd=project).expect(0).json()
    assert body["root"] == "m@1"
    assert cli("--json", "lineage", "m", cwd=project).expect(0).json() == body


@pytest.mark.parametrize("fmt", ["json", "openlineage", "cyclonedx", "prov"])
def test_lineage_json_with_a_json_format_uses_that_format(cli, project, fmt) -> None:  # type: ignore[no-untyped-def]
    alone = cli("lineage", "m", "--format", fmt, cwd=project).expect(0).out
    both = cli("lineage", "m", "--format", fmt, "--json", cwd=project).expect(0).out
    assert both == alone
    json.loads(both)


@pytest.mark.parametrize("fmt", ["dot", "table"])
@pytest.mark.parametrize("where", ["global", "local"])
def test_lineage_json_with_a_non_json_format_is_a_usage_error(cli, project, fmt, where) -> None:  # type: ignore[no-untyped-def]
    args = ["lineage", "m", "--format", fmt]
    args = ["--json", *args] if where == "global" else [*args, "--json"]
    res = cli(*args, cwd=project).expect(2, f"--format {fmt} is not JSON", "drop --json")
    assert json.loads(res.out)["ok"] is False  # the error itself is JSON, as --json promised
    assert "digraph" not in res.out


def test_token_revoke_json(cli, project) -> None:  # type: ignore[no-untyped-def]
    made = cli("token", "create", "--role", "reader", "--json", cwd=project).expect(0).json()
    body = cli("token", "revoke", str(made["id"]), "--json", cwd=project).expect(0).json()
    assert body == {"ok": True, "id": made["id"], "revoked": True}
    listed = cli("token", "list", "--json", cwd=project).expect(0).json()
    assert [(t["id"], t["revoked"]) for t in listed["tokens"]] == [(made["id"], True)]
    again = cli("token", "revoke", str(made["id"]), "--json", cwd=project).expect(2)
    assert again.json()["ok"] is False
