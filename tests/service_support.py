"""Helpers for the service tests and benchmark: a real `custody serve` process on loopback,
tokens, and client-side signed records (loaded with importlib, like ledger_helpers)."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from custody.provenance.attestation import RecordedInput, build_statement
from custody.provenance.ledger.store import Ledger
from custody.provenance.manifest import FileEntry, Manifest
from custody.provenance.service.tokens import create_token
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
    """`custody serve` (via python -m custody.provenance.service) in ``home``; yields its URL."""
    port = free_port()
    full_env = {**os.environ, **(env or {})}
    full_env.pop("CUSTODY_LEDGER", None)
    out = (log or home / f"server-{port}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "custody.provenance.service", "serve", "--host", "127.0.0.1",
         "--port", str(port), *args], cwd=home, env=full_env, stdout=out,
        stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                out.flush()
                raise RuntimeError("server exited: " + Path(out.name).read_text()[-3000:])
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start: " + Path(out.name).read_text()[-3000:])
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()


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
