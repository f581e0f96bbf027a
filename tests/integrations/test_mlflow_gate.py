"""The MLflow gate decides by bytes, against a real ``mlflow server`` and a real ``custody serve``.

One MLflow server (SQLite backend store, local artifact destination served through the tracking
server) and one Custody service on loopback for the module; the webhook is created through
MLflow's REST API, and every delivery below is one MLflow sent itself (a recording relay between
the two keeps them, so that a real one can be replayed). Nothing is faked: the gate downloads the
version's artifacts from MLflow, hashes them and verifies the record of that digest.
"""

from __future__ import annotations

import json
import os
import pickle
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from support.mlflow_server import Delivery, MlflowApi, MlflowServer, Relay, recording_relay
from support.service_support import running_server

import custody
from custody.cli import main

pytest.importorskip("mlflow", reason="the MLflow gate tests need mlflow (the test extra)")

SECRET = secrets.token_hex(16)
ALIAS = "custody-verified"
MODEL = "fraud-clf"


@dataclass
class Stack:
    root: Path
    mlflow: MlflowApi
    custody: str
    relay: Relay
    webhook_id: str
    honest: Path  # the MLmodel directory recorded as fraud-clf@1


def _cli(cwd: Path, *args: str | Path) -> None:
    old = Path.cwd()
    os.chdir(cwd)
    try:
        code = main([str(a) for a in args])
    finally:
        os.chdir(old)
    assert code == 0, args


def model_dir(path: Path, coef: list[float]) -> Path:
    """An MLmodel directory as MLflow stores one (the layout ``mlflow.sklearn.save_model``
    writes): the MLmodel file, the pickled model, its requirements."""
    path.mkdir(parents=True)
    (path / "MLmodel").write_text("flavors:\n  python_function:\n    loader_module: "
                                  "mlflow.sklearn\n    model_path: model.pkl\n"
                                  "  sklearn:\n    pickled_model: model.pkl\n")
    (path / "model.pkl").write_bytes(pickle.dumps({"coef": coef, "intercept": 0.5}, protocol=4))
    (path / "requirements.txt").write_text("scikit-learn\n")
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("mlflow-gate")
    server = MlflowServer(root / "mlflow").start()  # imports and migrates while we set up
    try:
        project = root / "project"
        project.mkdir()
        os.environ.pop("CUSTODY_LEDGER", None)
        _cli(project, "init")
        honest = model_dir(project / "fraud-clf", [0.25, -1.5, 3.0])
        _cli(project, "record", honest, "--name", MODEL, "--kind", "model")
        env = {"CUSTODY_MLFLOW_WEBHOOK_SECRET": SECRET,
               "CUSTODY_MLFLOW_TRACKING_URI": server.uri}
        with running_server(project, env=env) as base, recording_relay(base) as relay:
            api = MlflowApi(server.wait_healthy())
            hook = api.call("POST", "webhooks", json={
                "name": "custody-gate", "url": relay.url + "/v1/hooks/mlflow",
                "secret": SECRET, "events": [
                    {"entity": "MODEL_VERSION", "action": "CREATED"},
                    {"entity": "MODEL_VERSION_ALIAS", "action": "CREATED"}]})
            webhook_id = str(hook["webhook"]["webhook_id"])  # type: ignore[index]
            yield Stack(root, api, base, relay, webhook_id, honest)
    finally:
        server.stop()


def answer(delivery: Delivery) -> dict[str, object]:
    assert delivery.status == 200, (delivery.status, delivery.answer)
    return json.loads(delivery.answer)  # type: ignore[no-any-return]


def register(stack: Stack, source: Path, tags: dict[str, str] | None = None) -> str:
    run_id, uri = stack.mlflow.log_directory(source)
    return stack.mlflow.register(MODEL, uri, run_id, tags)


def test_honest_version_gets_the_alias(stack: Stack) -> None:
    version = register(stack, stack.honest)
    verdict = answer(stack.relay.wait_for("model_version", "created", name=MODEL,
                                          version=version))
    digest = custody.hash_path(stack.honest).ref
    assert verdict["verdict"] == "verified" and verdict["ref"] == f"{MODEL}@1", verdict
    assert verdict["digest"] == digest and digest.startswith("sha256-manifest-v1:")
    assert verdict["alias_set"] is True
    assert stack.mlflow.alias(MODEL, ALIAS) == version
    tags = stack.mlflow.tags(MODEL, version)
    assert tags["custody.verdict"] == "verified" and tags["custody.ref"] == f"{MODEL}@1"
    assert tags["custody.digest"] == digest
    assert "custody.rule" not in tags
    # the gate's own alias move comes back as model_version_alias.created: judged again by the
    # bytes, verified, and nothing is written (no loop)
    again = answer(stack.relay.wait_for("model_version_alias", "created", name=MODEL,
                                        version=version, alias=ALIAS))
    assert again["verdict"] == "verified" and again["tags_set"] == {}, again
    assert again["alias_set"] is False and again["alias_removed"] is False


