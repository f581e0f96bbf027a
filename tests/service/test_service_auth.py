"""Roles on every endpoint, request size limits, and errors without stack traces."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import service_support as support

REVIEW = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
          "request": {"uid": "u-1", "operation": "CREATE", "object": {
              "kind": "Pod", "metadata": {"annotations": {"custody.dev/artifact": "m@1"}}}}}

# (method, path, JSON body, the weakest role that may call it; None = no token needed,
#  "hmac" = MLflow's signature instead of a token)
ENDPOINTS: list[tuple[str, str, Any, str | None]] = [
    ("GET", "/healthz", None, None),
    ("GET", "/openapi.json", None, None),
    ("POST", "/v1/verify", {"digest": "sha256:" + "0" * 64}, "reader"),
    ("POST", "/v1/records", {}, "publisher"),
    ("GET", "/v1/artifacts", None, "reader"),
    ("GET", "/v1/artifacts/m@1", None, "reader"),
    ("GET", "/v1/lineage/m@1", None, "reader"),
    ("GET", "/v1/lineage/m@1?format=cyclonedx", None, "reader"),
    ("GET", "/v1/checkpoint", None, "reader"),
    ("POST", "/v1/checkpoint/cosignatures", {"checkpoint": "x", "cosignatures": []}, "publisher"),
    ("GET", "/v1/proofs/inclusion/0", None, "reader"),
    ("GET", "/v1/proofs/consistency?from=0&to=1", None, "reader"),
    ("POST", "/v1/admission/kubernetes", REVIEW, "reader"),
    ("GET", "/ui/lineage/m@1", None, "reader"),
    ("GET", "/v1/tokens", None, "admin"),
    ("POST", "/v1/tokens", {"role": "reader", "label": "matrix"}, "admin"),
    ("DELETE", "/v1/tokens/999999", None, "admin"),
    ("POST", "/v1/hooks/mlflow", {"entity": "model_version"}, "hmac"),
]
RANK = {"reader": 1, "auditor": 1, "publisher": 2, "admin": 3}


@pytest.fixture
def server(ws, cli, make_file) -> Iterator[tuple[str, dict[str, str]]]:  # type: ignore[no-untyped-def]
    cli("record", make_file(ws.root / "m.bin", b"model"), "--name", "m", "--kind", "model",
        cwd=ws.root).expect(0)
    tokens = support.make_tokens(ws.url)
    env = {"CUSTODY_MLFLOW_WEBHOOK_SECRET": "s3cret"}
    with support.running_server(ws.root, env=env, args=("--max-body", "4096")) as base:
        yield base, tokens


def _call(base: str, method: str, path: str, body: Any, token: str | None) -> httpx.Response:
    headers = support.auth(token) if token else {}
    return httpx.request(method, base + path, headers=headers, timeout=60,
                         **({"json": body} if body is not None else {}))


@pytest.mark.parametrize("backend", ["sqlite"], indirect=False)
def test_role_matrix(server: tuple[str, dict[str, str]]) -> None:
    base, tokens = server
    wrong: list[str] = []
    for method, path, body, needed in ENDPOINTS:
        for who in (None, "bogus", "reader", "auditor", "publisher", "admin"):
            token = tokens.get(who or "") if who != "bogus" else "cst_not-a-real-token"
            r = _call(base, method, path, body, token)
            assert "Traceback" not in r.text and 'File "' not in r.text
            if needed is None:
                ok = r.status_code < 400
            elif needed == "hmac":
                ok = r.status_code == 401 and "signature" in r.json()["message"].lower()
            elif who in (None, "bogus"):
                ok = r.status_code == 401 and r.headers.get("www-authenticate", "").startswith(
                    "Bearer")
            elif RANK[who] < RANK[needed]:
                ok = r.status_code == 403
            else:
                ok = r.status_code not in (401, 403)
            if not ok:
                wrong.append(f"{method} {path} as {who}: {r.status_code} {r.text[:200]}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=False)
def test_request_size_limit(server: tuple[str, dict[str, str]]) -> None:
    base, tokens = server
    headers = support.auth(tokens["publisher"])
    big = json.dumps({"bundle": "x" * 10_000}).encode()
    r = httpx.post(base + "/v1/records", content=big, headers=headers, timeout=30)
    assert r.status_code == 413 and "4096" in r.json()["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
        for _ in range(10):
            yield b" " * 1000

    r = httpx.post(base + "/v1/verify", content=chunks(), headers=headers, timeout=30)
    assert r.status_code == 413, r.text
    r = httpx.post(base + "/v1/hooks/mlflow", content=chunks(), timeout=30)
    assert r.status_code == 413, r.text
    small = httpx.post(base + "/v1/verify", json={"digest": "sha256:" + "0" * 64},
                       headers=support.auth(tokens["reader"]), timeout=30)
    assert small.status_code == 200


@pytest.mark.parametrize("backend", ["sqlite"], indirect=False)
def test_bad_requests_have_no_stack_traces(server: tuple[str, dict[str, str]]) -> None:
    base, tokens = server
    headers = support.auth(tokens["admin"])
    bad: list[tuple[str, str, bytes]] = [
        ("POST", "/v1/verify", b"\xff\xfe"), ("POST", "/v1/verify", b"[1,2]"),
        ("POST", "/v1/verify", b'{"manifest": {"resources": 5}}'),
        ("POST", "/v1/records", b'{"bundle": "{}"}'), ("POST", "/v1/records", b'{"bundle": 7}'),
        ("POST", "/v1/records", b'{"bundle": {"verificationMaterial": {}, "dsseEnvelope": '
                                b'{"payload": "!!"}}}'),
        ("GET", "/v1/artifacts/%00", b""), ("GET", "/v1/artifacts/" + "a" * 300, b""),
        ("GET", "/v1/lineage/m@1?depth=abc", b""), ("GET", "/v1/lineage/m@1?as_of=-1", b""),
        ("GET", "/v1/proofs/inclusion/-1", b""), ("GET", "/v1/proofs/inclusion/x", b""),
        ("GET", "/v1/proofs/consistency", b""), ("POST", "/v1/admission/kubernetes", b"{"),
        ("POST", "/v1/tokens", b'{"role": 5}'), ("GET", "/v1/nothing", b""),
    ]
    for method, path, body in bad:
        r = httpx.request(method, base + path, content=body, headers=headers, timeout=30)
        assert 400 <= r.status_code < 500, (path, r.status_code, r.text)
        assert "Traceback" not in r.text and 'File "' not in r.text, r.text
        assert "error" in r.json() or "detail" in r.json(), r.text


def test_unexpected_errors_are_bare_500s(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                         ) -> None:
    from fastapi.testclient import TestClient

    from custody.provenance.service.app import create_app
    from custody.provenance.service.settings import Settings

    class Ctx:  # the app needs no ledger for this route
        settings = Settings()

        def close(self) -> None:
            pass

    app = create_app(ctx=Ctx())  # type: ignore[arg-type]

    @app.get("/boom")
    def boom() -> None:
        raise ZeroDivisionError("secret detail")

    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/boom")
    assert r.status_code == 500
    assert r.json()["error"] == "InternalError"
    assert "secret detail" not in r.text and "Traceback" not in r.text
    assert any("secret detail" in (rec.exc_text or str(rec.exc_info)) for rec in caplog.records)
