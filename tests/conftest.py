"""Shared fixtures: a real workspace (SQLite ledger, EC key) and an in-process CLI runner."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

# tests/ on sys.path: the shared helpers import as ``support.NAME`` from any test folder.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from custody.cli import main

REPO = Path(__file__).resolve().parents[1]
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
    url: str
    backend: str

    @property
    def home(self) -> Path:
        return self.root / ".custody"

    @property
    def pub(self) -> Path:
        return self.home / "keys" / "signing.pub"

    def entry_count(self) -> int:
        return int(self.sql("SELECT count(*) FROM ledger_entries")[0][0])

    def sql(self, statement: str, **params: Any) -> list[tuple[Any, ...]]:
        """Run SQL directly against the ledger database, as an administrator could."""
        engine = create_engine(self.url)
        try:
            with engine.begin() as conn:
                result = conn.execute(text(statement), params)
                return [tuple(r) for r in result] if result.returns_rows else []
        finally:
            engine.dispose()


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


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """URL of a PostgreSQL server for this test session (a throwaway one unless given)."""
    given = os.environ.get("CUSTODY_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    bindir = find_bindir()
    if bindir is None:
        if required():
            pytest.fail("PostgreSQL is required here (CI) but no initdb was found; "
                        "install postgresql (.ci/run does)")
        pytest.skip("no PostgreSQL binaries (initdb) on this machine")
    server = ThrowawayPostgres(bindir)
    try:
        url = server.start()
    except RuntimeError as exc:
        server.stop()
        if required():
            pytest.fail(f"PostgreSQL is required here (CI) but did not start: {exc}")
        pytest.skip(f"PostgreSQL did not start: {exc}")
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture
def fresh_database(request: pytest.FixtureRequest) -> str:
    """A new, empty PostgreSQL database on the session server."""
    server: str = request.getfixturevalue("postgres_server")
    name = f"t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return server.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def ws(tmp_path: Path, cli, backend: str, request: pytest.FixtureRequest  # type: ignore[no-untyped-def]
       ) -> Iterator[Workspace]:
    """A workspace (.custody/ with key and ledger) on SQLite or on PostgreSQL."""
    root = tmp_path / "project"
    root.mkdir()
    if backend == "postgresql":
        url = request.getfixturevalue("fresh_database")
        cli("init", "--ledger", url, cwd=root).expect(0)
    else:
        cli("init", cwd=root).expect(0)
        url = f"sqlite:///{root / '.custody' / 'ledger.db'}"
    yield Workspace(root, url, backend)


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


@pytest.fixture
def make_file():  # type: ignore[no-untyped-def]
    return write


# --- throwaway PostgreSQL ----------------------------------------------------------------



def required() -> bool:
    return os.environ.get("CI", "").lower() == "true" or os.environ.get(
        "CUSTODY_REQUIRE_POSTGRES") == "1"


def find_bindir() -> Path | None:
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    return candidates[0].parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThrowawayPostgres:
    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="custody-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.as_root = os.geteuid() == 0
        self.user = "postgres" if self.as_root else os.environ.get("USER", "postgres")

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)

    def start(self) -> str:
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
        self.root.chmod(0o755)
        init = self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust",
                         "-U", "postgres", "--no-sync", "-E", "UTF8")
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr.strip()}")
        opts = (f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                f"-c unix_socket_directories={self.root} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        start = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts,
                          "-l", str(self.root / "log"), "-w", "-t", "60", "start")
        if start.returncode != 0:
            log = (self.root / "log").read_text() if (self.root / "log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {start.stderr.strip()} {log[-2000:]}")
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        # -w: pg_ctl returns once the server has exited (postmaster.pid is gone), however long
        # that takes on a loaded machine; no polling loop of our own.
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
                  "-t", "120", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