def test_tag_swap_attack_is_refused_and_the_alias_stays(stack: Stack) -> None:
    """The attack of issue 14: other bytes registered with the tag custody.artifact=fraud-clf@1
    (the honest record's name) are refused, and the alias stays on the honest version."""
    honest_version = stack.mlflow.alias(MODEL, ALIAS)
    assert honest_version is not None
    evil = model_dir(stack.root / "evil", [9.0, 9.0, 9.0])
    version = register(stack, evil, {"custody.artifact": f"{MODEL}@1"})
    verdict = answer(stack.relay.wait_for("model_version", "created", name=MODEL,
                                          version=version))
    assert verdict["verdict"] == "refused" and verdict["rule"] == "mlflow.tag_mismatch", verdict
    assert verdict["digest"] == custody.hash_path(evil).ref
    assert verdict["alias_set"] is False
    assert stack.mlflow.alias(MODEL, ALIAS) == honest_version
    tags = stack.mlflow.tags(MODEL, version)
    assert tags["custody.verdict"] == "refused" and tags["custody.rule"] == "mlflow.tag_mismatch"
    assert custody.hash_path(evil).ref in tags["custody.reason"]
    assert "custody.ref" not in tags


def test_bytes_never_recorded_are_refused(stack: Stack) -> None:
    honest_version = stack.mlflow.alias(MODEL, ALIAS)
    unknown = model_dir(stack.root / "unknown", [1.0])
    version = register(stack, unknown)
    verdict = answer(stack.relay.wait_for("model_version", "created", name=MODEL,
                                          version=version))
    assert verdict["verdict"] == "refused" and verdict["rule"] == "record.not_found", verdict
    assert stack.mlflow.alias(MODEL, ALIAS) == honest_version
    assert stack.mlflow.tags(MODEL, version)["custody.rule"] == "record.not_found"


def test_alias_moved_by_hand_to_unverified_bytes_is_taken_away(stack: Stack) -> None:
    """Someone with edit rights sets the alias on the refused version: the gate judges it by its
    bytes and removes the alias (deployments of the alias fail closed); set back on verified
    bytes it stays."""
    evil = model_dir(stack.root / "evil-by-hand", [7.0])
    version = register(stack, evil)
    answer(stack.relay.wait_for("model_version", "created", name=MODEL, version=version))
    honest_version = stack.mlflow.alias(MODEL, ALIAS)
    stack.mlflow.call("POST", "registered-models/alias",
                      json={"name": MODEL, "alias": ALIAS, "version": version})
    verdict = answer(stack.relay.wait_for("model_version_alias", "created", name=MODEL,
                                          version=version, alias=ALIAS))
    assert verdict["verdict"] == "refused" and verdict["alias_removed"] is True, verdict
    assert stack.mlflow.alias(MODEL, ALIAS) is None
    deliveries = len(stack.relay.deliveries)
    stack.mlflow.call("POST", "registered-models/alias",
                      json={"name": MODEL, "alias": ALIAS, "version": honest_version})
    kept = answer(stack.relay.wait_for("model_version_alias", "created", name=MODEL,
                                       version=honest_version, alias=ALIAS,
                                       after=deliveries))
    assert kept["verdict"] == "verified" and kept["alias_removed"] is False, kept
    assert stack.mlflow.alias(MODEL, ALIAS) == honest_version


def test_replayed_delivery_is_refused(stack: Stack) -> None:
    """A real delivery sent again (same id, same signature, inside the window) is refused with
    409 and changes nothing."""
    original = stack.relay.wait_for("model_version", "created", name=MODEL, version="1")
    before = stack.mlflow.alias(MODEL, ALIAS)
    replay = httpx.post(stack.custody + original.path, content=original.body,
                        headers=original.headers, timeout=60)
    assert replay.status_code == 409, replay.text
    body = replay.json()
    assert body["rule"] == "mlflow.replayed" and body["hint"], body
    assert body["subject"] == original.headers["X-MLflow-Delivery-Id"]
    assert stack.mlflow.alias(MODEL, ALIAS) == before


def test_mlflow_test_webhook_gets_a_clear_200(stack: Stack) -> None:
    result = stack.mlflow.call("POST", f"webhooks/{stack.webhook_id}/test", json={})["result"]
    assert result["success"] is True and result["response_status"] == 200, result  # type: ignore[index]
    body = json.loads(result["response_body"])  # type: ignore[index]
    assert body["test"] is True and body["handled"] is False
    assert "signature checks out" in body["message"] and body["tracking_uri_set"] is True


