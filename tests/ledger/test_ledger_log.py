"""The ledger's Merkle log on SQLite and PostgreSQL: proofs, checkpoints, audit, tampering."""

from __future__ import annotations

import random

import pytest
from support import ledger_helpers

from custody.errors import LedgerError, VerificationError
from custody.provenance.ledger.audit import audit_ledger
from custody.provenance.ledger.store import Ledger
from custody.provenance.log.checkpoint import NoteVerifier, verify_checkpoint
from custody.provenance.log.merkle import leaf_hash, root_of, verify_consistency, verify_inclusion
from custody.provenance.workspace import load_workspace


def _open(ws) -> tuple[Ledger, NoteVerifier]:  # type: ignore[no-untyped-def]
    workspace = load_workspace(ws.home)
    verifier = workspace.ledger_verifier()
    assert verifier is not None
    return workspace.open_ledger(append=True), verifier


def _has_checkpoint(ledger: Ledger, size: int) -> bool:
    try:
        ledger.checkpoint(size)
    except LedgerError:
        return False
    return True


def test_every_proof_the_ledger_makes_verifies(ws) -> None:  # type: ignore[no-untyped-def]
    ledger, verifier = _open(ws)
    try:
        ledger_helpers.append_records(ledger, ws.home, 23, with_inputs=True)
        head = ledger.head()
        cp = verify_checkpoint(head.note, verifier)
        assert cp.size == head.size == ledger.entry_count()
        entries = [ledger.entry(i) for i in range(cp.size)]
        assert [e.idx for e in entries] == list(range(cp.size))  # gapless
        leaves = [leaf_hash(e.payload.encode()) for e in entries]
        roots = {s: root_of(leaves[:s]) for s in range(cp.size + 1)}
        signed_sizes = [s for s in range(cp.size + 1) if _has_checkpoint(ledger, s)]
        assert len(signed_sizes) == 1 + len({e.idx for e in entries
                                             if e.entry_type == "artifact_version"})
        for size in signed_sizes:  # every signed checkpoint states the true root
            assert bytes.fromhex(ledger.checkpoint(size).root) == roots[size]
        for size in range(1, cp.size + 1):
            for idx in range(size):
                proof = ledger.prove_inclusion(idx, size)
                verify_inclusion(leaf_hash(entries[idx].payload.encode()), idx, size, proof,
                                 roots[size])
        for size1 in range(cp.size + 1):
            for size2 in range(size1, cp.size + 1, 3):
                proof = ledger.prove_consistency(size1, size2)
                verify_consistency(size1, size2, proof, roots[size1], roots[size2])
    finally:
        ledger.close()


def test_one_bit_changes_to_ledger_proofs_are_refused(ws) -> None:  # type: ignore[no-untyped-def]
    ledger, _ = _open(ws)
    rng = random.Random(7)
    try:
        ledger_helpers.append_records(ledger, ws.home, 12, with_inputs=True)
        size = ledger.head().size
        root = bytes.fromhex(ledger.head().root)
        for _ in range(40):
            idx = rng.randrange(size)
            leaf = leaf_hash(ledger.entry(idx).payload.encode())
            proof = ledger.prove_inclusion(idx, size)
            which = rng.randrange(len(proof) + 1)
            bit = 1 << rng.randrange(8)
            if which == len(proof):
                bad_root = bytes([root[0] ^ bit]) + root[1:]
                with pytest.raises(VerificationError):
                    verify_inclusion(leaf, idx, size, proof, bad_root)
            else:
                bad = list(proof)
                bad[which] = bytes([bad[which][0] ^ bit]) + bad[which][1:]
                with pytest.raises(VerificationError):
                    verify_inclusion(leaf, idx, size, bad, root)
    finally:
        ledger.close()


def test_audit_passes_and_proves_consistency_with_a_saved_checkpoint(ws, cli) -> None:  # type: ignore[no-untyped-def]
    ledger, verifier = _open(ws)
    try:
        ledger_helpers.append_records(ledger, ws.home, 5, with_inputs=True)
        (ws.root / "old.cp").write_text(ledger.head().note)
        ledger_helpers.append_records(ledger, ws.home, 4, with_inputs=False, prefix="later")
        report = audit_ledger(ledger, verifier, saved_checkpoints=(ledger.checkpoint(4).note
                                                                  .encode(),))
        assert report.size == ledger.entry_count()
        assert report.consistent_with == [4]
    finally:
        ledger.close()
    out = cli("audit", "verify", "--checkpoint", ws.root / "old.cp", "--json",
              cwd=ws.root).expect(0).json()
    assert out["ok"] is True and out["consistent_with_saved_checkpoints"]
    exported = cli("audit", "checkpoint", cwd=ws.root).expect(0).out
    assert exported.startswith("custody.ledger/")


