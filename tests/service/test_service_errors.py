"""Error bodies of the HTTP service (issue 11), against a real `custody serve` on loopback:
every 4xx body has ``error``, ``message`` and a non-empty ``hint``, and the hints lead
somewhere when followed (a token in the header they name, a token of the role they name made
with the command they give, the checkpoint and the docs they point to)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from support import service_support as support

MAX_BODY = 4096


class Service:
    def __init__(self, base: str, tokens: dict[str, str], ws: Any, cli: Any):
        self.base, self.tokens, self.ws, self.cli = base, tokens, ws, cli

    def call(self, method: str, path: str, role: str | None = "reader", **kw: Any
             ) -> httpx.Response:
        headers = {**(support.auth(self.tokens[role]) if role else {}), **kw.pop("headers", {})}
        response = httpx.request(method, self.base + path, headers=headers, timeout=60, **kw)
        assert "Traceback" not in response.text
        return response


def start(ws: Any, cli: Any, make_file: Any, env: dict[str, str] | None = None
          ) -> Iterator[Service]:
    """Two records: train@1 (checkpoint 1), then clf@1 trained on it, appended with its lineage
    edge under one checkpoint (3): the ledger has checkpoints 0, 1 and 3, none of size 2."""
    d = make_file(ws.root / "data" / "train.csv", "a,b\n1,2\n3,4\n")
    m = make_file(ws.root / "model.bin", b"weights" * 100)
    cli("record", d, "--name", "train", "--kind", "dataset", cwd=ws.root).expect(0)
    cli("record", m, "--name", "clf", "--kind", "model", "--input", "train@1",
        cwd=ws.root).expect(0)
    assert [s for (s,) in ws.sql("SELECT size FROM checkpoints ORDER BY size")] == [0, 1, 3]
    tokens = support.make_tokens(ws.url)
    with support.running_server(ws.root, env=env) as base:
        yield Service(base, tokens, ws, cli)


@pytest.fixture
def service(ws, cli, make_file) -> Iterator[Service]:  # type: ignore[no-untyped-def]
    yield from start(ws, cli, make_file)


@pytest.fixture
def limited(ws, cli, make_file) -> Iterator[Service]:  # type: ignore[no-untyped-def]
    """A server with a small body limit and the MLflow webhook configured."""
    yield from start(ws, cli, make_file, env={"CUSTODY_SERVICE_MAX_BODY": str(MAX_BODY),
                                              "CUSTODY_MLFLOW_WEBHOOK_SECRET": "s3cret"})


def error(response: httpx.Response, status: int) -> dict[str, Any]:
    """The JSON error body of a ``status`` answer: error, message and a non-empty hint."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert isinstance(body, dict), body
    assert body.get("error") and body.get("message"), body
    assert isinstance(body.get("hint"), str) and body["hint"].strip(), body
    return body


def command_in(hint: str) -> list[str]:
    """The `custody ...` command a hint quotes, as arguments for the cli fixture."""
    match = re.search(r"`custody ([^`]+)`", hint)
    assert match, hint
    return shlex.split(match.group(1))


def token_from(service: Service, args: list[str]) -> str:
    out = service.cli(*args, cwd=service.ws.root).expect(0).out.strip()
    assert out.startswith("cst_"), out
    return out


def test_a_checkpoint_size_the_ledger_does_not_have_is_404_with_a_hint(service: Service
                                                                         ) -> None:
    for path in ("/v1/checkpoint?size=2", "/v1/checkpoint?size=2&format=note",
                 "/v1/proofs/inclusion/0?size=2", "/v1/proofs/consistency?from=2&to=3",
                 "/v1/proofs/consistency?from=1&to=2"):
        body = error(service.call("GET", path), 404)
        assert body["error"] == "NotFoundError" and body["subject"] == "checkpoint 2", body
        assert "no checkpoint of size 2" in body["message"], body
    beyond = error(service.call("GET", "/v1/checkpoint?size=999"), 404)
    assert beyond["subject"] == "checkpoint 999" and "yet" in beyond["message"], beyond
    # followed: the hint names the request for the newest checkpoint and its size
    assert "GET /v1/checkpoint (no size)" in beyond["hint"] and "size 3" in beyond["hint"]
    newest = service.call("GET", "/v1/checkpoint")
    assert newest.status_code == 200 and newest.json()["size"] == 3
    for size in (0, 1, 3):  # the sizes the ledger has still answer
        assert service.call("GET", f"/v1/checkpoint?size={size}").json()["size"] == size
    assert service.call("GET", "/v1/proofs/consistency?from=1&to=3").status_code == 200


def test_401_says_how_to_pass_a_token_and_following_it_works(service: Service) -> None:
    none = error(service.call("GET", "/v1/artifacts", role=None), 401)
    assert "`Authorization: Bearer TOKEN`" in none["hint"], none
    assert service.call("GET", "/v1/artifacts", role=None).headers["www-authenticate"] == "Bearer"
    token = token_from(service, command_in(none["hint"]))
    assert httpx.get(service.base + "/v1/artifacts", headers={"Authorization": f"Bearer {token}"},
                     timeout=60).status_code == 200

    bad = error(service.call("GET", "/v1/artifacts", role=None,
                             headers={"Authorization": "Bearer cst_not-a-token"}), 401)
    assert "`custody token list`" in bad["hint"] and "`custody token create" in bad["hint"]
    service.cli("token", "revoke", "1", cwd=service.ws.root).expect(0)
    revoked = error(service.call("GET", "/v1/artifacts", role="reader"), 401)
    assert "revoked" in revoked["message"] and "`custody token list`" in revoked["hint"]
    assert "revoked" in service.cli("token", "list", cwd=service.ws.root).expect(0).out

    page = error(service.call("GET", "/ui/lineage/clf@1", role=None), 401)
    assert "cookie `custody_token=TOKEN`" in page["hint"], page
    shown = httpx.get(service.base + "/ui/lineage/clf@1", cookies={"custody_token": token},
                      timeout=60)
    assert shown.status_code == 200 and "clf@1" in shown.text


