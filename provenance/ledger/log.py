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

from sqlalchemy import Connection, and_, func, insert, or_
from sqlmodel import Session, col, select

from custody.errors import LedgerError
from custody.provenance.checkpoint import Checkpoint, NoteSigner, sign_checkpoint
from custody.provenance.ledger.models import (
    CheckpointRow,
    LedgerEntry,
    LedgerMeta,
    MerkleNode,
    table_of,
)
from custody.provenance.merkle import (
    CompactRange,
    NodeID,
    ProofPlan,
    build_proof,
    consistency_plan,
    inclusion_plan,
    leaf_hash,
)

_ENTRIES = table_of(LedgerEntry)
_NODES = table_of(MerkleNode)
_CHECKPOINTS = table_of(CheckpointRow)
_META = table_of(LedgerMeta)

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


def initialise(conn: Connection, signer: NoteSigner, now: datetime) -> None:
    """Write the ledger's identity and the signed checkpoint of the empty tree."""
    conn.execute(insert(_META), [{"key": META_ORIGIN, "value": signer.name},
                                 {"key": META_VKEY, "value": signer.verifier().vkey}])
    conn.execute(insert(_CHECKPOINTS), _checkpoint_values(signer, CompactRange(), now))


def append_entries(
    conn: Connection, entries: Sequence[NewEntry], signer: NoteSigner, now: datetime
) -> list[int]:
    """Append ``entries`` as the next leaves and sign the new head; return their indices.

    The caller holds the append lock and has checked that ``signer`` is this ledger's key.
    """
    head = conn.execute(
        select(_CHECKPOINTS.c.size, _CHECKPOINTS.c.frontier,
               select(func.max(_ENTRIES.c.idx)).scalar_subquery())
        .order_by(_CHECKPOINTS.c.size.desc()).limit(1)
    ).first()
    if head is None:
        raise LedgerError("the ledger has no checkpoint: it was not created by `custody init`",
                          hint="run `custody audit verify`")
    size, frontier_text, beyond = int(head[0]), str(head[1]), head[2]
    if beyond is not None and beyond >= size:
        raise LedgerError(
            f"the ledger holds entry {beyond}, beyond its latest signed checkpoint "
            f"(size {size}): it was written around the log",
            hint="run `custody audit verify`; do not append until it passes",
        )
    frontier = decode_frontier(size, frontier_text)
    rows: list[dict[str, object]] = []
    nodes: list[dict[str, object]] = []
    for entry in entries:
        leaf = leaf_hash(entry.payload)
        rows.append({"idx": frontier.size, "entry_type": entry.entry_type,
                     "payload": entry.payload.decode("utf-8"), "leaf_hash": leaf.hex(),
                     "created_at": now})
        nodes.extend({"level": n.level, "index": n.index, "hash": n.hash}
                     for n in frontier.append(leaf))
    conn.execute(insert(_ENTRIES), rows)
    conn.execute(insert(_NODES), nodes)
    conn.execute(insert(_CHECKPOINTS), _checkpoint_values(signer, frontier, now))
    return [int(str(r["idx"])) for r in rows]


def check_signer(session: Session, signer: NoteSigner) -> None:
    """Refuse a checkpoint key that is not this ledger's."""
    meta = read_meta(session)
    if meta.get(META_VKEY) != signer.verifier().vkey:
        raise LedgerError(
            f"the ledger key {signer.name!r} is not this ledger's checkpoint key "
            f"({meta.get(META_ORIGIN)!r})",
            hint="use the ledger key made by `custody init` for this ledger",
        )


def _checkpoint_values(signer: NoteSigner, frontier: CompactRange, now: datetime
                       ) -> dict[str, object]:
    root = frontier.root()
    note = sign_checkpoint(Checkpoint(signer.name, frontier.size, root), signer)
    return {"size": frontier.size, "root": root.hex(), "note": note.decode("utf-8"),
            "frontier": encode_frontier(frontier.hashes), "created_at": now}


def fetch_nodes(session: Session, plan: ProofPlan) -> dict[NodeID, bytes]:
    wanted = sorted({n for group in plan for n in group})
    if not wanted:
        return {}
    # One (level = L AND index IN (...)) term per level: SQLite uses the primary key for that,
    # but scans the whole table for a row-value IN list.
    by_level: dict[int, list[int]] = {}
    for node in wanted:
        by_level.setdefault(node.level, []).append(node.index)
    rows = session.exec(
        select(MerkleNode).where(or_(*(
            and_(col(MerkleNode.level) == level, col(MerkleNode.index).in_(indices))
            for level, indices in by_level.items())))
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
