"""The ledger's Merkle log: entries become leaves, complete subtrees are stored, heads are signed.

Every append runs inside the write transaction that holds the ledger's append lock:

1. read the latest checkpoint row (tree size and the frontier of complete-subtree roots);
2. refuse to go on if entries exist beyond it (someone wrote around the log);
3. add the new entries as leaves with gapless indices, store every complete subtree they finish;
4. sign a checkpoint (C2SP tlog-checkpoint) for the new size with the ledger's Ed25519 key.

Roots and proofs then need O(log n) node lookups, fetched in one query.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, tuple_
from sqlmodel import Session, col, select

from custody.errors import LedgerError
from custody.provenance.checkpoint import Checkpoint, NoteSigner, sign_checkpoint
from custody.provenance.ledger.models import CheckpointRow, LedgerEntry, LedgerMeta, MerkleNode
from custody.provenance.merkle import (
    CompactRange,
    NodeID,
    ProofPlan,
    build_proof,
    consistency_plan,
    inclusion_plan,
    leaf_hash,
)

META_ORIGIN = "origin"
META_VKEY = "checkpoint_vkey"


@dataclass(frozen=True)
class NewEntry:
    entry_type: str
    payload: bytes


@dataclass(frozen=True)
class Head:
    size: int
    root: bytes
    note: str


def encode_frontier(hashes: Sequence[bytes]) -> str:
    return " ".join(base64.b64encode(h).decode("ascii") for h in hashes)


def decode_frontier(size: int, text: str) -> CompactRange:
    try:
        hashes = [base64.b64decode(part, validate=True) for part in text.split()]
        return CompactRange(size, hashes)
    except ValueError as exc:
        raise LedgerError(
            f"the stored frontier of checkpoint {size} is corrupt: {exc}",
            hint="run `custody audit verify`",
        ) from None


def read_meta(session: Session) -> dict[str, str]:
    return {row.key: row.value for row in session.exec(select(LedgerMeta)).all()}


def latest_checkpoint(session: Session) -> CheckpointRow:
    row = session.exec(
        select(CheckpointRow).order_by(col(CheckpointRow.size).desc()).limit(1)
    ).first()
    if row is None:
        raise LedgerError(
            "the ledger has no checkpoint: it was not created by `custody init`",
            hint="run `custody audit verify`",
        )
    return row


def initialise(session: Session, signer: NoteSigner, now: datetime) -> None:
    """Write the ledger's identity and the signed checkpoint of the empty tree."""
    session.add(LedgerMeta(key=META_ORIGIN, value=signer.name))
    session.add(LedgerMeta(key=META_VKEY, value=signer.verifier().vkey))
    empty = CompactRange()
    _add_checkpoint(session, signer, empty, now)


def append_entries(
    session: Session, entries: Sequence[NewEntry], signer: NoteSigner, now: datetime
) -> list[int]:
    """Append ``entries`` as the next leaves and sign the new head; return their indices."""
    head = latest_checkpoint(session)
    beyond = session.exec(select(func.max(LedgerEntry.idx))).one()
    if beyond is not None and beyond >= head.size:
        raise LedgerError(
            f"the ledger holds entry {beyond}, beyond its latest signed checkpoint "
            f"(size {head.size}): it was written around the log",
            hint="run `custody audit verify`; do not append until it passes",
        )
    meta = read_meta(session)
    if meta.get(META_ORIGIN) != signer.name:
        raise LedgerError(
            f"this ledger's origin is {meta.get(META_ORIGIN)!r}, but the ledger key is for "
            f"{signer.name!r}",
            hint="use the ledger key made by `custody init` for this ledger",
        )
    frontier = decode_frontier(head.size, head.frontier)
    indices: list[int] = []
    nodes: list[MerkleNode] = []
    for entry in entries:
        idx = frontier.size
        leaf = leaf_hash(entry.payload)
        session.add(
            LedgerEntry(
                idx=idx,
                entry_type=entry.entry_type,
                payload=entry.payload.decode("utf-8"),
                leaf_hash=leaf.hex(),
                created_at=now,
            )
        )
        nodes.extend(MerkleNode(level=n.level, index=n.index, hash=n.hash)
                     for n in frontier.append(leaf))
        indices.append(idx)
    session.flush()
    session.add_all(nodes)
    _add_checkpoint(session, signer, frontier, now)
    return indices


def _add_checkpoint(
    session: Session, signer: NoteSigner, frontier: CompactRange, now: datetime
) -> None:
    root = frontier.root()
    note = sign_checkpoint(Checkpoint(signer.name, frontier.size, root), signer)
    session.add(
        CheckpointRow(
            size=frontier.size,
            root=root.hex(),
            note=note.decode("utf-8"),
            frontier=encode_frontier(frontier.hashes),
            created_at=now,
        )
    )


def fetch_nodes(session: Session, plan: ProofPlan) -> dict[NodeID, bytes]:
    wanted = sorted({n for group in plan for n in group})
    if not wanted:
        return {}
    rows = session.exec(
        select(MerkleNode).where(
            tuple_(col(MerkleNode.level), col(MerkleNode.index)).in_(wanted)
        )
    ).all()
    found = {NodeID(r.level, r.index): bytes(r.hash) for r in rows}
    missing = [n for n in wanted if n not in found]
    if missing:
        raise LedgerError(
            f"the ledger is missing Merkle node(s) {missing[:3]}: its tree is incomplete",
            hint="run `custody audit verify`",
        )
    return found


def prove_inclusion(session: Session, index: int, size: int) -> list[bytes]:
    plan = inclusion_plan(index, size)
    nodes = fetch_nodes(session, plan)
    return build_proof(plan, lambda level, i: nodes[NodeID(level, i)])


def prove_consistency(session: Session, size1: int, size2: int) -> list[bytes]:
    plan = consistency_plan(size1, size2)
    nodes = fetch_nodes(session, plan)
    return build_proof(plan, lambda level, i: nodes[NodeID(level, i)])


def checkpoint_at(session: Session, size: int) -> CheckpointRow:
    row = session.get(CheckpointRow, size)
    if row is None:
        raise LedgerError(f"the ledger has no checkpoint of size {size}")
    return row
