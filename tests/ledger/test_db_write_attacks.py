"""Attacks by someone who can write the ledger database but holds neither the ledger's
checkpoint key nor a trusted signing key (issue 13). Each test is named after its attack and
asserts the exit code and the rule: no edit of a table other than the signed entries changes a
verdict, and the ledger's key is the pinned one, never the database's.

Every test runs on SQLite and on PostgreSQL (the ``ws`` fixture), through the real CLI, the
library API and, for admission, a real ``custody serve``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from support import service_support as service
from support.ledger_helpers import CLEAN_SCAN

import custody
from custody.provenance.hashing.files import hash_path
from custody.provenance.ledger.append import SignedRecord
from custody.provenance.log.checkpoint import (
    Checkpoint,
    NoteSigner,
    parse_checkpoint_unverified,
    sign_checkpoint,
)
from custody.provenance.verification.attestation import build_statement
from custody.provenance.workspace import load_workspace
from custody.signing.key_signer import ECKeySigner
from custody.signing.keys import load_private_key

Run = Callable[..., Any]


# --- helpers -------------------------------------------------------------------------------------


def _record(cli: Run, ws: Any, name: str, kind: str, content: bytes, *extra: str) -> Path:
    path = ws.root / f"{name}.bin"
    path.write_bytes(content)
    cli("record", path, "--name", name, "--kind", kind, *extra, cwd=ws.root).expect(0)
    return path


def _refused(result: Any, rule: str) -> dict[str, Any]:
    """A --json refusal: exit 1, the rule, a hint, no traceback."""
    result.expect(1)
    body: dict[str, Any] = result.json()
    assert body["ok"] is False and body["rule"] == rule, body
    assert body["hint"], body
    return body


def _revoked_chain(cli: Run, ws: Any) -> tuple[Path, Path]:
    """train@1 (revoked), clf@1 trained on it (recorded before the revocation)."""
    data = _record(cli, ws, "train", "dataset", b"label,x\n1,2\n")
    model = _record(cli, ws, "clf", "model", b"the weights", "--input", "train@1")
    cli("verify", model, cwd=ws.root).expect(0)
    cli("revoke", "train@1", "--reason", "label leakage", cwd=ws.root).expect(0)
    _refused(cli("--json", "verify", model, cwd=ws.root), "chain.revoked")
    return data, model


def _vkey(ws: Any) -> str:
    vkey = load_workspace(ws.home).ledger_vkey
    assert vkey is not None
    return vkey


def _outside(ws: Any, tmp_path: Path) -> tuple[str, Path]:
    """The ledger's URL as seen from a folder that is no workspace: PostgreSQL as it is; the
    SQLite file copied out of its workspace (next to its config.toml it is the workspace's)."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if ws.backend == "postgresql":
        return ws.url, elsewhere
    copy = elsewhere / "ledger.db"
    source = sqlite3.connect(ws.url.removeprefix("sqlite:///"))
    target = sqlite3.connect(copy)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    return f"sqlite:///{copy}", elsewhere


def _sql(url: str, statement: str, **params: Any) -> list[tuple[Any, ...]]:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(statement), params)
            return [tuple(r) for r in result] if result.returns_rows else []
    finally:
        engine.dispose()


def _rekey(url: str, *, resign: bool = True) -> NoteSigner:
    """The re-keying attack: a new checkpoint key under the same log name in ledger_meta, and
    (``resign``) every checkpoint re-signed with it."""
    origin = _sql(url, "SELECT value FROM ledger_meta WHERE key = 'origin'")[0][0]
    impostor = NoteSigner.generate(origin)
    _sql(url, "UPDATE ledger_meta SET value = :v WHERE key = 'checkpoint_vkey'",
         v=impostor.verifier().vkey)
    if resign:
        for size, note in _sql(url, "SELECT size, note FROM checkpoints"):
            cp = parse_checkpoint_unverified(note)
            forged = sign_checkpoint(Checkpoint(cp.origin, cp.size, cp.root, cp.extensions),
                                     impostor).decode()
            _sql(url, "UPDATE checkpoints SET note = :n WHERE size = :s", n=forged, s=size)
    return impostor


def _label(vkey: str) -> str:
    return "+".join(vkey.split("+")[:2])  # NAME+KEYID


