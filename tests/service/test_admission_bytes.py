"""Admission binds bytes, not names: each attack of issue 14 against a real `custody serve`,
with models on the local disk (file://) and in a real S3 server (moto, versioned buckets).

The attacks: a foreign bucket whose path ends in a recorded NAME/VERSION, a trusted annotation
on an untrusted URI, an annotation naming another version than the bytes, a revoked version, an
object overwritten after admission, a file rewritten in place with its old modification time,
an object replaced while the webhook hashes it. The honest case is allowed, by its bytes (a copy
anywhere) and by its recorded location and version ids (without reading the bytes).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import service_support as support
from support.s3_server import S3Server

from custody.errors import VerificationError
from custody.provenance.integrations.binding import Admission
from custody.provenance.verification import fetch as fetching
from custody.provenance.verification.policy_options import build_policy
from custody.provenance.workspace import resolve

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=False)

MODEL = {"model.bin": b"fraud classifier weights v1\n", "config.json": b'{"layers": 3}\n'}
MODEL_V2 = {"model.bin": b"fraud classifier weights v2\n", "config.json": b'{"layers": 4}\n'}
STRICT = "CUSTODY_ADMISSION_LISTING_SECONDS"
EVIL = {"model.bin": b"attacker weights\n", "config.json": b'{"layers": 3}\n'}


def tree(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        (root / rel).write_bytes(data)
    return root


def review(obj: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": str(uuid.uuid4()), "operation": "CREATE",
                        "kind": {"group": "serving.kserve.io", "version": "v1beta1",
                                 "kind": "InferenceService"}, "object": obj}}


def isvc(uri: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "fraud", "annotations": annotations or {}},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"},
                                             "storageUri": uri}}}}


class Gate:
    """The admission endpoint of a running server, as the API server calls it."""

    def __init__(self, base: str, token: str):
        self.base, self.token = base, token

    def admit(self, obj: dict[str, Any], path: str = "/v1/admission/kubernetes"
              ) -> dict[str, Any]:
        body = review(obj)
        r = httpx.post(self.base + path, json=body, headers=support.auth(self.token), timeout=60)
        assert r.status_code == 200, r.text
        response = r.json()["response"]
        assert response["uid"] == body["request"]["uid"]
        return dict(response)

    def allowed(self, obj: dict[str, Any], ref: str) -> dict[str, Any]:
        out = self.admit(obj)
        assert out["allowed"] is True, out
        assert out["auditAnnotations"] == {"artifact": ref}, out
        return out

    def denied(self, obj: dict[str, Any], rule: str, *needles: str) -> dict[str, Any]:
        out = self.admit(obj)
        assert out["allowed"] is False, out
        assert out["status"]["code"] == 403
        message = out["status"]["message"]
        assert message.startswith(f"custody [{rule}]"), (rule, message)
        for needle in needles:
            assert needle in message, (needle, message)
        return out


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with S3Server.start() as server:
        yield server


@pytest.fixture
def gate(ws, cli, s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:  # type: ignore[no-untyped-def]
    """fraud-clf@1 and @2 recorded from local folders; a server whose S3 credentials are the
    usual chain's (the environment)."""
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    cli("record", tree(ws.root / "model-v1", MODEL), "--name", "fraud-clf", "--kind", "model",
        cwd=ws.root).expect(0)
    cli("record", tree(ws.root / "model-v2", MODEL_V2), "--name", "fraud-clf", "--kind",
        "model", cwd=ws.root).expect(0)
    tokens = support.make_tokens(ws.url)
    # every review lists the URI afresh (the default reuses a listing for 2 s)
    with support.running_server(ws.root, env={**s3.env, STRICT: "0"}) as base:
        yield Gate(base, tokens["reader"])


