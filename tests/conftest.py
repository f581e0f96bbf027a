"""Shared fixtures: a real workspace (SQLite ledger, EC key) and an in-process CLI runner."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from custody.cli import main

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SAMPLES = REPO / "sample_data"


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def expect(self, code: int, *needles: str) -> Result:
        """The command exited with ``code``, said each needle, and printed no traceback."""
        assert self.code == code, (self.code, self.out, self.err)
        assert "Traceback" not in self.err
        text = self.err + self.out
        for needle in needles:
            assert needle in text, (needle, text)
        return self


@dataclass
class Workspace:
    root: Path

    @property
    def home(self) -> Path:
        return self.root / ".custody"

    @property
    def db(self) -> Path:
        return self.home / "ledger.db"

    @property
    def pub(self) -> Path:
        return self.home / "keys" / "signing.pub"

    def entry_count(self) -> int:
        with sqlite3.connect(self.db) as conn:
            return int(conn.execute("SELECT count(*) FROM ledger_entries").fetchone()[0])

    def sql(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.db)
        try:
            rows = conn.execute(statement, params).fetchall()
            conn.commit()
            return rows
        finally:
            conn.close()


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Run ``custody ARGS...`` in-process in a given folder; return code, stdout, stderr."""
    monkeypatch.delenv("CUSTODY_LEDGER", raising=False)
    monkeypatch.setenv("COLUMNS", "200")

    def run(*args: str | Path, cwd: Path | None = None) -> Result:
        capsys.readouterr()
        old = Path.cwd()
        if cwd is not None:
            os.chdir(cwd)
        try:
            code = main([str(a) for a in args])
        finally:
            os.chdir(old)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def ws(tmp_path: Path, cli) -> Iterator[Workspace]:  # type: ignore[no-untyped-def]
    root = tmp_path / "project"
    root.mkdir()
    result = cli("init", cwd=root)
    assert result.code == 0, result.err
    yield Workspace(root)


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


@pytest.fixture
def make_file():  # type: ignore[no-untyped-def]
    return write