@pytest.mark.parametrize(("method", "path", "needed", "ok"), [
    ("POST", "/v1/records", "publisher", 400),  # then an empty body: a usage error, not a 403
    ("GET", "/v1/tokens", "admin", 200),
])
def test_403_names_the_role_and_the_command_that_makes_a_token_of_it(  # type: ignore[no-untyped-def]
        service: Service, method, path, needed, ok) -> None:
    body = error(service.call(method, path, role="reader", json={}), 403)
    assert f"needs the {needed} role; the token has reader" in body["message"], body
    args = command_in(body["hint"])
    assert args == ["token", "create", "--role", needed], body["hint"]
    token = token_from(service, args)
    again = httpx.request(method, service.base + path, json={}, timeout=60,
                          headers={"Authorization": f"Bearer {token}"})
    assert again.status_code == ok, again.text
    if ok >= 400:
        error(again, ok)


def test_every_4xx_body_has_a_hint(limited: Service) -> None:
    s = limited
    cases: list[tuple[str, str, str | None, dict[str, Any], int]] = [
        ("POST", "/v1/verify", "reader", {"content": b"not json"}, 400),
        ("POST", "/v1/verify", "reader", {"json": []}, 400),
        ("POST", "/v1/verify", "reader", {"json": {"digest": 5}}, 400),
        ("POST", "/v1/verify", "reader", {"json": {"digest": "md5:00"}}, 400),
        ("POST", "/v1/verify", "reader", {"json": {}}, 400),
        ("GET", "/v1/artifacts/nope@1", "reader", {}, 404),
        ("GET", "/v1/artifacts/bad@x", "reader", {}, 400),
        ("GET", "/v1/artifacts?limit=0", "reader", {}, 422),
        ("GET", "/v1/lineage/clf@1?direction=sideways", "reader", {}, 400),
        ("GET", "/v1/lineage/clf@1?format=svg", "reader", {}, 400),
        ("GET", "/v1/lineage/clf@1?depth=0", "reader", {}, 422),
        ("GET", "/v1/lineage/clf@1?as_of=1", "reader", {}, 404),
        ("GET", "/v1/proofs/inclusion/99", "reader", {}, 404),
        ("GET", "/v1/proofs/consistency?from=3&to=1", "reader", {}, 400),
        ("GET", "/v1/checkpoint?size=2", "reader", {}, 404),
        ("GET", "/v1/nowhere", "reader", {}, 404),
        ("DELETE", "/v1/artifacts", "reader", {}, 405),
        ("GET", "/v1/artifacts", None, {}, 401),
        ("GET", "/v1/tokens", "publisher", {}, 403),
        ("POST", "/v1/records", "auditor", {"json": {}}, 403),
        ("POST", "/v1/records", "publisher", {"json": {}}, 400),
        ("POST", "/v1/records", "publisher", {"json": {"bundle": "{}"}}, 422),
        ("POST", "/v1/tokens", "admin", {"json": {"role": "root"}}, 400),
        ("POST", "/v1/tokens", "admin", {"json": {"role": 1}}, 400),
        ("DELETE", "/v1/tokens/999", "admin", {}, 404),
        ("POST", "/v1/admission/kubernetes", "reader", {"json": {}}, 400),
        ("POST", "/v1/hooks/mlflow", None, {"content": b"{}"}, 401),
        ("POST", "/v1/verify", "reader", {"content": b"x" * (MAX_BODY + 1)}, 413),
        ("POST", "/v1/verify", "reader",
         {"content": iter([b"x" * 1000] * 6)}, 413),  # chunked: refused while reading
    ]
    seen = set()
    for method, path, role, kw, status in cases:
        body = error(s.call(method, path, role=role, **kw), status)
        seen.add(status)
        assert body["hint"] != body["message"], body
    assert seen == {400, 401, 403, 404, 405, 413, 422}
    # the generic hints point at the docs, and they are there
    docs = error(s.call("GET", "/v1/nowhere"), 404)["hint"]
    assert "/docs" in docs and "/openapi.json" in docs
    assert s.call("GET", "/docs", role=None).status_code == 200
    assert "/v1/verify" in s.call("GET", "/openapi.json", role=None).json()["paths"]
    big = error(s.call("POST", "/v1/verify", content=b"x" * (MAX_BODY + 1)), 413)
    assert f"at most {MAX_BODY} bytes" in big["hint"] and "--max-body" in big["hint"]
    mlflow = error(s.call("POST", "/v1/hooks/mlflow", role=None, content=b"{}"), 401)
    assert "X-MLflow-Signature" in mlflow["hint"], mlflow


def test_the_mlflow_webhook_unconfigured_is_404_with_a_hint(service: Service) -> None:
    body = error(service.call("POST", "/v1/hooks/mlflow", role=None, content=b"{}"), 404)
    assert "CUSTODY_MLFLOW_WEBHOOK_SECRET" in body["hint"], body


def test_token_revoke_of_an_unknown_id_points_at_the_list(cli, ws) -> None:  # type: ignore[no-untyped-def]
    result = cli("token", "revoke", "42", cwd=ws.root).expect(2, "no active token with id 42",
                                                              "custody token list")
    assert "Traceback" not in result.err
    cli("token", "list", cwd=ws.root).expect(0)