def test_honest_model_is_allowed_by_its_bytes_wherever_they_are(ws, gate: Gate,  # type: ignore[no-untyped-def]
                                                                 s3: S3Server) -> None:
    gate.allowed(isvc((ws.root / "model-v1").as_uri()), "fraud-clf@1")
    copy = shutil.copytree(ws.root / "model-v1", ws.root / "elsewhere" / "serving")
    gate.allowed(isvc(copy.as_uri()), "fraud-clf@1")
    bucket = s3.bucket()
    s3.put_tree(bucket, "models/fraud/2", ws.root / "model-v2")
    gate.allowed(isvc(f"s3://{bucket}/models/fraud/2"), "fraud-clf@2")
    gate.allowed(isvc(f"s3://{bucket}/models/fraud/2/"), "fraud-clf@2")
    # an annotation that agrees with the bytes narrows nothing away
    gate.allowed(isvc(f"s3://{bucket}/models/fraud/2", {"custody.dev/artifact": "fraud-clf@2"}),
                 "fraud-clf@2")
    gate.allowed(isvc(f"s3://{bucket}/models/fraud/2", {"custody.dev/artifact": "fraud-clf"}),
                 "fraud-clf@2")


def test_foreign_bucket_with_matching_suffix_is_denied(ws, gate: Gate, s3: S3Server) -> None:  # type: ignore[no-untyped-def]
    attacker = s3.bucket()
    s3.put_tree(attacker, "anything/fraud-clf/1", tree(ws.root / "evil", EVIL))
    gate.denied(isvc(f"s3://{attacker}/anything/fraud-clf/1"), "admission.unbound",
                "are not recorded")
    gate.denied(isvc((ws.root / "evil").as_uri()), "admission.unbound")
    # a bucket that does not exist, with the recorded name and version in its path
    gate.denied(isvc("s3://attacker-bucket-that-is-not-there/anything/fraud-clf/1"),
                "admission.unreadable")


def test_trusted_annotation_on_untrusted_uri_is_denied(ws, gate: Gate, s3: S3Server) -> None:  # type: ignore[no-untyped-def]
    attacker = s3.bucket()
    s3.put_tree(attacker, "m", tree(ws.root / "evil", EVIL))
    pinned = {"custody.dev/artifact": "fraud-clf@1"}
    gate.denied(isvc(f"s3://{attacker}/m", pinned), "admission.unbound")
    gate.denied(isvc((ws.root / "evil").as_uri(), pinned), "admission.unbound")
    # the annotation alone binds nothing: no URI, no bytes
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "annotations": pinned},
           "spec": {"containers": [{"name": "c", "image": "server"}]}}
    gate.denied(pod, "admission.unresolved", "only narrows")
    # a storage scheme the service cannot read binds nothing either
    gate.denied(isvc("pvc://models/fraud-clf/1", pinned), "admission.unreadable")
    gate.denied(isvc("models:/fraud-clf/1", pinned), "admission.unreadable")


def test_annotation_naming_another_version_than_the_bytes_is_denied(ws, gate: Gate,  # type: ignore[no-untyped-def]
                                                                    s3: S3Server) -> None:
    bucket = s3.bucket()
    s3.put_tree(bucket, "fraud-clf/current", ws.root / "model-v2")
    uri = f"s3://{bucket}/fraud-clf/current"
    for pinned in ("fraud-clf@1", "other-model", "sha256:" + "0" * 64):
        gate.denied(isvc(uri, {"custody.dev/artifact": pinned}),
                    "admission.annotation_mismatch", pinned, "fraud-clf@2")
    gate.denied(isvc(uri, {"custody.dev/artifact": "fraud-clf@@1"}), "admission.unresolved",
                "not a valid reference")


def test_revoked_version_is_denied_even_right_after_it_was_allowed(ws, cli, gate: Gate,  # type: ignore[no-untyped-def]
                                                                   s3: S3Server) -> None:
    bucket = s3.bucket()
    s3.put_tree(bucket, "fraud-clf/1", ws.root / "model-v1")
    uri = f"s3://{bucket}/fraud-clf/1"
    gate.allowed(isvc(uri), "fraud-clf@1")  # the verdict is now cached for this checkpoint
    cli("revoke", "fraud-clf@1", "--reason", "trained on leaked labels", cwd=ws.root).expect(0)
    gate.denied(isvc(uri), "revoked", "trained on leaked labels")
    gate.denied(isvc((ws.root / "model-v1").as_uri()), "revoked")


