"""Ledger errors say what happened and hints lead somewhere: each test follows the hint."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unknown_ref_hint_lists_versions(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    cli("record", make_file(ws.root / "d.bin", b"d"), "--name", "d", "--kind", "dataset",
        cwd=ws.root).expect(0)
    cli("lineage", "nope", cwd=ws.root).expect(2, "no artifact named nope", "`custody list`")
    cli("lineage", "d@7", cwd=ws.root).expect(2, "d has no version 7", "`custody list`")
    cli("list", cwd=ws.root).expect(0, "d@1")


@pytest.mark.parametrize("backend", ["sqlite"])
def test_deleted_ledger_says_history_is_gone(ws, cli, make_file, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cli("record", make_file(ws.root / "d.bin", b"d"), "--name", "d", "--kind", "dataset",
        cwd=ws.root).expect(0)
    db = ws.home / "ledger.db"
    backup = shutil.copy(db, tmp_path / "backup.db")
    db.unlink()
    for cmd in (("list",), ("record", ws.root / "d.bin", "--name", "d", "--kind", "dataset")):
        cli(*cmd, cwd=ws.root).expect(2, f"{db} of the workspace", "is missing",
                                      "history", "restore", "from a backup")
        assert not db.exists()  # never silently an empty ledger
    shutil.copy(backup, db)  # hint 1: restore it
    cli("list", cwd=ws.root).expect(0, "d@1")
    db.unlink()
    ws.home.rename(ws.root / ".custody.old")  # hint 2: move it aside and init again
    cli("init", cwd=ws.root).expect(0)
    cli("list", cwd=ws.root).expect(0)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_garbage_sqlite_file_is_not_a_database(ws, cli) -> None:  # type: ignore[no-untyped-def]
    db = ws.home / "ledger.db"
    db.write_bytes(b"this is not a database, just text " * 100)
    cli("list", cwd=ws.root).expect(2, f"{db} is not an SQLite database", "restore the ledger")


def test_postgres_unreachable_names_host_and_port(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("psycopg")
    port = _free_port()  # nothing listens there
    url = f"postgresql+psycopg://custody@127.0.0.1:{port}/ledger"
    cli("--ledger", url, "list", cwd=tmp_path).expect(
        2, f"cannot connect to the PostgreSQL ledger at 127.0.0.1:{port}", "is the server running")
    cli("init", "--ledger", url, cwd=tmp_path).expect(2, f"127.0.0.1:{port}", "is the server")
    assert not (tmp_path / ".custody").exists()


def test_postgres_without_schema_then_hint_followed(cli, fresh_database, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cli("--ledger", fresh_database, "list", cwd=tmp_path).expect(
        2, "reachable but holds no Custody ledger", "custody init --ledger URL")
    (tmp_path / "new").mkdir()
    cli("init", "--ledger", fresh_database, cwd=tmp_path / "new").expect(0)
    cli("--ledger", fresh_database, "list", cwd=tmp_path).expect(0)


def test_second_workspace_joins_shared_postgres(cli, fresh_database, tmp_path, make_file) -> None:  # type: ignore[no-untyped-def]
    first, second, third = (tmp_path / n for n in ("first", "second", "third"))
    for folder in (first, second, third):
        folder.mkdir()
    cli("init", "--ledger", fresh_database, cwd=first).expect(0)
    cli("record", make_file(first / "a.bin", b"a"), "--name", "a", "--kind", "dataset",
        cwd=first).expect(0, "a@1")
    cli("init", "--ledger", fresh_database, cwd=second).expect(0, "read-only", "--ledger-key")
    b = make_file(second / "b.bin", b"b")
    refused = cli("record", b, "--name", "b", "--kind", "dataset", cwd=second).expect(
        2, "needs its checkpoint key", "keys/ledger.skey", "ledger_key =")
    assert "b@1" not in refused.out
    # Follow the hint: copy the key (mode 600) and name it in config.toml.
    key = Path(shutil.copy(first / ".custody" / "keys" / "ledger.skey", second / "ledger.skey"))
    key.chmod(0o600)
    with (second / ".custody" / "config.toml").open("a", encoding="utf-8") as config:
        config.write(f'ledger_key = "{key}"\n')
    cli("record", b, "--name", "b", "--kind", "dataset", cwd=second).expect(0, "b@1")
    # Or at init: --ledger-key FILE; a key of another ledger is refused there.
    other = tmp_path / "other"
    other.mkdir()
    cli("init", cwd=other).expect(0)
    cli("init", "--ledger", fresh_database, "--ledger-key",
        other / ".custody" / "keys" / "ledger.skey", cwd=third).expect(
        2, "not this ledger's", "keys/ledger.skey")
    assert not (third / ".custody").exists()
    cli("init", "--ledger", fresh_database, "--ledger-key", key, cwd=third).expect(0)
    cli("record", make_file(third / "c.bin", b"c"), "--name", "c", "--kind", "dataset",
        "--input", "a", "--input", "b", cwd=third).expect(0, "c@1")
    for folder in (first, second, third):
        cli("list", cwd=folder).expect(0, "a@1", "b@1", "c@1")
    cli("audit", "verify", cwd=first).expect(0)
