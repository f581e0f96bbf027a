"""Kubernetes AdmissionReview fixtures and the MLflow webhook, against a real server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar

import httpx
import pytest
from support import service_support as support

from custody.provenance.integrations.kubernetes import ref_from_uri

SECRET = "whsec-test-secret"


class FakeMlflow(BaseHTTPRequestHandler):
    """The two MLflow REST endpoints the hook calls, recording what it was sent."""

    calls: ClassVar[list[tuple[str, dict[str, Any]]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        known = ("/api/2.0/mlflow/model-versions/set-tag",
                 "/api/2.0/mlflow/registered-models/alias")
        type(self).calls.append((self.path, body))
        self.send_response(200 if self.path in known else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_mlflow() -> Iterator[tuple[str, list[tuple[str, dict[str, Any]]]]]:
    FakeMlflow.calls = []
    server = HTTPServer(("127.0.0.1", 0), FakeMlflow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", FakeMlflow.calls
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def served(ws, cli, make_file, fake_mlflow) -> Iterator[tuple[str, dict[str, str]]]:  # type: ignore[no-untyped-def]
    """good@1 (clean, trained on data@1); bad@1 (recorded flagged); revoked@1."""
    cli("record", make_file(ws.root / "d.csv", "a\n1\n"), "--name", "data", "--kind", "dataset",
        cwd=ws.root).expect(0)
    cli("record", make_file(ws.root / "good.bin", b"good"), "--name", "good", "--kind", "model",
        "--input", "data@1", cwd=ws.root).expect(0)
    cli("record", make_file(ws.root / "gone.bin", b"gone"), "--name", "gone", "--kind", "model",
        cwd=ws.root).expect(0)
    cli("revoke", "gone@1", "--reason", "leaked weights", cwd=ws.root).expect(0)
    tokens = support.make_tokens(ws.url)
    env = {"CUSTODY_MLFLOW_WEBHOOK_SECRET": SECRET, "CUSTODY_MLFLOW_TRACKING_URI": fake_mlflow[0]}
    with support.running_server(ws.root, env=env) as base:
        yield base, tokens


def review(obj: dict[str, Any] | None, uid: str = "") -> dict[str, Any]:
    request: dict[str, Any] = {"uid": uid or str(uuid.uuid4()), "operation": "CREATE",
                               "kind": {"group": "", "version": "v1", "kind": "x"}}
    if obj is not None:
        request["object"] = obj
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def isvc(uri: str, *, old: bool = False, annotations: dict[str, str] | None = None
         ) -> dict[str, Any]:
    predictor = {"sklearn": {"storageUri": uri}} if old else {
        "model": {"modelFormat": {"name": "sklearn"}, "storageUri": uri}}
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "svc", "annotations": annotations or {}},
            "spec": {"predictor": predictor}}


def pod(annotations: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p",
                                                             "annotations": annotations},
            "spec": {"containers": [{"name": "c", "image": "server"}]}}


def admit(base: str, token: str, body: Any, mode: str | None = None) -> httpx.Response:
    return httpx.post(base + "/v1/admission/kubernetes" + (f"?mode={mode}" if mode else ""),
                      json=body, headers=support.auth(token), timeout=60)


def test_uri_rule() -> None:
    assert ref_from_uri("s3://bucket/models/fraud-clf/3") == "fraud-clf@3"
    assert ref_from_uri("gs://b/fraud-clf@12/") == "fraud-clf@12"
    assert ref_from_uri("models:/fraud-clf/7") == "fraud-clf@7"
    assert ref_from_uri("pvc://vol/fraud-clf/007") == "fraud-clf@7"
    for unresolved in ("s3://bucket/models/fraud-clf", "s3://bucket/-x/3", "", "s3://", "x/y/z"):
        assert ref_from_uri(unresolved) is None, unresolved


@pytest.mark.parametrize("backend", ["sqlite"], indirect=False)
def test_admission_reviews(ws, served: tuple[str, dict[str, str]]) -> None:  # type: ignore[no-untyped-def]
    """The object is bound by the bytes at its model URI (tests/service/test_admission_bytes.py
    has the attacks); a name in the URI or an annotation alone binds nothing."""
    base, tokens = served
    token = tokens["reader"]
    good, gone = (ws.root / "good.bin").as_uri(), (ws.root / "gone.bin").as_uri()
    unknown = (ws.root / "unknown.bin")
    unknown.write_bytes(b"never recorded")
    cases: list[tuple[dict[str, Any], bool, str]] = [
        (isvc(good), True, "good@1"),
        (isvc(good, old=True), True, "good@1"),
        (pod({"custody.dev/model-uri": good}), True, "good@1"),
        (isvc(good, annotations={"custody.dev/artifact": "good@1"}), True, "good@1"),
        (pod({"custody.dev/artifact": "good@1"}), False, "admission.unresolved"),
        (isvc(gone), False, "revoked"),
        (isvc(unknown.as_uri()), False, "admission.unbound"),
        (isvc("pvc://models/good/1"), False, "admission.unreadable"),
        (pod({}), False, "admission.unresolved"),
        (isvc(unknown.as_uri(), annotations={"custody.dev/artifact": "gone@1"}), False,
         "admission.unbound"),
        (isvc(good, annotations={"custody.dev/artifact": "gone@1"}), False,
         "admission.annotation_mismatch"),
        (isvc(good, annotations={"custody.dev/artifact": "bad@@1"}), False,
         "not a valid reference"),
        ({"kind": "Deployment"}, False, "admission.unsupported_kind"),
    ]
    for obj, allowed, needle in cases:
        uid = str(uuid.uuid4())
        r = admit(base, token, review(obj, uid))
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["apiVersion"] == "admission.k8s.io/v1" and out["kind"] == "AdmissionReview"
        response = out["response"]
        assert response["uid"] == uid and response["allowed"] is allowed, (obj, out)
        text = json.dumps(response)
        assert needle in text, (needle, out)
        if not allowed:
            assert response["status"]["code"] == 403
    warned = admit(base, token, review(isvc(gone)), mode="warn").json()
    assert warned["response"]["allowed"] is True
    assert any("revoked" in w for w in warned["response"]["warnings"])
    deletion = review(None)
    deletion["request"]["operation"] = "DELETE"
    assert admit(base, token, deletion).json()["response"]["allowed"] is True
    assert admit(base, token, review(None)).json()["response"]["allowed"] is False


@pytest.mark.parametrize("backend", ["sqlite"], indirect=False)
def test_malformed_admission_requests(served: tuple[str, dict[str, str]]) -> None:
    base, tokens = served
    token = tokens["reader"]
    no_uid = review(isvc("s3://m/good/1"))
    del no_uid["request"]["uid"]
    for body in ({"kind": "AdmissionReview"}, {"apiVersion": "admission.k8s.io/v1beta1",
                                                "kind": "AdmissionReview", "request": {}},
                 no_uid, [1], "x"):
        r = admit(base, token, body)
        assert r.status_code == 400 and r.json()["error"] == "UsageError", r.text
    r = admit(base, token, review(isvc("s3://m/good/1")), mode="audit")
    assert r.status_code == 400


def deliver(base: str, payload: dict[str, Any], *, secret: str = SECRET,
            timestamp: int | None = None) -> httpx.Response:
    body = json.dumps(payload)
    delivery, stamp = str(uuid.uuid4()), str(timestamp or int(time.time()))
    mac = hmac.new(secret.encode(), f"{delivery}.{stamp}.{body}".encode(), hashlib.sha256)
    return httpx.post(base + "/v1/hooks/mlflow", content=body.encode(), timeout=60, headers={
        "Content-Type": "application/json", "X-MLflow-Delivery-Id": delivery,
        "X-MLflow-Timestamp": stamp,
        "X-MLflow-Signature": "v1," + base64.b64encode(mac.digest()).decode()})


def created(name: str, version: str, source: str, tags: dict[str, str] | None = None
            ) -> dict[str, Any]:
    return {"entity": "model_version", "action": "created", "timestamp": "2026-11-25T21:00:00Z",
            "data": {"name": name, "version": version, "source": source, "run_id": "r1",
                     "tags": tags or {}, "description": None}}


@pytest.mark.parametrize("backend", ["sqlite"], indirect=False)
def test_mlflow_webhook(served: tuple[str, dict[str, str]],
                        fake_mlflow: tuple[str, list[tuple[str, dict[str, Any]]]]) -> None:
    """What the hook refuses before it looks at any bytes (the verdicts by bytes, against a real
    MLflow server: tests/integrations/test_mlflow_gate.py)."""
    base, _ = served
    calls = fake_mlflow[1]
    assert deliver(base, created("f", "1", "s3://a/good/1"), secret="wrong").status_code == 401
    stale = deliver(base, created("f", "1", "s3://a/good/1"), timestamp=int(time.time()) - 3600)
    assert stale.status_code == 401
    unsigned = httpx.post(base + "/v1/hooks/mlflow", json=created("f", "1", "s3://a/good/1"),
                          timeout=60)
    assert unsigned.status_code == 401
    assert calls == []
    other = deliver(base, {"entity": "registered_model", "action": "created", "data": {}})
    assert other.status_code == 200 and other.json()["handled"] is False, other.text
    broken = deliver(base, {"entity": "model_version", "action": "created", "data": {}})
    assert broken.status_code == 400