def test_object_overwritten_after_admission_is_denied(ws, gate: Gate, s3: S3Server) -> None:  # type: ignore[no-untyped-def]
    bucket = s3.bucket()
    s3.put_tree(bucket, "fraud-clf/1", ws.root / "model-v1")
    uri = f"s3://{bucket}/fraud-clf/1"
    gate.allowed(isvc(uri), "fraud-clf@1")  # hashed once, cached by version ids
    s3.put(bucket, "fraud-clf/1/model.bin", EVIL["model.bin"])  # a new version, same key
    gate.denied(isvc(uri), "admission.unbound")
    local = ws.root / "model-v1"
    gate.allowed(isvc(local.as_uri()), "fraud-clf@1")
    (local / "model.bin").write_bytes(b"x" * len(MODEL["model.bin"]))
    gate.denied(isvc(local.as_uri()), "admission.unbound")


def test_file_rewritten_in_place_with_its_old_mtime_is_denied(ws, gate: Gate) -> None:  # type: ignore[no-untyped-def]
    """The modification time can be set back, the change time cannot: the cache sees it."""
    folder = shutil.copytree(ws.root / "model-v1", ws.root / "served")
    target = folder / "model.bin"
    gate.allowed(isvc(folder.as_uri()), "fraud-clf@1")
    before = target.stat()
    with target.open("r+b") as f:  # same inode, same size
        f.write(b"Y" * before.st_size)
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert target.stat().st_mtime_ns == before.st_mtime_ns and target.stat().st_ino == \
        before.st_ino
    gate.denied(isvc(folder.as_uri()), "admission.unbound")


def test_warn_mode_in_the_path_admits_with_the_reason(ws, gate: Gate) -> None:  # type: ignore[no-untyped-def]
    """A webhook's service path carries no query string: the mode goes in the path."""
    evil = isvc(tree(ws.root / "evil", EVIL).as_uri())
    out = gate.admit(evil, "/v1/admission/kubernetes/warn")
    assert out["allowed"] is True
    assert any("admission.unbound" in w for w in out["warnings"]), out
    assert gate.admit(evil, "/v1/admission/kubernetes/enforce")["allowed"] is False
    r = httpx.post(gate.base + "/v1/admission/kubernetes/audit", json=review(evil),
                   headers=support.auth(gate.token), timeout=60)
    assert r.status_code == 400 and r.json()["hint"]


# --- the binder in process: what it reads, and what it caches ---------------------------------


class CountingSource:
    """A real source that counts how often its bytes are read (hash) and listed."""

    def __init__(self, inner: fetching.Source, counts: dict[str, int]):
        self.inner, self.counts = inner, counts
        self.display = inner.display

    def listing(self) -> fetching.Listing:
        self.counts["listed"] += 1
        return self.inner.listing()

    def hash(self, workers: int | None) -> tuple[fetching.Listing, Any]:
        self.counts["hashed"] += 1
        return self.inner.hash(workers)

    def download(self, into: Path, workers: int | None) -> Any:
        raise AssertionError("admission never downloads")


def binder(root: Path, counts: dict[str, int], listing_seconds: float = 0) -> Admission:
    ws = resolve(start=root)
    policy = build_policy(keys=[], identity=None, identity_regexp=None, issuer=None,
                          ca_certs=[], trusted_root=None, staging=False, threshold=None,
                          workspace=ws)
    return Admission(ws.open_ledger(), policy, ws.ledger_verifier(),
                     listing_seconds=listing_seconds,
                     open_uri=lambda uri: CountingSource(fetching.open_source(uri), counts))