# --- revocations come from the signed log --------------------------------------------------------


def test_delete_revocations_row_does_not_unrevoke(ws: Any, cli: Run) -> None:
    data, model = _revoked_chain(cli, ws)
    ws.sql("DELETE FROM revocations")
    body = _refused(cli("--json", "verify", model, cwd=ws.root), "chain.revoked")
    assert "train@1" in body["message"] and "label leakage" in body["message"]
    _refused(cli("--json", "verify", data, cwd=ws.root), "revoked")
    nodes = {n["ref"]: n for n in cli("lineage", "clf@1", "--json", cwd=ws.root).expect(0)
             .json()["nodes"]}
    assert nodes["train@1"]["revoked"] is True
    assert nodes["train@1"]["revocation_reason"] == "label leakage"
    assert nodes["clf@1"]["verified"] is False
    assert nodes["clf@1"]["refusal"]["rule"] == "chain.revoked"
    cli("revoke", "train@1", "--reason", "again", cwd=ws.root).expect(2, "already revoked")
    body = _refused(cli("--json", "audit", "verify", cwd=ws.root), "audit.index_missing")
    assert body["subject"] == "entry 3" and "train@1" in body["message"]


def test_revocation_row_pointed_at_other_version_moves_nothing(ws: Any, cli: Run) -> None:
    _data, model = _revoked_chain(cli, ws)
    other = _record(cli, ws, "holdout", "dataset", b"label,x\n0,0\n")
    ws.sql("UPDATE revocations SET version_id = (SELECT v.id FROM artifact_versions v "
           "JOIN artifacts a ON a.id = v.artifact_id WHERE a.name = 'holdout')")
    _refused(cli("--json", "verify", model, cwd=ws.root), "chain.revoked")
    cli("verify", other, cwd=ws.root).expect(0)  # the row says holdout: the signed log does not
    nodes = {n["ref"]: n for n in cli("lineage", "holdout@1", "--json", cwd=ws.root).expect(0)
             .json()["nodes"]}
    assert nodes["holdout@1"]["revoked"] is False and nodes["holdout@1"]["verified"] is True
    body = _refused(cli("--json", "audit", "verify", cwd=ws.root), "audit.index_edited")
    assert "revocations row" in body["message"] and "holdout@1" in body["message"]
    assert body["subject"] == "entry 3"


def test_admission_denies_model_trained_on_revoked_dataset_after_delete_from_revocations(
        ws: Any, cli: Run) -> None:
    _data, model = _revoked_chain(cli, ws)
    ws.sql("DELETE FROM revocations")
    tokens = service.make_tokens(ws.url)
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
              "request": {"uid": "u-1", "operation": "CREATE",
                          "kind": {"group": "serving.kserve.io", "version": "v1beta1",
                                   "kind": "InferenceService"},
                          "object": {"apiVersion": "serving.kserve.io/v1beta1",
                                     "kind": "InferenceService", "metadata": {"name": "svc"},
                                     "spec": {"predictor": {"model": {
                                         "modelFormat": {"name": "sklearn"},
                                         "storageUri": model.as_uri()}}}}}}
    with service.running_server(ws.root) as base:
        answer = httpx.post(base + "/v1/admission/kubernetes", json=review, timeout=60,
                            headers=service.auth(tokens["reader"])).json()["response"]
        graph = httpx.get(base + "/v1/lineage/clf@1", timeout=60,
                          headers=service.auth(tokens["reader"])).json()
    assert answer["allowed"] is False and answer["status"]["code"] == 403, answer
    assert "chain.revoked" in json.dumps(answer) and "train@1" in json.dumps(answer)
    revoked = {n["ref"]: n["revoked"] for n in graph["nodes"]}
    assert revoked == {"clf@1": False, "train@1": True}


