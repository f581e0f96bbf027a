"""Workspace safety: private keys never get staged by git, loose key modes refuse, and every
hint about a missing, unreachable or shared ledger leads somewhere when followed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid",
                           *args], cwd=root, capture_output=True, text=True, check=True,
                          timeout=60)
    return done.stdout


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_add_all_stages_no_private_key(ws, cli, make_file
                                           ) -> None:  # type: ignore[no-untyped-def]
    cli("record", make_file(ws.root / "data.csv", "a\n1\n"), "--name", "d", "--kind",
        "dataset", cwd=ws.root).expect(0)  # the SQLite ledger now has -wal/-shm files too
    _git(ws.root, "init", "-q")
    _git(ws.root, "add", ".")
    staged = sorted(line[3:] for line in _git(ws.root, "status", "--porcelain").splitlines()
                    if line.startswith("A "))
    assert ".custody/config.toml" in staged
    assert ".custody/keys/signing.pub" in staged
    assert ".custody/.gitignore" in staged
    assert not [p for p in staged if p.endswith((".key", ".skey"))], staged
    assert not [p for p in staged if ".db" in p], staged
    # the keys are really there, git just ignores them
    assert (ws.home / "keys" / "signing.key").is_file()
    assert (ws.home / "keys" / "ledger.skey").is_file()


@pytest.mark.parametrize("key", ["signing.key", "ledger.skey"])
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620])
def test_group_or_world_accessible_key_refuses(ws, cli, make_file, key: str, mode: int
                                               ) -> None:  # type: ignore[no-untyped-def]
    data = make_file(ws.root / "data.csv", "a\n1\n")
    path = ws.home / "keys" / key
    path.chmod(mode)
    before = ws.entry_count()
    res = cli("record", data, "--name", "d", "--kind", "dataset", cwd=ws.root)
    res.expect(2, str(path), f"chmod 600 {path}")
    assert ws.entry_count() == before
    cli("revoke", "d", "--reason", "x", cwd=ws.root).expect(2, f"chmod 600 {path}")
    subprocess.run(["chmod", "600", str(path)], check=True, timeout=30)  # follow the hint
    cli("record", data, "--name", "d", "--kind", "dataset", cwd=ws.root).expect(0, "d@1")


def test_loose_explicit_key_refuses_in_json(ws, cli, make_file
                                            ) -> None:  # type: ignore[no-untyped-def]
    cli("keygen", "--out", ws.root / "other", cwd=ws.root).expect(0)
    (ws.root / "other.key").chmod(0o644)
    data = make_file(ws.root / "data.csv", "a\n1\n")
    res = cli("record", data, "--name", "d", "--kind", "dataset", "--key", "other.key",
              "--json", cwd=ws.root).expect(2)
    assert "KeyMaterialError" in res.out and "chmod 600 other.key" in res.out
