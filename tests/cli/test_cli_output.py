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


# --- user text is printed verbatim: no markup, no emoji -----------------------------------

HOSTILE = "a:train:[bold]x"


def _self_signed(tmp_path: Path, common_name: str) -> tuple[Path, Path]:
    """An EC key and a self-signed certificate whose subject is ``CN=common_name``."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .sign(key, hashes.SHA256()))
    key_path, cert_path = tmp_path / "signer.key", tmp_path / "signer.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)  # custody refuses private keys that others may read
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def test_markup_and_emoji_in_a_signer_name_print_verbatim(cli, project) -> None:  # type: ignore[no-untyped-def]
    """A certificate subject chosen to look like Rich markup and an emoji code."""
    key, cert = _self_signed(project, HOSTILE)
    signer = f"x509:CN={HOSTILE}"
    model = project / "m2.bin"
    model.write_bytes(b"other weights")
    rec = cli("record", model, "--name", "m2", "--kind", "model", "--input", "train@1",
              "--key", key, "--cert", cert, cwd=project).expect(0)
    assert f"signed by {signer};" in rec.err
    assert signer in cli("list", cwd=project).expect(0).out
    assert f"signed by {signer}" in cli("lineage", "m2", cwd=project).expect(0).out
    assert f"signed by {signer}" in cli("lineage", "train", "--downstream",
                                         cwd=project).expect(0).out


def test_markup_and_emoji_in_file_names_print_verbatim(cli, project) -> None:  # type: ignore[no-untyped-def]
    folder = project / f"d-{HOSTILE}"
    folder.mkdir()
    (folder / f"{HOSTILE}.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    assert f"{HOSTILE}.csv" in cli("hash", folder, cwd=project).expect(0).out
    assert f"scan of {folder}:" in cli("scan", folder, cwd=project).expect(0).err
    cli("record", folder, "--name", "d", "--kind", "dataset", cwd=project).expect(0)
    assert f"VERIFIED {folder}:" in cli("verify", folder, cwd=project).expect(0).out


def test_markup_and_emoji_in_error_messages_print_verbatim(cli, project) -> None:  # type: ignore[no-untyped-def]
    res = cli("record", project / "model.bin", "--name", HOSTILE, "--kind", "model",
              cwd=project).expect(2)
    assert f"invalid artifact name {HOSTILE!r}" in res.err
    assert HOSTILE in cli("lineage", f"{HOSTILE}@1", cwd=project).expect(2).err


def test_markup_in_a_token_label_prints_verbatim(cli, project) -> None:  # type: ignore[no-untyped-def]
    cli("token", "create", "--role", "reader", "--label", f"ci\t{HOSTILE}", cwd=project).expect(0)
    listed = cli("token", "list", cwd=project).expect(0).out
    assert listed.rstrip("\n").split("\t")[1:] == ["reader", "active", listed.split("\t")[3],
                                                   "ci", HOSTILE]


def test_a_glob_character_class_in_a_policy_rule_prints_verbatim(cli, project) -> None:  # type: ignore[no-untyped-def]
    policy = project / "policy.toml"
    policy.write_text('version = 1\n[signers.team]\nkeys = [".custody/keys/signing.pub"]\n'
                      '[[trust]]\nname = "m-[ab]*:train:"\nsigners = ["team"]\n', encoding="utf-8")
    res = cli("policy", "check", policy, cwd=project).expect(0)
    assert "m-[ab]*:train:" in res.err


# --- nothing is cut or wrapped when the output is not a terminal ----------------------------

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"


def _row(text: str, needle: str) -> str:
    """The one output line holding ``needle`` (a wrapped cell would split it over lines)."""
    rows = [line for line in text.splitlines() if needle in line]
    assert len(rows) == 1, (needle, text)
    return rows[0]


def test_tables_are_not_cut_in_a_log(cli, project, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("COLUMNS", raising=False)  # a CI log: no terminal, no COLUMNS
    long_cn = "training-pipeline-signer-with-a-long-common-name.example.com"
    key, cert = _self_signed(project, long_cn)
    name = "train-set-with-a-name-much-longer-than-a-terminal-column-would-show"
    data = project / "big.csv"
    data.write_text("a,b\n5,6\n", encoding="utf-8")
    rec = cli("record", data, "--name", name, "--kind", "dataset", "--key", key, "--cert", cert,
              cwd=project).expect(0)
    digest = rec.out.split()[1]
    row = _row(cli("list", cwd=project).expect(0).out, f"{name}@1")
    assert digest in row and f"x509:CN={long_cn}" in row and "…" not in row
    tree = cli("lineage", f"{name}@1", cwd=project).expect(0).out
    assert digest in _row(tree, name) and f"signed by x509:CN={long_cn}" in _row(tree, name)
    assert len(_row(tree, name)) > 200


def test_scan_and_hash_tables_are_not_wrapped_in_a_log(cli, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("COLUMNS", raising=False)
    folder = tmp_path / "models"
    deep = folder / "a-very-long-directory-name-for-checkpoints" / "epoch-0042-of-a-long-run"
    deep.mkdir(parents=True)
    evil = deep / "malicious-checkpoint-with-a-long-file-name.pkl"
    evil.write_bytes((SAMPLES / "malicious.pkl").read_bytes())
    relpath = evil.relative_to(folder).as_posix()
    res = cli("scan", folder, cwd=tmp_path).expect(1)
    findings = cli("scan", folder, "--json", cwd=tmp_path).expect(1).json()["findings"]
    for finding in findings:
        row = _row(res.out, finding["message"])
        assert finding["rule_id"] in row and finding["path"] in row
    assert _row(res.out, relpath)
    listing = cli("hash", folder, cwd=tmp_path).expect(0).out
    manifest = cli("hash", folder, "--json", cwd=tmp_path).expect(0).json()
    assert manifest["resources"][0]["digest"] in _row(listing, relpath)