def test_revocation_entry_edited_is_refused_not_ignored(ws: Any, cli: Run) -> None:
    """Rewriting the signed revocation entry itself (its reason, say) breaks its inclusion
    proof: verify refuses rather than honour or drop an entry the ledger key did not sign."""
    _data, model = _revoked_chain(cli, ws)
    payload = ws.sql("SELECT payload FROM ledger_entries WHERE idx = 3")[0][0]
    ws.sql("UPDATE ledger_entries SET payload = :p WHERE idx = 3",
           p=payload.replace("label leakage", "nothing to see"))
    body = _refused(cli("--json", "verify", model, cwd=ws.root),
                    "chain.merkle.inclusion_invalid")
    assert "revocation of train@1" in body["message"]
    _refused(cli("--json", "audit", "verify", cwd=ws.root), "audit.entry_edited")


def test_revocation_entry_retyped_is_caught_by_audit(ws: Any, cli: Run) -> None:
    """``entry_type`` is the one index verify uses to find revocation entries (one query, no
    payload scan): the audit re-derives it from every payload and names the row."""
    _revoked_chain(cli, ws)
    ws.sql("UPDATE ledger_entries SET entry_type = 'lineage_edge' WHERE idx = 3")
    body = _refused(cli("--json", "audit", "verify", cwd=ws.root), "audit.entry_type")
    assert body["subject"] == "entry 3"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_revocation_entry_not_utf8_is_refused_with_its_row(ws: Any, cli: Run) -> None:
    _data, model = _revoked_chain(cli, ws)
    ws.sql("UPDATE ledger_entries SET payload = CAST(X'7B22FF' AS TEXT) WHERE idx = 3")
    body = _refused(cli("--json", "verify", model, cwd=ws.root), "ledger.inconsistent")
    assert body["subject"] == "ledger entry 3"
    _refused(cli("--json", "lineage", "clf@1", cwd=ws.root), "ledger.inconsistent")


# --- the age is the signature's --------------------------------------------------------------


def _append_signed_at(ws: Any, path: Path, name: str, kind: str, recorded_at: datetime) -> None:
    """Append a record whose signed statement says ``recorded_at`` (as an honest recorder did
    back then), signed with the workspace's key."""
    manifest = hash_path(path)
    signer = ECKeySigner(load_private_key(ws.home / "keys" / "signing.key"))

    def build(version: int) -> SignedRecord:
        statement = build_statement(name=name, kind=kind, version=version, manifest=manifest,
                                    inputs=[], scan_summary=CLEAN_SCAN, recorded_at=recorded_at,
                                    tool_version="test").to_bytes()
        return SignedRecord(statement, signer.sign_statement(statement), signer.identity,
                            {**CLEAN_SCAN, "path": name, "findings": []}, signer.public_key_pem)

    with load_workspace(ws.home).open_ledger(append=True) as ledger:
        ledger.append_version(name=name, kind=kind, manifest=manifest, inputs=[], build=build)


def test_recorded_at_edit_does_not_bypass_max_age(ws: Any, cli: Run) -> None:
    policy = ws.root / "policy.toml"
    policy.write_text('version = 1\n[signers.local]\nkeys = [".custody/keys/signing.pub"]\n'
                      '[[trust]]\nsigners = ["local"]\n[artifacts]\nmax_age_days = 30\n')
    old = ws.root / "old.bin"
    old.write_bytes(b"a snapshot from 2020")
    _append_signed_at(ws, old, "old", "dataset", datetime(2020, 1, 1, tzinfo=UTC))
    model = _record(cli, ws, "clf", "model", b"weights", "--input", "old@1")
    body = _refused(cli("--json", "verify", old, "--policy", policy, cwd=ws.root),
                    "policy.max_age")
    assert "2020-01-01" in body["message"]
    _refused(cli("--json", "verify", model, "--policy", policy, cwd=ws.root),
             "chain.policy.max_age")
    # The attack: make the old record look fresh in the column an administrator can write.
    ws.sql("UPDATE artifact_versions SET recorded_at = :t", t=datetime.now(UTC))
    _refused(cli("--json", "verify", old, "--policy", policy, cwd=ws.root), "policy.max_age")
    _refused(cli("--json", "verify", model, "--policy", policy, cwd=ws.root),
             "chain.policy.max_age")
    body = _refused(cli("--json", "audit", "verify", cwd=ws.root), "audit.index_edited")
    assert "recorded_at" in body["message"] and body["subject"] == "entry 0"
    # ... and the other way round: a fresh record made to look old is still fresh.
    fresh = _record(cli, ws, "fresh", "dataset", b"new data")
    ws.sql("UPDATE artifact_versions SET recorded_at = :t", t=datetime.now(UTC) - timedelta(
        days=3650))
    cli("verify", fresh, "--policy", policy, cwd=ws.root).expect(0)


