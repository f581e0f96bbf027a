"""Helpers for the service tests and benchmark: a real `custody serve` process on loopback,
tokens, and client-side signed records (loaded with importlib, like ledger_helpers)."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from custody.provenance.hashing.manifest import FileEntry, Manifest
from custody.provenance.ledger.store import Ledger
from custody.provenance.service.tokens import create_token
from custody.provenance.verification.attestation import RecordedInput, build_statement
from custody.signing.key_signer import ECKeySigner
from custody.signing.keys import load_private_key

CLEAN_SCAN = {"verdict": "clean", "max_severity": None, "threshold": "medium", "counts": {},
              "scanners": []}
ROLES = ("reader", "auditor", "publisher", "admin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_tokens(url: str) -> dict[str, str]:
    ledger = Ledger.open(url)
    try:
        return {role: create_token(ledger.engine, role, f"test {role}")[0] for role in ROLES}
    finally:
        ledger.close()


@contextmanager
def running_server(home: Path, *, env: dict[str, str] | None = None, args: tuple[str, ...] = (),
                   log: Path | None = None) -> Iterator[str]:
    """`custody serve` (via python -m custody) in ``home``; yields its URL.

    Synchronised on the server's own output, not on the clock: uvicorn prints "Uvicorn running
    on" once its socket listens and the application has started, and this waits for that line
    (however long start-up takes on a loaded machine), copying everything to the log file."""
    port = free_port()
    full_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    full_env.pop("CUSTODY_LEDGER", None)
    log_path = log or home / f"server-{port}.log"
    out = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "custody", "serve", "--host", "127.0.0.1",
         "--port", str(port), *args], cwd=home, env=full_env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    pipe = proc.stdout
    base = f"http://127.0.0.1:{port}"
    copier = None
    try:
        while True:
            line = pipe.readline()
            if not line:  # the server exited before it listened
                proc.wait()
                out.flush()
                raise RuntimeError("server exited: " + log_path.read_text()[-3000:])
            out.write(line)
            out.flush()
            if b"Uvicorn running on" in line:
                break
        copier = threading.Thread(target=_copy, args=(pipe, out), daemon=True)
        copier.start()
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if copier is not None:
            copier.join(timeout=60)
        pipe.close()
        out.close()


def _copy(source: IO[bytes], sink: IO[bytes]) -> None:
    for chunk in iter(lambda: source.read1(65536), b""):  # type: ignore[attr-defined]
        sink.write(chunk)
        sink.flush()


def signer_from(path: Path) -> ECKeySigner:
    return ECKeySigner(load_private_key(path))


def signed_record(signer: ECKeySigner, name: str, kind: str, version: int, content: bytes,
                  inputs: list[dict[str, Any]] | None = None, scan: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    """The body of POST /v1/records for a one-file artifact, signed by ``signer``.
    ``inputs`` items: {"name", "version", "digest": "algorithm:hex", "activity"}."""
    digest = hashlib.sha256(content).hexdigest()
    manifest = Manifest.for_file(f"{name}.bin", FileEntry(f"{name}.bin", len(content), digest))
    recorded = [RecordedInput(i["name"], int(i["version"]), i["digest"].split(":")[0],
                              i["digest"].split(":")[1], i.get("activity", "trained_on"))
                for i in inputs or []]
    statement = build_statement(name=name, kind=kind, version=version, manifest=manifest,
                                inputs=recorded, scan_summary=scan or CLEAN_SCAN,
                                recorded_at=datetime.now(UTC), tool_version="test").to_bytes()
    return {"bundle": signer.sign_statement(statement)}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
