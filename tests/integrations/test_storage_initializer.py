"""The KServe storage initializer: `custody fetch --verify SRC DEST`, the command a
ClusterStorageContainer runs with the two arguments KServe passes (the storageUri and
/mnt/models), against a real S3 server (moto, versioned buckets) and local files.

What the predictor would load is exactly what was verified: an object overwritten after
admission is refused at fetch time and DEST stays empty; a refusal exits 1 naming the rule, an
error exits 2, and neither leaves a byte in DEST.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import service_support as support
from support.s3_server import S3Server

from custody.provenance.verification.fetch import STAGING_PREFIX

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=False)

MODEL = {"model.bin": b"fraud classifier weights v1\n", "config.json": b'{"layers": 3}\n'}


def tree(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        (root / rel).write_bytes(data)
    return root


def contents(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with S3Server.start() as server:
        yield server


@pytest.fixture
def store(ws, cli, s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Any]:  # type: ignore[no-untyped-def]
    """fraud-clf@1 recorded locally, and its bytes uploaded to a versioned bucket."""
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    cli("record", tree(ws.root / "model", MODEL), "--name", "fraud-clf", "--kind", "model",
        cwd=ws.root).expect(0)
    bucket = s3.bucket()
    s3.put_tree(bucket, "fraud-clf/1", ws.root / "model")
    return bucket, s3


def test_verified_model_is_fetched_into_an_empty_mount(ws, cli, store) -> None:  # type: ignore[no-untyped-def]
    bucket, _ = store
    mount = ws.root / "mnt" / "models"
    mount.mkdir(parents=True)  # KServe's emptyDir, already there
    out = cli("fetch", "--verify", f"s3://{bucket}/fraud-clf/1", mount, "--json",
              cwd=ws.root).expect(0).json()
    assert out["verdict"] == "verified" and out["artifact"]["ref"] == "fraud-clf@1"
    assert contents(mount) == MODEL
    assert not [p for p in mount.iterdir() if p.name.startswith(STAGING_PREFIX)]
    assert all(p.stat().st_mode & 0o044 == 0o044 for p in mount.iterdir())  # readable by all
    # a DEST that does not exist yet is created by one rename of the verified tree
    cli("fetch", "--verify", (ws.root / "model").as_uri(), ws.root / "new" / "dest",
        cwd=ws.root).expect(0, "VERIFIED", "fraud-clf@1")
    assert contents(ws.root / "new" / "dest") == MODEL
    single = ws.root / "single"
    cli("record", tree(ws.root / "one", {"w.bin": b"one file"}) / "w.bin", "--name", "w",
        "--kind", "model", cwd=ws.root).expect(0)
    cli("fetch", "--verify", ws.root / "one" / "w.bin", single, cwd=ws.root).expect(0)
    assert contents(single) == {"w.bin": b"one file"}


def test_object_overwritten_after_admission_then_fetched_is_refused(ws, cli, store) -> None:  # type: ignore[no-untyped-def]
    """Admitted (the bytes were fraud-clf@1), then the object is replaced before the pod
    starts: the storage initializer hashes what it downloads and refuses; DEST stays empty."""
    bucket, s3 = store
    uri = f"s3://{bucket}/fraud-clf/1"
    tokens = support.make_tokens(ws.url)
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
              "request": {"uid": str(uuid.uuid4()), "operation": "CREATE", "object": {
                  "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                  "metadata": {"name": "fraud"},
                  "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"},
                                                   "storageUri": uri}}}}}}
    with support.running_server(ws.root, env=s3.env) as base:
        admitted = httpx.post(base + "/v1/admission/kubernetes", json=review, timeout=60,
                              headers=support.auth(tokens["reader"])).json()["response"]
    assert admitted["allowed"] is True, admitted
    s3.put(bucket, "fraud-clf/1/model.bin", b"attacker weights, same key\n")
    mount = ws.root / "mnt"
    mount.mkdir()
    refused = cli("fetch", "--verify", uri, mount, "--json", cwd=ws.root).expect(1)
    assert refused.json()["rule"] == "artifact.modified", refused.out
    assert "changed: model.bin" in refused.json()["message"]
    assert list(mount.iterdir()) == []


def test_refusals_and_errors_leave_dest_untouched(ws, cli, store) -> None:  # type: ignore[no-untyped-def]
    bucket, _ = store
    cli("revoke", "fraud-clf@1", "--reason", "leaked", cwd=ws.root).expect(0)
    mount = ws.root / "mnt"
    mount.mkdir()
    out = cli("fetch", "--verify", f"s3://{bucket}/fraud-clf/1", mount, "--json",
              cwd=ws.root).expect(1)
    assert out.json()["rule"] == "revoked"
    assert list(mount.iterdir()) == []
    for src in (f"s3://{bucket}/no/such/prefix", f"s3://nonexistent-{uuid.uuid4().hex[:8]}/m",
                "pvc://claim/fraud-clf/1"):
        cli("fetch", "--verify", src, mount, cwd=ws.root).expect(2)
        assert list(mount.iterdir()) == [], src
    # never mixed with files that were there before
    (mount / "keep.txt").write_text("someone else's file")
    cli("fetch", "--verify", (ws.root / "model").as_uri(), mount, cwd=ws.root).expect(
        2, "not empty")
    assert contents(mount) == {"keep.txt": b"someone else's file"}
    cli("fetch", (ws.root / "model").as_uri(), ws.root / "x", cwd=ws.root).expect(2, "--verify")
    assert not (ws.root / "x").exists()


def test_flagged_model_is_refused_by_the_scan_of_the_staged_copy(ws, cli, store) -> None:  # type: ignore[no-untyped-def]
    """A pickle recorded with --allow-flagged: the copy fetch staged is scanned again and
    refused; nothing reaches DEST."""
    bucket, s3 = store
    evil = ws.root / "evil" / "model.pkl"
    evil.parent.mkdir()
    evil.write_bytes((Path(__file__).resolve().parents[2] / "sample_data" / "malicious.pkl")
                     .read_bytes())
    cli("record", evil, "--name", "evil", "--kind", "model", "--allow-flagged",
        cwd=ws.root).expect(0)
    s3.put(bucket, "evil/model.pkl", evil.read_bytes())
    mount = ws.root / "mnt"
    mount.mkdir()
    out = cli("fetch", "--verify", f"s3://{bucket}/evil/model.pkl", mount, "--json",
              cwd=ws.root).expect(1)
    assert out.json()["rule"] in ("scan.flagged", "pickle.global.dangerous"), out.out
    assert list(mount.iterdir()) == []


def test_interrupted_fetch_leaves_only_its_staging_which_the_next_one_clears(ws, cli, store  # type: ignore[no-untyped-def]
                                                                            ) -> None:
    """A storage initializer killed mid-download restarts in the same pod: its leftover
    staging directory is not mistaken for content, and is removed."""
    bucket, _ = store
    mount = ws.root / "mnt"
    (mount / f"{STAGING_PREFIX}killed" / "in").mkdir(parents=True)
    (mount / f"{STAGING_PREFIX}killed" / "in" / "model.bin").write_bytes(b"half")
    cli("fetch", "--verify", f"s3://{bucket}/fraud-clf/1", mount, cwd=ws.root).expect(0)
    assert contents(mount) == MODEL


def test_a_copy_at_another_uri_is_the_recorded_model(ws, cli, store) -> None:  # type: ignore[no-untyped-def]
    """The top-level name (the last path segment) is a label no digest covers: the bytes are
    what is verified, wherever they are copied."""
    bucket, s3 = store
    s3.put_tree(bucket, "elsewhere/serving-copy", ws.root / "model")
    out = cli("fetch", "--verify", f"s3://{bucket}/elsewhere/serving-copy", ws.root / "d",
              "--json", cwd=ws.root).expect(0).json()
    assert out["artifact"]["ref"] == "fraud-clf@1"
    assert {o["relpath"] for o in out["objects"]} == set(MODEL)
    assert json.loads((ws.root / "d" / "config.json").read_text()) == {"layers": 3}
