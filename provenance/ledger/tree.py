"""The ledger's Merkle log: entries become leaves, complete subtrees are stored, heads are signed.

Every append runs inside the write transaction that holds the ledger's append lock:

1. read the latest checkpoint row (tree size and the frontier of complete-subtree roots);
2. verify before extending: the head's note verifies under the ledger key the caller holds (the
   pinned key, never one read from the database), its size and root equal the stored frontier's,
   the frontier equals the stored Merkle nodes it is made of, and no entry exists beyond it
   (someone wrote around the log); every ``FULL_CHECK_EVERY`` entries the root is recomputed
   from every stored leaf hash too. A head that fails refuses the append (``append.*`` rules);
3. add the new entries as leaves with gapless indices, store every complete subtree they finish;
4. sign a checkpoint (C2SP tlog-checkpoint) for the new size with the ledger's Ed25519 key.

Roots and proofs then need O(log n) node lookups, fetched in one query.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, LargeBinary, and_, cast, func, insert, or_
from sqlmodel import Session, col, select

from custody.errors import AuditError, CheckpointError, LedgerError
from custody.provenance.ledger.models import (
    CheckpointRow,
    LedgerEntry,
    LedgerMeta,
    MerkleNode,
    table_of,
)
from custody.provenance.log.checkpoint import (
    Checkpoint,
    NoteSigner,
    sign_checkpoint,
    verify_checkpoint,
)
from custody.provenance.log.merkle import (
    CompactRange,
    NodeID,
    ProofPlan,
    build_proof,
    consistency_plan,
    frontier_nodes,
    inclusion_plan,
    leaf_hash,
    root_of,
)

_ENTRIES = table_of(LedgerEntry)
_NODES = table_of(MerkleNode)
_CHECKPOINTS = table_of(CheckpointRow)
_META = table_of(LedgerMeta)

META_ORIGIN = "origin"
META_VKEY = "checkpoint_vkey"
FULL_CHECK_EVERY = 1024  # entries between two full recomputations of the head's root on append


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
    """``ledger_meta`` as text; a value that is not (a blob, or SQLite text that is not UTF-8,
    which the driver cannot decode) reads with replacement characters, so that it differs from
    every key it is compared with (the audit names the row)."""
    raw = session.get_bind().dialect.name == "sqlite"
    rows = session.exec(select(
        *((cast(col(c), LargeBinary) if raw else col(c)) for c in (LedgerMeta.key,
                                                                   LedgerMeta.value)))).all()
    return {_as_text(key): _as_text(value) for key, value in rows}


def _as_text(value: object) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


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
        select(_CHECKPOINTS.c.size, _CHECKPOINTS.c.frontier, _CHECKPOINTS.c.note,
               select(func.max(_ENTRIES.c.idx)).scalar_subquery())
        .order_by(_CHECKPOINTS.c.size.desc()).limit(1)
    ).first()
    if head is None:
        raise LedgerError("the ledger has no checkpoint: it was not created by `custody init`",
                          hint="run `custody audit verify`")
    size, beyond = int(head[0]), head[3]
    if beyond is not None and beyond >= size:
        raise _refuse(
            f"the ledger holds entry {beyond}, beyond its latest signed checkpoint "
            f"(size {size}): it was written around the log", "append.entries_beyond_head",
            f"entry {beyond}")
    frontier = _verified_frontier(conn, size, str(head[1]), str(head[2]), signer)
    if size and (size + len(entries)) // FULL_CHECK_EVERY > size // FULL_CHECK_EVERY:
        _check_all_leaves(conn, size, frontier.root())
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


def _refuse(message: str, rule: str, subject: str) -> AuditError:
    return AuditError(message, rule=rule, subject=subject,
                      hint="nothing was appended; run `custody audit verify` and restore the "
                      "ledger from a trusted copy before recording again")


def _verified_frontier(conn: Connection, size: int, frontier_text: str, note: str,
                       signer: NoteSigner) -> CompactRange:
    """The head's frontier, once the head is shown to be a checkpoint this ledger's key signed
    over exactly the stored tree: a planted head row (after entries were removed or rewritten
    and the tree rebuilt) cannot carry a valid note for the rewritten root."""
    subject = f"checkpoint {size}"
    try:
        signed = verify_checkpoint(note, signer.verifier(), origin=signer.name, subject=subject)
    except CheckpointError as exc:
        raise _refuse(f"the ledger's head checkpoint (size {size}) does not verify under the "
                      f"ledger key: {exc.message}", "append.head_unverified", subject) from None
    frontier = decode_frontier(size, frontier_text)
    if signed.size != size:
        raise _refuse(f"the ledger's head checkpoint row says size {size}, its signed note "
                      f"size {signed.size}: the row was planted or edited",
                      "append.head_mismatch", subject)
    if signed.root != frontier.root():
        raise _refuse(f"the stored frontier of the head checkpoint (size {size}) makes another "
                      "root than its signed note: the tree was rewritten or the row edited",
                      "append.head_mismatch", subject)
    wanted = frontier_nodes(size)
    if wanted:
        stored = conn.execute(select(_NODES.c.level, _NODES.c.index, _NODES.c.hash).where(
            or_(*(and_(_NODES.c.level == n.level, _NODES.c.index == n.index) for n in wanted))
        )).all()
        found = {NodeID(int(r[0]), int(r[1])): bytes(r[2]) for r in stored}
        if [found.get(n) for n in wanted] != list(frontier.hashes):
            raise _refuse(f"the stored Merkle nodes of the tree of size {size} differ from the "
                          "head's signed frontier: the tree was rebuilt or edited",
                          "append.tree_mismatch", subject)
    return frontier


def _check_all_leaves(conn: Connection, size: int, root: bytes) -> None:
    """Recompute the head's root from every stored leaf hash (the periodic full check)."""
    leaves = conn.execute(select(_ENTRIES.c.idx, _ENTRIES.c.leaf_hash)
                          .order_by(_ENTRIES.c.idx)).all()
    try:
        gapless = [int(r[0]) for r in leaves] == list(range(size))
        recomputed = root_of(bytes.fromhex(str(r[1])) for r in leaves) if gapless else b""
    except ValueError:
        recomputed = b""
    if recomputed != root:
        raise _refuse(f"the ledger's {len(leaves)} stored leaves do not make the signed head "
                      f"of size {size}: entries were removed, reordered or edited",
                      "append.leaves_mismatch", f"checkpoint {size}")


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
