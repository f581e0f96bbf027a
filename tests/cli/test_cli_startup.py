"""The CLI stays light: ``custody --help`` must not import the heavy libraries."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("great_expectations", "dvc", "sigstore", "pandas", "sqlalchemy", "sqlmodel", "pyarrow",
         "numpy")


def test_help_does_not_import_heavy_modules() -> None:
    code = (
        "import sys, json\n"
        "from custody.cli import main\n"
        "rc = main(['--help'])\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "sys.stderr.write(json.dumps({'rc': rc, 'heavy': heavy}))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(run.stderr.strip().splitlines()[-1])
    assert result == {"rc": 0, "heavy": []}
    assert "quickstart" in run.stdout and "verify" in run.stdout


def test_exit_code_two_for_usage_errors() -> None:
    run = subprocess.run([sys.executable, "-m", "custody.cli", "verify"], capture_output=True,
                         text=True, check=False)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr


def test_quickstart_in_an_empty_folder(tmp_path) -> None:  # type: ignore[no-untyped-def]
    run = subprocess.run([sys.executable, "-m", "custody.cli", "quickstart", "--json"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    body = json.loads(run.stdout)
    assert body["ok"] is True
    assert body["verified"]["artifact"]["ref"] == "sample-model@1"
    assert [n["ref"] for n in body["verified"]["chain"]] == ["sample-dataset@1"]
    rules = [r["rule"] for r in body["refusals"]]
    assert rules[:2] == ["artifact.modified", "pickle.global.dangerous"]
    assert rules[2].startswith("poison.")
    assert (tmp_path / ".custody" / "ledger.db").is_file()
