"""The HTTP API against a real `custody serve` process on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from support import service_support as support

from custody.provenance.log.merkle import verify_consistency, verify_inclusion


class Service:
    def __init__(self, base: str, tokens: dict[str, str], ws: Any, cli: Any):
        self.base, self.tokens, self.ws, self.cli = base, tokens, ws, cli
        self.signer = support.signer_from(ws.home / "keys" / "signing.key")

    def call(self, method: str, path: str, role: str | None = "reader", **kw: Any
             ) -> httpx.Response:
        headers = {**(support.auth(self.tokens[role]) if role else {}), **kw.pop("headers", {})}
        response = httpx.request(method, self.base + path, headers=headers, timeout=60, **kw)
        assert "Traceback" not in response.text
        return response


@pytest.fixture
def service(ws, cli, make_file) -> Iterator[Service]:  # type: ignore[no-untyped-def]
    d = make_file(ws.root / "data" / "train.csv", "a,b\n1,2\n3,4\n")
    m = make_file(ws.root / "model.bin", b"weights" * 100)
    cli("record", d, "--name", "train", "--kind", "dataset", cwd=ws.root).expect(0)
    cli("record", m, "--name", "clf", "--kind", "model", "--input", "train@1",
        cwd=ws.root).expect(0)
    tokens = support.make_tokens(ws.url)
    with support.running_server(ws.root) as base:
        yield Service(base, tokens, ws, cli)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_verify_by_digest_and_manifest(service: Service) -> None:
    model = (service.ws.root / "model.bin").read_bytes()
    r = service.call("POST", "/v1/verify", json={"digest": sha(model)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["verdict"] == "verified" and body["ref"] == "clf@1"
    assert [n["ref"] for n in body["chain"]] == ["train@1"]
    assert body["artifact"]["inclusion"]["tree_size"] >= 3 and body["bytes_checked"] is False
    manifest = service.cli("hash", service.ws.root / "model.bin", "--json").expect(0).json()
    r = service.call("POST", "/v1/verify", json={"manifest": manifest})
    assert r.json()["verdict"] == "verified", r.text
    r = service.call("POST", "/v1/verify", json=manifest)  # the manifest itself as the body
    assert r.json()["verdict"] == "verified", r.text


def test_verify_refusals_are_verdicts(service: Service) -> None:
    r = service.call("POST", "/v1/verify", json={"digest": sha(b"never recorded")})
    assert r.status_code == 200 and r.json()["verdict"] == "refused"
    assert r.json()["rule"] == "record.not_found"
    service.cli("revoke", "train@1", "--reason", "poisoned labels",
                cwd=service.ws.root).expect(0)
    model = (service.ws.root / "model.bin").read_bytes()
    body = service.call("POST", "/v1/verify", json={"digest": sha(model)}).json()
    assert body["verdict"] == "refused" and body["rule"] == "chain.revoked", body
    assert "poisoned labels" in body["message"]
    for bad in ({"digest": "md5:abc"}, {}, {"digest": 3}, {"manifest": "x"}):
        r = service.call("POST", "/v1/verify", json=bad)
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["error"] == "UsageError"
    r = service.call("POST", "/v1/verify", content=b"{not json",
                     headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "UsageError", r.text


def test_append_signed_records(service: Service) -> None:
    ws = service.ws
    before = ws.entry_count()
    train = service.call("GET", "/v1/artifacts/train@1").json()
    body = support.signed_record(service.signer, "clf", "model", 2, b"new weights", inputs=[
        {"name": "train", "version": 1, "digest": train["digest"]}])
    r = service.call("POST", "/v1/records", role="publisher", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["ref"] == "clf@2" and r.json()["signer"] == service.signer.identity
    assert ws.entry_count() == before + 2  # the version and its lineage edge
    again = service.call("POST", "/v1/records", role="publisher", json=body)
    assert again.status_code == 409 and "version 3" in again.json()["hint"], again.text
    r = service.call("POST", "/v1/verify", json={"digest": sha(b"new weights")})
    assert r.json()["verdict"] == "verified" and r.json()["ref"] == "clf@2"
    # an untrusted key, a bad input digest, an unknown input, a flagged scan: nothing written
    from cryptography.hazmat.primitives.asymmetric import ec

    from custody.signing.key_signer import ECKeySigner

    stranger = ECKeySigner(ec.generate_private_key(ec.SECP256R1()))
    r = service.call("POST", "/v1/records", role="publisher",
                     json=support.signed_record(stranger, "evil", "model", 1, b"x"))
    assert r.status_code == 422 and r.json()["rule"] == "signature.untrusted_key", r.text
    wrong = support.signed_record(service.signer, "m2", "model", 1, b"y", inputs=[
        {"name": "train", "version": 1, "digest": sha(b"other")}])
    r = service.call("POST", "/v1/records", role="publisher", json=wrong)
    assert r.status_code == 422 and r.json()["rule"] == "chain.digest_mismatch", r.text
    unknown = support.signed_record(service.signer, "m3", "model", 1, b"z", inputs=[
        {"name": "nope", "version": 1, "digest": sha(b"z")}])
    assert service.call("POST", "/v1/records", role="publisher", json=unknown).status_code == 404
    flagged_scan = {**support.CLEAN_SCAN, "verdict": "flagged", "max_severity": "high"}
    flagged = support.signed_record(service.signer, "bad", "model", 1, b"f", scan=flagged_scan)
    r = service.call("POST", "/v1/records", role="publisher", json=flagged)
    assert r.status_code == 422 and r.json()["rule"] == "scan.flagged"
    tampered = json.loads(body["bundle"])
    tampered["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(b"0" * 70).decode()
    r = service.call("POST", "/v1/records", role="publisher",
                     json={"bundle": json.dumps(tampered)})
    assert r.status_code == 422, r.text
    assert ws.entry_count() == before + 2
    r = service.call("POST", "/v1/records", role="publisher", json={**flagged,
                                                                    "allow_flagged": True})
    assert r.status_code == 201 and r.json()["scan_verdict"] == "flagged"
    service.cli("audit", "verify", cwd=ws.root).expect(0, "AUDIT PASSED")


def test_reads_lineage_and_proofs(service: Service) -> None:
    listing = service.call("GET", "/v1/artifacts").json()
    assert [v["ref"] for v in listing["versions"]] == ["train@1", "clf@1"]
    assert service.call("GET", "/v1/artifacts?name=clf").json()["total"] == 1
    one = service.call("GET", "/v1/artifacts/clf@1").json()
    assert one["inputs"] == [{"ref": "train@1", "activity": "trained_on"}]
    assert one["statement"]["predicate"]["artifact"]["name"] == "clf"
    assert service.call("GET", "/v1/artifacts/clf").json()["ref"] == "clf@1"
    assert service.call("GET", "/v1/artifacts/nope@1").status_code == 404
    assert service.call("GET", "/v1/artifacts/bad@x").status_code == 400
    graph = service.call("GET", "/v1/lineage/clf@1?direction=upstream&depth=3").json()
    assert graph["edges"] == [{"input": "train@1", "output": "clf@1", "activity": "trained_on"}]
    down = service.call("GET", "/v1/lineage/train@1?direction=downstream").json()
    assert [n["ref"] for n in down["nodes"]] == ["train@1", "clf@1"]
    old = service.call("GET", "/v1/lineage/clf@1?as_of=1")
    assert old.status_code == 404  # clf@1 did not exist at checkpoint size 1
    for fmt, key in (("openlineage", None), ("cyclonedx", "bomFormat"), ("prov", "@graph")):
        r = service.call("GET", f"/v1/lineage/clf@1?format={fmt}")
        assert r.status_code == 200, r.text
        assert key is None or key in r.json()
    assert service.call("GET", "/v1/lineage/clf@1?format=dot").text.startswith("digraph")
    assert service.call("GET", "/v1/lineage/clf@1?direction=sideways").status_code == 400
    assert service.call("GET", "/v1/lineage/clf@1?depth=0").status_code == 422
    head = service.call("GET", "/v1/checkpoint").json()
    size, root = head["size"], bytes.fromhex(head["root"])
    assert service.call("GET", "/v1/checkpoint?format=note").text == head["note"]
    for index in range(size):
        proof = service.call("GET", f"/v1/proofs/inclusion/{index}").json()
        leaf = bytes.fromhex(proof["leaf_hash"])
        verify_inclusion(leaf, index, size, [base64.b64decode(p) for p in proof["proof"]], root,
                         subject="test")
    assert service.call("GET", f"/v1/proofs/inclusion/{size}").status_code == 404
    first = service.call("GET", "/v1/checkpoint?size=1").json()
    cons = service.call("GET", f"/v1/proofs/consistency?from=1&to={size}").json()
    verify_consistency(1, size, [base64.b64decode(p) for p in cons["proof"]],
                       bytes.fromhex(first["root"]), root, subject="test")
    assert service.call("GET", f"/v1/proofs/consistency?from={size}&to=1").status_code == 400
    assert service.call("GET", "/v1/proofs/consistency?from=1&to=999").status_code == 404
    assert service.call("GET", "/healthz", role=None).json()["tree_size"] == size
    assert "/v1/verify" in service.call("GET", "/openapi.json", role=None).json()["paths"]


def test_tokens_by_admin(service: Service) -> None:
    r = service.call("POST", "/v1/tokens", role="admin", json={"role": "reader", "label": "ci"})
    assert r.status_code == 201
    new, token_id = r.json()["token"], r.json()["id"]
    listed = service.call("GET", "/v1/tokens", role="admin").json()["tokens"]
    assert any(t["id"] == token_id and t["label"] == "ci" for t in listed)
    assert new not in json.dumps(listed)
    assert httpx.get(service.base + "/v1/artifacts", headers=support.auth(new),
                     timeout=60).status_code == 200
    assert service.call("DELETE", f"/v1/tokens/{token_id}", role="admin").status_code == 200
    assert httpx.get(service.base + "/v1/artifacts", headers=support.auth(new),
                     timeout=60).status_code == 401
    assert service.call("DELETE", f"/v1/tokens/{token_id}", role="admin").status_code == 404
    assert service.call("POST", "/v1/tokens", role="admin",
                        json={"role": "root"}).status_code == 400
    stored = service.ws.sql("SELECT token_hash FROM service_tokens")
    assert all(len(h) == 64 and not h.startswith("cst_") for (h,) in stored)
    assert hashlib.sha256(new.encode()).hexdigest() in {h for (h,) in stored}