# --- checkpoint rows ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 3])
def test_deleted_checkpoint_row_is_named_by_audit(ws: Any, cli: Run, size: int) -> None:
    """Every append keeps the checkpoint it extended (0: the empty tree, 1: after train@1, 3:
    after clf@1 and its edge, before the revocation); deleting one, which proofs and `?size=`
    answers are built from, is named by the audit."""
    _revoked_chain(cli, ws)
    ws.sql("DELETE FROM checkpoints WHERE size = :s", s=size)
    body = _refused(cli("--json", "audit", "verify", cwd=ws.root), "audit.checkpoint_missing")
    assert body["subject"] == f"checkpoint {size}"


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("column", ["root", "note", "frontier"])
def test_checkpoint_column_not_utf8_is_refused_not_a_crash(ws: Any, cli: Run, column: str
                                                           ) -> None:
    _record(cli, ws, "clf", "model", b"weights")
    ws.sql(f"UPDATE checkpoints SET {column} = CAST(X'FF33' AS TEXT) "  # noqa: S608
           "WHERE size = 0")
    body = _refused(cli("--json", "audit", "verify", cwd=ws.root), "audit.checkpoint_edited")
    assert body["subject"] == "checkpoints row 0" and column in body["message"]


# --- the ledger key is pinned, never read from the database -------------------------------------


