"""Appends verify the head before they extend it (issue 13): an administrator who rewrites the
log's middle and plants a head row cannot get the next honest append to sign over the forgery.

Each test is named after the attack; each asserts that the append is refused with its rule, that
nothing was appended, and that an honest ledger still appends.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from sqlalchemy import create_engine, delete, insert, select, update
from support import ledger_helpers

from custody.errors import AuditError
from custody.provenance.ledger import tree as log
from custody.provenance.ledger.models import (
    ArtifactVersion,
    CheckpointRow,
    LedgerEntry,
    MerkleNode,
    Revocation,
    table_of,
)
from custody.provenance.log.merkle import CompactRange, build_nodes
from custody.provenance.workspace import load_workspace


def _history_with_a_revocation_in_the_middle(ws: Any, cli: Any) -> int:
    """dataset art-0, model art-1 trained on it, a revocation of art-0, two more datasets;
    return the index of the revocation entry."""
    ledger = load_workspace(ws.home).open_ledger(append=True)
    try:
        ledger_helpers.append_records(ledger, ws.home, 2, with_inputs=True)
    finally:
        ledger.close()
    cli("revoke", "art-0@1", "--reason", "poisoned", cwd=ws.root).expect(0)
    revocation = ws.entry_count() - 1
    ledger = load_workspace(ws.home).open_ledger(append=True)
    try:
        ledger_helpers.append_records(ledger, ws.home, 2, with_inputs=False, prefix="later")
    finally:
        ledger.close()
    return revocation


def _remove_entry_and_rebuild(ws: Any, victim: int, *, head_note_from: int | None) -> None:
    """Delete entry ``victim``, renumber the later ones, rebuild merkle_nodes, drop the later
    checkpoints and plant a head row whose frontier matches the rewritten tree. Its note is the
    genuine note of checkpoint ``head_note_from`` (a signed note the attacker can copy), or the
    latest surviving one."""
    entries, nodes, checkpoints = (table_of(LedgerEntry), table_of(MerkleNode),
                                   table_of(CheckpointRow))
    versions, revocations = table_of(ArtifactVersion), table_of(Revocation)
    engine = create_engine(ws.url)
    try:
        with engine.begin() as conn:
            if ws.backend == "postgresql":  # an administrator can switch the FK triggers off
                conn.exec_driver_sql("SET session_replication_role = replica")
            notes = {int(r[0]): str(r[1]) for r in conn.execute(
                select(checkpoints.c.size, checkpoints.c.note))}
            conn.execute(delete(revocations).where(revocations.c.entry_idx == victim))
            conn.execute(delete(entries).where(entries.c.idx == victim))
            later = [int(r[0]) for r in conn.execute(
                select(entries.c.idx).where(entries.c.idx > victim).order_by(entries.c.idx))]
            for idx in later:
                conn.execute(update(entries).where(entries.c.idx == idx).values(idx=idx - 1))
                conn.execute(update(versions).where(versions.c.entry_idx == idx)
                             .values(entry_idx=idx - 1))
            leaves = [bytes.fromhex(str(r[0])) for r in conn.execute(
                select(entries.c.leaf_hash).order_by(entries.c.idx))]
            conn.execute(delete(nodes))
            conn.execute(insert(nodes), [{"level": n.level, "index": n.index, "hash": h}
                                         for n, h in build_nodes(leaves).items()])
            conn.execute(delete(checkpoints).where(checkpoints.c.size > victim))
            frontier = CompactRange()
            for leaf in leaves:
                frontier.append(leaf)
            note = notes[head_note_from if head_note_from is not None else victim]
            conn.execute(insert(checkpoints), {
                "size": frontier.size, "root": frontier.root().hex(), "note": note,
                "frontier": log.encode_frontier(frontier.hashes),
                "created_at": conn.execute(select(entries.c.created_at).limit(1)).scalar_one(),
            })
    finally:
        engine.dispose()


@pytest.mark.parametrize("note_of", ["same_size", "older_head"])
def test_revocation_removed_from_the_middle_refuses_the_next_append(
        ws, cli, make_file, note_of: str) -> None:  # type: ignore[no-untyped-def]
    victim = _history_with_a_revocation_in_the_middle(ws, cli)
    size = ws.entry_count()
    # "same_size": the genuine note of the size the forged tree now has (another root);
    # "older_head": the genuine note of an older, smaller head.
    _remove_entry_and_rebuild(ws, victim, head_note_from=size - 1 if note_of == "same_size"
                              else None)
    assert ws.entry_count() == size - 1
    data = make_file(ws.root / "fresh.bin", b"an honest record after the rewrite")
    cli("record", data, "--name", "fresh", "--kind", "dataset", cwd=ws.root).expect(
        1, "append.head_mismatch", f"size {size - 1}", "audit verify")
    assert ws.entry_count() == size - 1, "an append went through over the rewritten history"
    cli("audit", "verify", cwd=ws.root).expect(1, "audit.")


def test_planted_head_note_signed_by_another_key_refuses_the_append(
        ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    from custody.provenance.log.checkpoint import Checkpoint, NoteSigner, sign_checkpoint

    victim = _history_with_a_revocation_in_the_middle(ws, cli)
    _remove_entry_and_rebuild(ws, victim, head_note_from=None)
    head = ws.sql("SELECT size, root FROM checkpoints ORDER BY size DESC LIMIT 1")[0]
    origin = load_workspace(ws.home).ledger_signer()
    assert origin is not None
    impostor = NoteSigner.generate(origin.name)  # same log name, the attacker's key
    forged = sign_checkpoint(Checkpoint(origin.name, int(head[0]), bytes.fromhex(head[1])),
                             impostor).decode()
    ws.sql("UPDATE checkpoints SET note = :n WHERE size = :s", n=forged, s=head[0])
    data = make_file(ws.root / "fresh.bin", b"an honest record after the rewrite")
    cli("record", data, "--name", "fresh", "--kind", "dataset", cwd=ws.root).expect(
        1, "append.head_unverified")


def test_merkle_nodes_rebuilt_under_an_intact_head_refuse_the_append(
        ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    _history_with_a_revocation_in_the_middle(ws, cli)
    level, index = ws.sql("SELECT level, \"index\" FROM merkle_nodes ORDER BY level DESC, "
                          "\"index\" LIMIT 1")[0]
    ws.sql("UPDATE merkle_nodes SET hash = :h WHERE level = :l AND \"index\" = :i",
           h=b"\x42" * 32, l=level, i=index)
    size = ws.entry_count()
    data = make_file(ws.root / "fresh.bin", b"bytes")
    cli("record", data, "--name", "fresh", "--kind", "dataset", cwd=ws.root).expect(
        1, "append.tree_mismatch")
    assert ws.entry_count() == size


def test_edited_head_frontier_refuses_the_append(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    _history_with_a_revocation_in_the_middle(ws, cli)
    size, frontier = ws.sql("SELECT size, frontier FROM checkpoints ORDER BY size DESC LIMIT 1")[0]
    hashes = frontier.split()
    hashes[-1] = base64.b64encode(b"\x07" * 32).decode()
    ws.sql("UPDATE checkpoints SET frontier = :f WHERE size = :s", f=" ".join(hashes), s=size)
    data = make_file(ws.root / "fresh.bin", b"bytes")
    cli("record", data, "--name", "fresh", "--kind", "dataset", cwd=ws.root).expect(
        1, "append.head_mismatch")


def test_the_periodic_full_check_finds_a_rewritten_leaf_hash(ws, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Every FULL_CHECK_EVERY entries the head's root is recomputed from every stored leaf hash:
    a leaf rewritten where no frontier node covers it is found then."""
    monkeypatch.setattr(log, "FULL_CHECK_EVERY", 4)
    ledger = load_workspace(ws.home).open_ledger(append=True)
    try:
        ledger_helpers.append_records(ledger, ws.home, 3, with_inputs=False)
        ws.sql("UPDATE ledger_entries SET leaf_hash = :h WHERE idx = 0", h="ab" * 32)
        with pytest.raises(AuditError) as caught:
            ledger_helpers.append_records(ledger, ws.home, 1, with_inputs=False, prefix="x")
    finally:
        ledger.close()
    assert caught.value.rule == "append.leaves_mismatch"
    assert ws.entry_count() == 3


def test_an_untouched_ledger_appends_across_full_checks(ws, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(log, "FULL_CHECK_EVERY", 2)
    ledger = load_workspace(ws.home).open_ledger(append=True)
    try:
        ledger_helpers.append_records(ledger, ws.home, 7, with_inputs=True)
        assert ledger.entry_count() == 10
    finally:
        ledger.close()
