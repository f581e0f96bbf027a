"""A real ``mlflow server`` on loopback for the MLflow gate's tests: SQLite backend store, local
artifact destination served through the tracking server (``mlflow-artifacts:``), webhooks
enabled for a receiver on 127.0.0.1 over http.

Readiness is MLflow's own ``/health`` endpoint, polled until it answers (bounded by a deadline,
no fixed sleep); the wait between polls is ``proc.wait``, which also notices a server that
exited. Also: a recording relay that sits between MLflow and ``custody serve`` on loopback and
keeps every delivery (headers, body, the answer), so that a test can replay a real one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from support.service_support import free_port

# What the MLflow server must be told so that it delivers to a receiver on loopback over http.
# In a cluster the same two are what a webhook to an in-cluster service needs (docs/service.md).
WEBHOOK_ENV = {
    "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
    "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
    "MLFLOW_WEBHOOK_CACHE_TTL": "0",  # webhooks created during the test are seen at once
    "MLFLOW_WEBHOOK_REQUEST_MAX_RETRIES": "0",
}


class MlflowServer:
    """``mlflow server`` with its stores under ``root``: :meth:`start` returns at once (the server
    takes a while to import and migrate its database; do other set-up meanwhile),
    :meth:`wait_healthy` blocks until ``/health`` answers."""

    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "mlflow-server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> MlflowServer:
        from cryptography.fernet import Fernet

        self.root.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **WEBHOOK_ENV,
               "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": Fernet.generate_key().decode(),
               "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
               "PYTHONUNBUFFERED": "1"}
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN", "MLFLOW_REGISTRY_URI"):
            env.pop(name, None)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server",
                 "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
                 "--artifacts-destination", str(self.root / "artifacts"),
                 "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
                cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def wait_healthy(self, deadline: float = 180.0) -> str:
        assert self.proc is not None
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            try:
                if httpx.get(self.uri + "/health", timeout=5).status_code == 200:
                    return self.uri
            except httpx.HTTPError:
                pass
            try:
                self.proc.wait(timeout=0.25)  # the pause between polls; returns if it died
            except subprocess.TimeoutExpired:
                continue
            raise RuntimeError("mlflow server exited: " + self.log_tail())
        raise RuntimeError(f"mlflow server not healthy after {deadline}s: " + self.log_tail())

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextmanager
def running_mlflow(root: Path) -> Iterator[str]:
    """``mlflow server`` with its stores under ``root``; yields its tracking URI once healthy."""
    server = MlflowServer(root).start()
    try:
        yield server.wait_healthy()
    finally:
        server.stop()


class MlflowApi:
    """The REST calls a test makes to MLflow (what the MLflow client would send)."""

    def __init__(self, uri: str):
        self.uri = uri

    def call(self, method: str, path: str, **kwargs: object) -> dict[str, object]:
        r = httpx.request(method, f"{self.uri}/api/2.0/mlflow/{path}", timeout=60,
                          **kwargs)  # type: ignore[arg-type]
        assert r.status_code == 200, (method, path, r.status_code, r.text)
        return r.json()  # type: ignore[no-any-return]

    def log_directory(self, source: Path) -> tuple[str, str]:
        """A new run holding ``source``'s files under ``model/``: (run id, the source URI)."""
        run = self.call("POST", "runs/create", json={"experiment_id": "0"})["run"]
        info = run["info"]  # type: ignore[index]
        run_id, root = info["run_id"], info["artifact_uri"]  # type: ignore[index]
        assert root.startswith("mlflow-artifacts:/"), root
        rel = root.removeprefix("mlflow-artifacts:/").strip("/")
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            name = path.relative_to(source).as_posix()
            r = httpx.put(f"{self.uri}/api/2.0/mlflow-artifacts/artifacts/{rel}/model/{name}",
                          content=path.read_bytes(), timeout=60)
            assert r.status_code == 200, r.text
        return run_id, f"{root}/model"

    def register(self, name: str, source: str, run_id: str,
                 tags: dict[str, str] | None = None) -> str:
        if not self.exists(name):
            self.call("POST", "registered-models/create", json={"name": name})
        mv = self.call("POST", "model-versions/create", json={
            "name": name, "source": source, "run_id": run_id,
            "tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]})
        return str(mv["model_version"]["version"])  # type: ignore[index]

    def exists(self, name: str) -> bool:
        r = httpx.get(f"{self.uri}/api/2.0/mlflow/registered-models/get",
                      params={"name": name}, timeout=60)
        return r.status_code == 200

    def version(self, name: str, version: str) -> dict[str, object]:
        return self.call("GET", "model-versions/get",
                         params={"name": name, "version": version})["model_version"]  # type: ignore[return-value]

    def tags(self, name: str, version: str) -> dict[str, str]:
        raw = self.version(name, version).get("tags") or []
        return {t["key"]: t["value"] for t in raw}  # type: ignore[union-attr, index]

    def alias(self, name: str, alias: str) -> str | None:
        r = httpx.get(f"{self.uri}/api/2.0/mlflow/registered-models/alias",
                      params={"name": name, "alias": alias}, timeout=60)
        if r.status_code in (400, 404) and "not found" in r.text:
            return None
        assert r.status_code == 200, r.text
        return str(r.json()["model_version"]["version"])


# --- a recording relay between MLflow and custody serve ------------------------------------


@dataclass
class Delivery:
    """One request MLflow sent, as it arrived, and what custody serve answered."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 0
    answer: bytes = b""


@dataclass
class Relay:
    url: str
    deliveries: list[Delivery] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, entity: str, action: str, timeout: float = 90.0, after: int = 0,
                 **data: object) -> Delivery:
        """The first answered delivery of ``entity.action`` whose data has the items ``data``
        (among those from index ``after`` on); blocks until it arrives (woken by each delivery,
        bounded by ``timeout``)."""
        def found() -> Delivery | None:
            for d in self.deliveries[after:]:
                body = json.loads(d.body)
                if (body.get("entity"), body.get("action")) == (entity, action) and all(
                        body.get("data", {}).get(k) == v for k, v in data.items()):
                    return d
            return None

        with self.arrived:
            if not self.arrived.wait_for(lambda: found() is not None, timeout):
                raise AssertionError(f"no {entity}.{action} {data} in {timeout}s; arrived: "
                                     f"{[d.body[:300] for d in self.deliveries]}")
            hit = found()
            assert hit is not None
            return hit


_FORWARDED = ("content-type", "x-mlflow-delivery-id", "x-mlflow-timestamp",
              "x-mlflow-signature")


@contextmanager
def recording_relay(target: str) -> Iterator[Relay]:
    """An HTTP server on 127.0.0.1 that forwards each POST to ``target`` + its path, unchanged,
    and records it with the answer."""
    relay = Relay("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k: v for k, v in self.headers.items() if k.lower() in _FORWARDED}
            reply = httpx.post(target + self.path, content=body, headers=headers, timeout=120)
            self.send_response(reply.status_code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply.content)))
            self.end_headers()
            self.wfile.write(reply.content)
            with relay.arrived:
                relay.deliveries.append(Delivery(self.path, headers, body, reply.status_code,
                                                 reply.content))
                relay.arrived.notify_all()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    relay.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield relay
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)