def test_the_mlflow_client_path_downloads_the_same_bytes(stack: Stack, tmp_path: Path) -> None:
    """A non-proxied URI (here the tracking server's http artifact endpoint) goes through the
    MLflow client (mlflow-skinny); the bytes and their digest are the same."""
    from custody.provenance.integrations import mlflow_rest as rest_api

    uri = stack.mlflow.version(MODEL, "1")["source"]
    assert isinstance(uri, str) and uri.startswith("mlflow-artifacts:/")
    rest = rest_api.MlflowRest(stack.mlflow.uri)
    http = f"{stack.mlflow.uri}/api/2.0/mlflow-artifacts/artifacts/" + \
        uri.removeprefix("mlflow-artifacts:/").lstrip("/")
    via_client = rest_api.download_version(rest, http, tmp_path / "client")
    via_proxy = rest_api.download_version(rest, uri, tmp_path / "proxy")
    assert custody.hash_path(via_client).ref == custody.hash_path(via_proxy).ref == \
        custody.hash_path(stack.honest).ref


def test_artifacts_on_the_mlflow_hosts_disk_are_not_read(tmp_path: Path) -> None:
    from custody.errors import ArtifactError
    from custody.provenance.integrations import mlflow_rest as rest_api

    rest = rest_api.MlflowRest("http://127.0.0.1:9")
    for uri in ("/etc", "file:///etc", "mlflow-artifacts://other-host:5000/0/x"):
        with pytest.raises(ArtifactError):
            rest_api.download_version(rest, uri, tmp_path / "x")


def signed(body: bytes, delivery: str, stamp: int, secret: str = SECRET) -> dict[str, str]:
    """The headers MLflow sends with ``body`` (mlflow.webhooks.delivery's HMAC scheme)."""
    import base64
    import hashlib
    import hmac

    mac = hmac.new(secret.encode(), f"{delivery}.{stamp}.{body.decode()}".encode(),
                   hashlib.sha256).digest()
    return {"Content-Type": "application/json", "X-MLflow-Delivery-Id": delivery,
            "X-MLflow-Timestamp": str(stamp),
            "X-MLflow-Signature": "v1," + base64.b64encode(mac).decode()}


def test_a_delivery_that_failed_is_not_refused_as_a_replay_when_retried(stack: Stack) -> None:
    """MLflow retries a delivery answered with an error under the same id: the retry is handled
    again, not refused as a replay (here: a version MLflow does not have, 404 both times)."""
    import time
    import uuid

    body = json.dumps({"entity": "model_version", "action": "created",
                       "timestamp": "2026-12-01T00:00:00+00:00",
                       "data": {"name": MODEL, "version": "999", "source": "models:/m-1",
                                "run_id": "r", "tags": {}, "description": None}}).encode()
    headers = signed(body, str(uuid.uuid4()), int(time.time()))
    for _ in range(2):
        r = httpx.post(stack.custody + "/v1/hooks/mlflow", content=body, headers=headers,
                       timeout=60)
        assert r.status_code == 404 and "MLflow has no" in r.json()["message"], r.text
    assert stack.mlflow.alias(MODEL, ALIAS) is not None


def test_the_replay_window_on_both_backends(ws) -> None:  # type: ignore[no-untyped-def]
    """The delivery ids kept in the ledger database (SQLite and PostgreSQL): a second delivery
    of one id is refused, rows older than the window are dropped as others arrive, and a
    released delivery is accepted again."""
    from sqlalchemy import create_engine

    from custody.errors import VerificationError
    from custody.provenance.integrations import mlflow as gate

    engine = create_engine(ws.url)
    try:
        now = 1_800_000_000.0
        gate.remember_delivery(engine, "d-1", int(now), window=300, now=now)
        with pytest.raises(VerificationError) as refused:
            gate.remember_delivery(engine, "d-1", int(now), window=300, now=now + 299)
        assert refused.value.rule == "mlflow.replayed" and refused.value.subject == "d-1"
        gate.remember_delivery(engine, "d-2", int(now), window=300, now=now + 10)
        assert ws.sql("SELECT delivery_id FROM webhook_deliveries ORDER BY delivery_id") == [
            ("d-1",), ("d-2",)]
        gate.remember_delivery(engine, "d-3", int(now) + 400, window=300, now=now + 400)
        assert ws.sql("SELECT delivery_id FROM webhook_deliveries") == [("d-3",)]
        gate.forget_delivery(engine, "d-3")
        gate.remember_delivery(engine, "d-3", int(now) + 400, window=300, now=now + 401)
    finally:
        engine.dispose()


def test_without_the_mlflow_client_the_error_names_the_extra(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An s3:// artifact URI needs mlflow-skinny: where it is not installed (the import is made
    to fail as it would), the error is an operational one naming custody[mlflow]."""
    from custody.errors import LedgerError
    from custody.provenance.integrations import mlflow_rest as rest_api

    for module in ("mlflow", "mlflow.artifacts", "mlflow.exceptions"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(LedgerError) as missing:
        rest_api.download_version(rest_api.MlflowRest("http://127.0.0.1:9"),
                                  "s3://bucket/model", tmp_path / "x")
    assert "custody[mlflow]" in (missing.value.hint or "")
    assert not (tmp_path / "x").exists()