def test_rekeyed_ledger_refused_outside_a_workspace_with_and_without_pin(
        ws: Any, cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _record(cli, ws, "clf", "model", b"weights")
    vkey = _vkey(ws)
    url, elsewhere = _outside(ws, tmp_path)
    impostor = _rekey(url)
    pin = ("--ledger-vkey", vkey)
    # Without a pin: refused, whatever the database says (it used to pass with its own key).
    trust = ("--key", ws.pub)
    for args in (("audit", "verify"), ("verify", model, *trust), ("audit", "prove", "clf@1")):
        _refused(cli("--json", "--ledger", url, *args, cwd=elsewhere), "ledger.key_unpinned")
    # With the pin (the option, or the environment): the re-signed checkpoints are refused,
    # and the refusal names both key ids.
    for args in (("audit", "verify", *pin), ("verify", model, *trust, *pin),
                 ("audit", "prove", "clf@1", *pin)):
        body = _refused(cli("--json", "--ledger", url, *args, cwd=elsewhere),
                        "checkpoint.untrusted_key")
        assert _label(vkey) in body["message"], body
        assert _label(impostor.verifier().vkey) in body["message"], body
    monkeypatch.setenv("CUSTODY_LEDGER_VKEY", vkey)
    _refused(cli("--json", "--ledger", url, "audit", "verify", cwd=elsewhere),
             "checkpoint.untrusted_key")
    with pytest.raises(custody.VerificationError) as refused:
        custody.verify(model, custody.Policy.from_key_files([ws.pub]), ledger=url)
    assert refused.value.rule == "checkpoint.untrusted_key"
    # The attacker's key, pinned by mistake, is the one thing that makes it pass: the pin is
    # the whole defence, which is why it never comes from the database.
    monkeypatch.delenv("CUSTODY_LEDGER_VKEY")
    cli("--ledger", url, "audit", "verify", "--ledger-vkey", impostor.verifier().vkey,
        cwd=elsewhere).expect(0)


def test_rekeyed_ledger_refused_inside_its_workspace(ws: Any, cli: Run) -> None:
    model = _record(cli, ws, "clf", "model", b"weights")
    _rekey(ws.url)
    _refused(cli("--json", "audit", "verify", cwd=ws.root), "checkpoint.untrusted_key")
    _refused(cli("--json", "verify", model, cwd=ws.root), "checkpoint.untrusted_key")
    _refused(cli("--json", "lineage", "clf@1", cwd=ws.root), "checkpoint.untrusted_key")


def test_ledger_meta_key_replaced_refused_naming_both_keys(ws: Any, cli: Run) -> None:
    """Only ledger_meta edited (the checkpoints still verify under the pinned key): the database
    names another key than the pin, which is refused too."""
    model = _record(cli, ws, "clf", "model", b"weights")
    impostor = _rekey(ws.url, resign=False)
    for args in (("audit", "verify"), ("verify", model)):
        body = _refused(cli("--json", *args, cwd=ws.root), "ledger.key_mismatch")
        assert _label(_vkey(ws)) in body["message"], body
        assert _label(impostor.verifier().vkey) in body["message"], body


def test_unpinned_ledger_refused_with_hint(ws: Any, cli: Run, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Follow the hint, each of its three ways, and the same ledger then passes."""
    model = _record(cli, ws, "clf", "model", b"weights")
    url, elsewhere = _outside(ws, tmp_path)
    body = _refused(cli("--json", "--ledger", url, "audit", "verify", cwd=elsewhere),
                    "ledger.key_unpinned")
    hint = body["hint"]
    for way in ("--ledger-vkey VKEY", "CUSTODY_LEDGER_VKEY=VKEY", 'ledger_vkey = "VKEY"',
                "config.toml"):
        assert way in hint, hint
    with pytest.raises(custody.VerificationError) as refused:
        custody.verify(model, custody.Policy.from_key_files([ws.pub]), ledger=url)
    assert refused.value.rule == "ledger.key_unpinned"
    # VKEY: the ledger_vkey line of the config.toml of the workspace that created the ledger.
    line = next(x for x in (ws.home / "config.toml").read_text().splitlines()
                if x.startswith("ledger_vkey = "))
    vkey = line.split("=", 1)[1].strip().strip('"')
    # 1. --ledger-vkey VKEY
    cli("--ledger", url, "audit", "verify", "--ledger-vkey", vkey, cwd=elsewhere).expect(0)
    cli("--ledger", url, "verify", model, "--key", ws.pub, "--ledger-vkey", vkey,
        cwd=elsewhere).expect(0)
    receipt = elsewhere / "clf.receipt"
    cli("--ledger", url, "audit", "prove", "clf@1", "--ledger-vkey", vkey, "--out", receipt,
        cwd=elsewhere).expect(0)
    cli("verify", model, "--receipt", receipt, "--key", ws.pub, "--ledger-vkey", vkey,
        cwd=elsewhere).expect(0)
    # 2. CUSTODY_LEDGER_VKEY=VKEY (the CLI and the library)
    monkeypatch.setenv("CUSTODY_LEDGER_VKEY", vkey)
    cli("--ledger", url, "audit", "verify", cwd=elsewhere).expect(0)
    cli("--ledger", url, "verify", model, "--key", ws.pub, cwd=elsewhere).expect(0)
    report = custody.verify(model, custody.Policy.from_key_files([ws.pub]), ledger=url)
    assert report.artifact.ref == "clf@1" and report.artifact.inclusion is not None
    assert report.artifact.inclusion["ledger_key_pinned"] is True
    monkeypatch.delenv("CUSTODY_LEDGER_VKEY")
    # 3. a workspace whose config.toml says ledger_vkey = "VKEY"
    joined = tmp_path / "joined"
    joined.mkdir()
    cli("init", "--ledger", url, cwd=joined).expect(0)
    assert f'ledger_vkey = "{vkey}"' in (joined / ".custody" / "config.toml").read_text()
    cli("audit", "verify", cwd=joined).expect(0)
    cli("verify", model, "--key", ws.pub, cwd=joined).expect(0)


def test_joining_a_rekeyed_ledger_with_a_pin_is_refused(ws: Any, cli: Run, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """``custody init --ledger URL`` pins the key the database names (trust on first use), unless
    $CUSTODY_LEDGER_VKEY pins one already: then a re-keyed database is refused at init."""
    _record(cli, ws, "clf", "model", b"weights")
    url, _ = _outside(ws, tmp_path)
    _rekey(url)
    monkeypatch.setenv("CUSTODY_LEDGER_VKEY", _vkey(ws))
    joined = tmp_path / "joined"
    joined.mkdir()
    cli("init", "--ledger", url, cwd=joined).expect(2, "re-keyed", _label(_vkey(ws)))
    assert not (joined / ".custody").exists()
