"""Bad input gets exit 2, a clear message, no traceback, and nothing written to the ledger."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest


def _unchanged(ws, before: int) -> None:  # type: ignore[no-untyped-def]
    assert ws.entry_count() == before


def test_missing_path(ws, cli) -> None:  # type: ignore[no-untyped-def]
    before = ws.entry_count()
    cli("record", ws.root / "nope.bin", "--name", "x", "--kind", "model", cwd=ws.root).expect(
        2, "nope.bin", "No such file")
    cli("verify", ws.root / "nope.bin", cwd=ws.root).expect(2, "nope.bin")
    cli("hash", ws.root / "nope.bin", cwd=ws.root).expect(2, "nope.bin")
    _unchanged(ws, before)


def test_broken_symlink(ws, cli) -> None:  # type: ignore[no-untyped-def]
    link = ws.root / "dangling.bin"
    link.symlink_to(ws.root / "missing-target")
    before = ws.entry_count()
    cli("record", link, "--name", "x", "--kind", "model", cwd=ws.root).expect(
        2, "broken symbolic link")
    _unchanged(ws, before)


def test_symlink_leaving_the_tree(ws, cli, make_file, tmp_path) -> None:  # type: ignore[no-untyped-def]
    secret = make_file(tmp_path / "outside" / "secret.txt", "do not ship")
    d = ws.root / "model"
    make_file(d / "weights.bin", b"w")
    (d / "leak.txt").symlink_to(secret)
    before = ws.entry_count()
    cli("record", d, "--name", "x", "--kind", "model", cwd=ws.root).expect(
        2, "leak.txt", "points outside")
    cli("record", d, "--name", "x", "--kind", "model", "--allow-symlinks", cwd=ws.root).expect(
        2, "points outside")
    _unchanged(ws, before)


def test_symlink_inside_tree_refused_by_default(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    d = ws.root / "model"
    make_file(d / "weights.bin", b"w")
    (d / "alias.bin").symlink_to("weights.bin")
    cli("hash", d, cwd=ws.root).expect(2, "alias.bin", "--allow-symlinks")
    out = cli("hash", d, "--allow-symlinks", "--json", cwd=ws.root).expect(0).json()
    assert [r["name"] for r in out["resources"]] == ["alias.bin", "weights.bin"]


def test_fifo(ws, cli) -> None:  # type: ignore[no-untyped-def]
    fifo = ws.root / "pipe"
    os.mkfifo(fifo)
    before = ws.entry_count()
    cli("record", fifo, "--name", "x", "--kind", "model", cwd=ws.root).expect(2, "FIFO")
    d = ws.root / "dir"
    d.mkdir()
    (d / "ok.bin").write_bytes(b"x")
    os.mkfifo(d / "pipe")
    cli("record", d, "--name", "x", "--kind", "model", cwd=ws.root).expect(2, "pipe", "FIFO")
    _unchanged(ws, before)


def _run_unprivileged(fn) -> int:  # type: ignore[no-untyped-def]
    """Run ``fn`` in a forked child that dropped root, so file permissions apply."""
    pid = os.fork()
    if pid == 0:  # child
        code = 3
        try:
            os.setgid(65534)
            os.setuid(65534)
            code = fn()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_unreadable_file(tmp_path, capfd) -> None:  # type: ignore[no-untyped-def]
    from custody.cli import main

    target = tmp_path / "secret.bin"
    target.write_bytes(b"cannot read me")
    target.chmod(0)
    tmp_path.chmod(0o755)
    if os.geteuid() == 0:
        code = _run_unprivileged(lambda: main(["hash", str(target)]))
    else:
        code = main(["hash", str(target)])
    err = capfd.readouterr().err
    assert code == 2, err
    assert "Permission denied" in err
    assert "Traceback" not in err
    target.chmod(stat.S_IRUSR | stat.S_IWUSR)


def test_unknown_ref(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    m = make_file(ws.root / "m.bin", b"model")
    before = ws.entry_count()
    cli("record", m, "--name", "m", "--kind", "model", "--input", "ghost@3", cwd=ws.root).expect(
        2, "ghost")
    cli("record", m, "--name", "m", "--kind", "model", "--input", "sha256:" + "0" * 64,
        cwd=ws.root).expect(2, "no recorded artifact")
    cli("record", m, "--name", "m", "--kind", "model", "--input", "ghost@latest",
        cwd=ws.root).expect(2, "invalid reference")
    cli("lineage", "ghost", cwd=ws.root).expect(2, "no artifact named ghost")
    _unchanged(ws, before)


def test_bad_options(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    m = make_file(ws.root / "m.bin", b"model")
    cli("record", m, "--name", "m", "--kind", "weights", cwd=ws.root).expect(2, "unknown kind")
    cli("record", m, "--name", "../m", "--kind", "model", cwd=ws.root).expect(
        2, "invalid artifact name")
    cli("record", m, "--name", "m", "--kind", "model", "--activity", "stole", cwd=ws.root).expect(
        2, "unknown activity")
    cli("record", m, "--name", "m", "--kind", "model", "--threshold", "severe",
        cwd=ws.root).expect(2, "unknown severity")
    cli("verify", cwd=ws.root).expect(2)
    assert ws.entry_count() == 0


def test_corrupt_ledger(tmp_path, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    junk = make_file(tmp_path / "ledger.db", b"this is not a database" * 100)
    m = make_file(tmp_path / "m.bin", b"model")
    key_dir = tmp_path / "k"
    key_dir.mkdir()
    cli("keygen", "--out", key_dir / "k", cwd=tmp_path).expect(0)
    cli("--ledger", junk, "record", m, "--name", "m", "--kind", "model", "--key",
        key_dir / "k.key", cwd=tmp_path).expect(2, "is not an SQLite database")
    assert junk.read_bytes() == b"this is not a database" * 100
    cli("--ledger", tmp_path / "missing.db", "list", cwd=tmp_path).expect(2, "no ledger database")
    cli("--ledger", "mysql://x@y/z", "list", cwd=tmp_path).expect(2, "unsupported ledger")


def test_no_workspace(tmp_path, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    m = make_file(tmp_path / "m.bin", b"model")
    cli("verify", m, cwd=tmp_path).expect(2, "custody init")


def test_env_ledger_and_upward_search(ws, cli, make_file, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    sub = ws.root / "deep" / "er"
    sub.mkdir(parents=True)
    m = make_file(sub / "m.bin", b"model")
    cli("record", m, "--name", "m", "--kind", "model", cwd=sub).expect(0)
    assert ws.entry_count() == 1
    elsewhere = ws.root.parent / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("CUSTODY_LEDGER", ws.url)
    listing = cli("list", "--json", cwd=elsewhere).expect(0).json()
    assert [r["ref"] for r in listing] == ["m@1"]


def test_init_twice_refused(ws, cli) -> None:  # type: ignore[no-untyped-def]
    cli("init", cwd=ws.root).expect(2, "already")


def test_keygen_mode_and_no_overwrite(tmp_path, cli) -> None:  # type: ignore[no-untyped-def]
    cli("keygen", "--out", tmp_path / "k", cwd=tmp_path).expect(0)
    assert stat.S_IMODE((tmp_path / "k.key").stat().st_mode) == 0o600
    assert b"BEGIN PUBLIC KEY" in (tmp_path / "k.pub").read_bytes()
    before = (tmp_path / "k.key").read_bytes()
    cli("keygen", "--out", tmp_path / "k", cwd=tmp_path).expect(2, "already exists")
    assert (tmp_path / "k.key").read_bytes() == before


def test_json_error_output(ws, cli) -> None:  # type: ignore[no-untyped-def]
    res = cli("--json", "verify", Path("nope"), cwd=ws.root).expect(2)
    body = res.json()
    assert body["ok"] is False
    assert body["error"] == "ArtifactError"
    assert "nope" in body["message"]