@pytest.mark.parametrize("attack", [
    "update_payload", "update_payload_and_leaf", "update_signature", "delete_row",
    "swap_rows", "insert_row", "edit_index_row", "insert_edge", "edit_checkpoint",
])
def test_audit_detects_direct_database_tampering(ws, cli, attack: str) -> None:  # type: ignore[no-untyped-def]
    ledger, _ = _open(ws)
    try:
        ledger_helpers.append_records(ledger, ws.home, 4, with_inputs=True)
    finally:
        ledger.close()
    cli("audit", "verify", cwd=ws.root).expect(0)
    size = ws.entry_count()
    victim = 2
    if attack == "update_payload":
        ws.sql("UPDATE ledger_entries SET payload = replace(payload, :a, :b) WHERE idx = :i",
               a='"version":1', b='"version":7', i=victim)
        expected = ("audit.entry_edited", f"entry {victim}")
    elif attack == "update_payload_and_leaf":
        from custody.provenance.log.merkle import leaf_hash as lh

        payload = ws.sql("SELECT payload FROM ledger_entries WHERE idx = :i", i=victim)[0][0]
        forged = payload.replace('"activity":"trained_on"', '"activity":"derived_from"')
        forged = forged.replace('"version":1', '"version":5') if forged == payload else forged
        ws.sql("UPDATE ledger_entries SET payload = :p, leaf_hash = :h WHERE idx = :i",
               p=forged, h=lh(forged.encode()).hex(), i=victim)
        expected = ("audit.root_mismatch", "entry")
    elif attack == "update_signature":
        import json

        from custody.provenance.log.merkle import leaf_hash as lh
        from custody.signing.statement import canonical_json

        payload = json.loads(ws.sql("SELECT payload FROM ledger_entries WHERE idx = 0")[0][0])
        bundle = json.loads(payload["bundle"])
        sig = bundle["dsseEnvelope"]["signatures"][0]["sig"]
        flipped = "A" if sig[10] != "A" else "B"
        bundle["dsseEnvelope"]["signatures"][0]["sig"] = sig[:10] + flipped + sig[11:]
        payload["bundle"] = json.dumps(bundle)
        forged = canonical_json(payload).decode()
        ws.sql("UPDATE ledger_entries SET payload = :p, leaf_hash = :h WHERE idx = 0",
               p=forged, h=lh(forged.encode()).hex())
        expected = ("audit.root_mismatch", "entry")
    elif attack == "delete_row":
        ws.sql("DELETE FROM lineage_edges WHERE entry_idx = :i", i=victim)
        ws.sql("DELETE FROM ledger_entries WHERE idx = :i", i=victim)
        expected = ("audit.entry_gap", f"entry {victim}")
    elif attack == "swap_rows":
        rows = ws.sql("SELECT idx, payload, leaf_hash, entry_type FROM ledger_entries "
                      "WHERE idx IN (0, 2) ORDER BY idx")
        for (idx, _, _, _), (_, payload, leaf, kind) in zip(rows, reversed(rows), strict=True):
            ws.sql("UPDATE ledger_entries SET payload = :p, leaf_hash = :h, entry_type = :t "
                   "WHERE idx = :i", p=payload, h=leaf, t=kind, i=idx)
        expected = ("audit.root_mismatch", "entry")
    elif attack == "insert_row":
        ws.sql("INSERT INTO ledger_entries (idx, entry_type, payload, leaf_hash, created_at) "
               "SELECT :n, entry_type, payload, leaf_hash, created_at FROM ledger_entries "
               "WHERE idx = 0", n=size)
        expected = ("audit.size_mismatch", "")
    elif attack == "edit_index_row":
        ws.sql("UPDATE artifact_versions SET digest = :d WHERE entry_idx = 0", d="ab" * 32)
        expected = ("audit.index_edited", "entry 0")
    elif attack == "insert_edge":
        ws.sql("INSERT INTO lineage_edges (activity, input_version_id, output_version_id, "
               "entry_idx) SELECT activity, output_version_id, input_version_id, entry_idx "
               "FROM lineage_edges LIMIT 1")
        expected = ("audit.", "")
    else:  # edit_checkpoint
        ws.sql("UPDATE checkpoints SET root = :r WHERE size = 1", r="00" * 32)
        expected = ("audit.checkpoint_edited", "checkpoint row 1")
    result = cli("audit", "verify", cwd=ws.root).expect(1, *expected)
    assert "AUDIT PASSED" not in result.out


def test_forked_checkpoint_is_detected(ws, cli) -> None:  # type: ignore[no-untyped-def]
    """A checkpoint signed for another history of the same size is refused as a fork."""
    ledger, _ = _open(ws)
    try:
        ledger_helpers.append_records(ledger, ws.home, 3, with_inputs=False)
        signer = load_workspace(ws.home).ledger_signer()
        assert signer is not None
        from custody.provenance.log.checkpoint import Checkpoint, sign_checkpoint

        head = ledger.head()
        forked = sign_checkpoint(Checkpoint(signer.name, head.size, b"\x11" * 32), signer)
    finally:
        ledger.close()
    (ws.root / "fork.cp").write_bytes(forked)
    cli("audit", "verify", "--checkpoint", ws.root / "fork.cp", cwd=ws.root).expect(
        1, "merkle.consistency")


def test_wrong_ledger_key_is_refused(ws, cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from custody.provenance.log.checkpoint import NoteSigner

    other = NoteSigner.generate("custody.ledger/impostor").verifier().vkey
    config = ws.home / "config.toml"
    text = config.read_text()
    start = text.index("ledger_vkey")
    config.write_text(text[:start] + f'ledger_vkey = "{other}"\n')
    cli("audit", "verify", cwd=ws.root).expect(1, "checkpoint.")