def test_bytes_are_hashed_once_per_object_version(ws, gate: Gate, s3: S3Server) -> None:  # type: ignore[no-untyped-def]
    bucket = s3.bucket()
    s3.put_tree(bucket, "fraud-clf/1", ws.root / "model-v1")
    counts = {"listed": 0, "hashed": 0}
    admission = binder(ws.root, counts)
    uri = f"s3://{bucket}/fraud-clf/1"
    assert [admission.check(uri, None) for _ in range(3)] == ["fraud-clf@1"] * 3
    assert counts["hashed"] == 1 and counts["listed"] == 3
    s3.put(bucket, "fraud-clf/1/config.json", MODEL["config.json"])  # same bytes, new version
    assert admission.check(uri, None) == "fraud-clf@1"
    assert counts["hashed"] == 2  # a new version id is read again, whatever its bytes
    admission.ledger.close()


def test_a_reused_listing_still_sees_a_revocation(ws, cli, gate: Gate, s3: S3Server) -> None:  # type: ignore[no-untyped-def]
    """Within the listing window the store is not asked again, but the verdict is: a
    revocation appends to the log, and the verdict cache is keyed by the log's size."""
    bucket = s3.bucket()
    s3.put_tree(bucket, "fraud-clf/1", ws.root / "model-v1")
    counts = {"listed": 0, "hashed": 0}
    admission = binder(ws.root, counts, listing_seconds=3600)
    uri = f"s3://{bucket}/fraud-clf/1"
    try:
        assert [admission.check(uri, None) for _ in range(5)] == ["fraud-clf@1"] * 5
        assert counts == {"listed": 1, "hashed": 1}
        cli("revoke", "fraud-clf@1", "--reason", "leaked", cwd=ws.root).expect(0)
        with pytest.raises(VerificationError) as refused:
            admission.check(uri, None)
        assert refused.value.rule == "revoked" and counts["listed"] == 1
    finally:
        admission.ledger.close()


def test_location_binding_reads_no_bytes(ws, cli, s3: S3Server, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A model recorded from its store location (the signed record says where and with which
    version ids) is bound there without a read; another version at the same keys is read."""
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    bucket = s3.bucket()
    s3.put_tree(bucket, "registry/fraud-clf", tree(ws.root / "from-store", MODEL_V2))
    uri = f"s3://{bucket}/registry/fraud-clf"
    cli("record", uri, "--name", "stored-clf", "--kind", "model", cwd=ws.root).expect(0)
    counts = {"listed": 0, "hashed": 0}
    admission = binder(ws.root, counts)
    try:
        assert admission.check(uri, None) == "stored-clf@1"
        assert counts == {"listed": 1, "hashed": 0}  # bound by location and version ids
        # the same bytes elsewhere are bound by their digest (read once)
        s3.put_tree(bucket, "copy", ws.root / "from-store")
        assert admission.check(f"s3://{bucket}/copy", "stored-clf") == "stored-clf@1"
        assert counts["hashed"] == 1
        s3.put(bucket, "registry/fraud-clf/model.bin", EVIL["model.bin"])
        with pytest.raises(VerificationError) as refused:
            admission.check(uri, None)
        assert refused.value.rule == "admission.unbound" and counts["hashed"] == 2
    finally:
        admission.ledger.close()


def test_object_replaced_while_it_is_hashed_is_never_cached(ws, gate: Gate) -> None:  # type: ignore[no-untyped-def]
    """An attacker swaps the honest file in while the webhook reads it, then swaps it out: the
    identity listed first (the attacker's) must never be cached as the honest digest."""
    folder = tree(ws.root / "race", EVIL)

    class SwappingSource(fetching.open_source(folder).__class__):  # type: ignore[misc]
        def _read(self, obj: fetching.StoredObject, sink: Any) -> tuple[int, str]:
            result = super()._read(obj, sink)
            (folder / obj.relpath).write_bytes(MODEL[obj.relpath])  # the honest bytes now
            return result

    counts = {"listed": 0, "hashed": 0}
    admission = binder(ws.root, counts)
    admission.open_uri = lambda uri: SwappingSource(folder)
    with pytest.raises(VerificationError) as refused:
        admission.check(folder.as_uri(), None)
    assert refused.value.rule == "object.changed"
    assert admission._hashed == {}
    admission.ledger.close()
