"""``custody audit verify``: prove the ledger database was not edited behind the log's back.

The audit recomputes everything from the stored entries and trusts only signatures:

- entry indices are gapless from 0; every leaf hash is recomputed from the canonical payload;
- the root recomputed at every checkpoint's size equals that checkpoint's root, and every
  checkpoint's signature verifies with the pinned ledger key (two checkpoints of one size with
  different roots are a fork); no entry exists beyond the newest checkpoint;
- every stored Merkle node and every checkpoint's frontier equals the one recomputed from the
  leaves, and no other node is stored (proofs are built from them);
- every artifact entry's DSSE signature verifies under the key it carries, and every index
  column (versions, manifest files, statements, lineage edges, revocations) says exactly what
  the signed entries say (:mod:`custody.provenance.ledger.audit_index`);
- a malformed value anywhere is a refusal naming its row, never a crash;
- with a checkpoint saved earlier, the current log is proved consistent with it.

The first failure raises :class:`AuditError` naming the entry; nothing is ever repaired.

The checkpoint key is the pinned one (:meth:`Ledger.checkpoint_key`: ``--ledger-vkey``,
``$CUSTODY_LEDGER_VKEY``, the workspace's ``ledger_vkey``), never the one the database stores:
without a pin the audit refuses (``ledger.key_unpinned``), and a database that names another key
than the pinned one is refused too (``ledger.key_mismatch``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import DateTime, LargeBinary, and_, cast, func, or_
from sqlalchemy.exc import StatementError
from sqlmodel import Session, col, select

from custody.errors import AuditError, CheckpointError
from custody.provenance.ledger.audit_index import HINT, EntryChecker
from custody.provenance.ledger.audit_index import fail as _fail
from custody.provenance.ledger.models import CheckpointRow, LedgerEntry, LedgerMeta, MerkleNode
from custody.provenance.ledger.store import UNPINNED_HINT, Ledger, PinnedKey
from custody.provenance.ledger.tree import META_ORIGIN, META_VKEY, encode_frontier
from custody.provenance.log.checkpoint import NoteVerifier, verify_checkpoint
from custody.provenance.log.merkle import CompactRange, NodeID, leaf_hash, verify_consistency

_BATCH = 5000
# Every append signs one checkpoint and starts with one of these entries (a version's lineage
# edges follow it in the same append): a checkpoint of the size before each of them is kept.
_APPEND_STARTS = ("artifact_version", "revocation")


@dataclass
class AuditReport:
    size: int = 0
    root: str = ""
    entries: int = 0
    checkpoints: int = 0
    signatures: int = 0
    consistent_with: list[int] = field(default_factory=list)
    ledger_key_pinned: bool = True  # always: the audit refuses to run with an unpinned key
    ledger_key: str = ""  # NAME+KEYID of the pinned checkpoint key

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "size": self.size,
            "root": self.root,
            "entries_checked": self.entries,
            "checkpoints_checked": self.checkpoints,
            "signatures_checked": self.signatures,
            "consistent_with_saved_checkpoints": self.consistent_with,
            "ledger_key_pinned": self.ledger_key_pinned,
            "ledger_key": self.ledger_key,
        }


def audit_ledger(
    ledger: Ledger,
    verifier: NoteVerifier | None,
    *,
    saved_checkpoints: tuple[bytes, ...] = (),
) -> AuditReport:
    """Audit the whole ledger with the pinned checkpoint key (``verifier``, else as
    :meth:`Ledger.checkpoint_key` finds it); raise :class:`AuditError` at the first broken
    entry."""
    pinned = ledger.checkpoint_key(verifier, source="--ledger-vkey")
    if pinned is None:
        raise AuditError(
            f"no ledger key is pinned for {ledger.display_url}: the audit would check the "
            "checkpoints with the key stored in the database, which anyone who can rewrite the "
            "database can replace", rule="ledger.key_unpinned", hint=UNPINNED_HINT,
            subject=ledger.display_url)
    verifier = pinned.verifier
    origin = verifier.name  # the log signs its checkpoints under its key's name
    report = AuditReport(ledger_key=pinned.label)
    with Session(ledger.engine) as session:
        try:
            roots, frontiers = _checked_checkpoints(session, verifier, origin, report)
        except CheckpointError as exc:
            raise CheckpointError(
                f"{exc.message} (pinned by {pinned.source})", rule=exc.rule, subject=exc.subject,
                hint="the checkpoints are not signed by the pinned ledger key: the database was "
                "re-keyed, rewritten or swapped; " + HINT) from None
        _check_meta(session, ledger, pinned)
        _check_timestamps(session)
        head = max(roots) if roots else 0
        frontier = CompactRange()
        checker = EntryChecker(session)
        nodes = _NodeChecker(session)
        for idx, entry_type, payload, stored_leaf in _entries(session):
            if idx >= head:
                raise _fail(f"ledger entry {idx} is not covered by any signed checkpoint "
                            f"(the newest covers {head} entries): it was inserted",
                            "audit.size_mismatch", f"entry {idx}")
            if idx != frontier.size:
                what = "missing (deleted or renumbered)" if idx > frontier.size else \
                    "out of order"
                raise _fail(f"ledger entry {frontier.size} is {what}; found entry {idx}",
                            "audit.entry_gap", f"entry {frontier.size}")
            leaf = leaf_hash(payload)
            if leaf.hex() != stored_leaf:
                raise _fail(f"ledger entry {idx} was edited: its payload no longer "
                            "matches its leaf hash", "audit.entry_edited", f"entry {idx}")
            nodes.expect(frontier.append(leaf))
            want = roots.get(frontier.size)
            if want is not None and frontier.root() != want:
                raise _fail(
                    f"ledger entry {_first_of(roots, frontier.size)}..{idx} does not "
                    f"match the signed checkpoint of size {frontier.size}: an entry in that "
                    "range was edited, replaced, reordered or inserted",
                    "audit.root_mismatch", f"entry {idx}")
            if want is not None and frontiers[frontier.size] != encode_frontier(frontier.hashes):
                raise _fail(f"the frontier column of checkpoint row {frontier.size} differs "
                            "from the tree: it was edited", "audit.checkpoint_edited",
                            f"checkpoint {frontier.size}")
            report.signatures += checker.check(idx, entry_type, payload)
            if entry_type in _APPEND_STARTS and idx not in roots:
                raise _fail(f"ledger entry {idx} starts an append, but the signed checkpoint of "
                            f"size {idx} (the head it extended) is not stored: checkpoint rows "
                            "were deleted", "audit.checkpoint_missing", f"checkpoint {idx}")
            report.entries += 1
        if frontier.size != head:
            raise _fail(f"the ledger has {frontier.size} entries but its newest signed "
                        f"checkpoint covers {head}: entries were deleted or inserted",
                        "audit.size_mismatch", f"entry {min(frontier.size, head)}")
        nodes.finish()
        checker.check_orphans()
        report.size, report.root = frontier.size, frontier.root().hex()
    for note in saved_checkpoints:
        old = verify_checkpoint(note, verifier, origin=origin, subject="saved checkpoint")
        if old.size > report.size:
            raise _fail(f"the saved checkpoint has {old.size} entries, the ledger only "
                        f"{report.size}: entries were removed since", "audit.rollback")
        proof = ledger.prove_consistency(old.size, report.size)
        verify_consistency(old.size, report.size, proof, old.root, bytes.fromhex(report.root),
                           subject="saved checkpoint")
        if roots.get(old.size) not in (None, old.root):
            raise _fail(f"the ledger's checkpoint of size {old.size} differs from the saved one: "
                        "the log was forked", "audit.fork")
        report.consistent_with.append(old.size)
    return report


def _first_of(roots: dict[int, bytes], size: int) -> int:
    earlier = [s for s in roots if s < size]
    return max(earlier) if earlier else 0


def _checked_checkpoints(
    session: Session, verifier: NoteVerifier, origin: str, report: AuditReport
) -> tuple[dict[int, bytes], dict[int, str]]:
    roots: dict[int, bytes] = {}
    frontiers: dict[int, str] = {}
    text = _raw_text(session)
    rows = session.exec(select(col(CheckpointRow.size), text(CheckpointRow.root),
                               text(CheckpointRow.note), text(CheckpointRow.frontier))
                        .order_by(col(CheckpointRow.size))).all()
    for size, *columns in rows:
        root, note, frontier = (_text(value, f"checkpoints row {size}", name) for value, name
                                in zip(columns, ("root", "note", "frontier"), strict=True))
        cp = verify_checkpoint(note, verifier, origin=origin, subject=f"checkpoint {size}")
        if cp.size != size or cp.root.hex() != root:
            raise _fail(f"checkpoint row {size} was edited: its columns differ from its "
                        "signed note", "audit.checkpoint_edited", f"checkpoint {size}")
        if roots.get(cp.size, cp.root) != cp.root:
            raise _fail(f"two signed checkpoints of size {cp.size} have different roots: the "
                        "log was forked", "audit.fork", f"checkpoint {cp.size}")
        roots[cp.size] = cp.root
        frontiers[cp.size] = frontier
        report.checkpoints += 1
    if frontiers.get(0, "") != encode_frontier([]):  # no entry ends at size 0 to check it by
        raise _fail("the frontier column of checkpoint row 0 (the empty tree) is not empty: it "
                    "was edited", "audit.checkpoint_edited", "checkpoint 0")
    return roots, frontiers


def _raw_text(session: Session) -> Callable[[Any], Any]:
    """A column as the database holds it: as bytes on SQLite, whose TEXT may not be UTF-8 (the
    driver would crash decoding it), else as it is."""
    raw = session.get_bind().dialect.name == "sqlite"

    def text(column: Any) -> Any:
        return cast(col(column), LargeBinary) if raw else col(column)

    return text


def _text(value: Any, row: str, column: str, rule: str = "audit.checkpoint_edited",
          subject: str | None = None) -> str:
    """A text column's value, or a refusal naming the row and column (never a crash)."""
    if isinstance(value, str):
        return value
    try:
        return bytes(value).decode("utf-8")
    except (TypeError, UnicodeDecodeError):
        raise _fail(f"the {row} column {column} is not UTF-8 text: it was edited",
                    rule, subject or row) from None


def _check_meta(session: Session, ledger: Ledger, pinned: PinnedKey) -> None:
    """``ledger_meta`` holds exactly the log's name and checkpoint key, and they are the pinned
    key's (read as stored: a blob or text that is not UTF-8 is a refusal, not a crash)."""
    text = _raw_text(session)
    meta: dict[str, str] = {}
    for key, value in session.exec(select(text(LedgerMeta.key), text(LedgerMeta.value))).all():
        name = _text(key, "ledger_meta row", "key", "ledger.key_mismatch", "ledger_meta")
        meta[name] = _text(value, f"ledger_meta row {name}", "value", "ledger.key_mismatch",
                           f"ledger_meta row {name}")
    differs = ledger.stored_key_differs(pinned, meta.get(META_VKEY, ""))
    if differs is not None:
        raise _fail(f"{differs}: ledger_meta was edited", "ledger.key_mismatch",
                    "ledger_meta row checkpoint_vkey")
    if meta.get(META_ORIGIN) != pinned.verifier.name:
        raise _fail(f"the ledger_meta row origin names the log {meta.get(META_ORIGIN)!r}, the "
                    f"pinned key signs as {pinned.verifier.name!r}: ledger_meta was edited",
                    "ledger.key_mismatch", "ledger_meta row origin")
    extra = sorted(set(meta) - {META_ORIGIN, META_VKEY})
    if extra:
        raise _fail(f"ledger_meta holds a row {extra[0]!r} Custody never writes: it was "
                    "inserted", "ledger.key_mismatch", f"ledger_meta row {extra[0]}")


_TIMESTAMPS = (("ledger_entries", LedgerEntry.idx, LedgerEntry.created_at, "created_at"),
               ("checkpoints", CheckpointRow.size, CheckpointRow.created_at, "created_at"))


def _check_timestamps(session: Session) -> None:
    """The informational timestamps of the entries and checkpoints (read by no decision, but
    loaded with their rows) are timestamps: one that is not is a refusal naming its row."""
    dialect = session.get_bind().dialect
    if dialect.name != "sqlite":  # typed columns: the database holds nothing else
        return
    parse = DateTime().dialect_impl(dialect).result_processor(dialect, None)
    text = _raw_text(session)
    for table, key, column, name in _TIMESTAMPS:
        for row, value in session.exec(select(col(key), text(column))).all():
            where = f"{table} row {row}"
            stamp = _text(value, where, name, "audit.index_malformed", where)
            try:
                if parse is not None:
                    parse(stamp)
            except ValueError:
                raise _fail(f"the {where} column {name} is not a timestamp "
                            f"({stamp[:40]!r}): it was edited", "audit.index_malformed",
                            where) from None


def _entries(session: Session) -> Iterator[tuple[int, str, bytes, str]]:
    """``(idx, entry_type, payload bytes, leaf_hash)`` in index order, in batches. The payload is
    read as bytes where the database allows text that is not UTF-8 (SQLite)."""
    text = _raw_text(session)
    last = -1
    while True:
        batch = session.exec(
            select(col(LedgerEntry.idx), text(LedgerEntry.entry_type), text(LedgerEntry.payload),
                   text(LedgerEntry.leaf_hash))
            .where(col(LedgerEntry.idx) > last).order_by(col(LedgerEntry.idx)).limit(_BATCH)
        ).all()
        if not batch:
            return
        for idx, entry_type, body, leaf in batch:
            data = bytes(body) if isinstance(body, bytes | bytearray | memoryview) \
                else str(body).encode("utf-8")
            row = f"ledger_entries row {idx}"
            _text(data, row, "payload", "audit.entry_malformed", f"entry {idx}")
            yield (int(idx), _text(entry_type, row, "entry_type", "audit.entry_malformed",
                                   f"entry {idx}"), data,
                   _text(leaf, row, "leaf_hash", "audit.entry_malformed", f"entry {idx}"))
        last = int(batch[-1][0])


class _NodeChecker:
    """Compares the stored Merkle nodes with the ones recomputed from the leaves, a batch at a
    time, and finally that no other node is stored."""

    def __init__(self, session: Session):
        self.session = session
        self.pending: dict[NodeID, bytes] = {}
        self.total = 0

    def expect(self, produced: Any) -> None:
        for node in produced:
            self.pending[NodeID(node.level, node.index)] = node.hash
        if len(self.pending) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        by_level: dict[int, list[int]] = {}
        for node in self.pending:
            by_level.setdefault(node.level, []).append(node.index)
        try:
            rows = self.session.exec(select(col(MerkleNode.level), col(MerkleNode.index),
                                            _raw_text(self.session)(MerkleNode.hash))
                                     .where(or_(*(and_(col(MerkleNode.level) == level,
                                                       col(MerkleNode.index).between(
                                                           min(ix), max(ix)))
                                                  for level, ix in by_level.items())))).all()
        except StatementError as exc:
            raise _fail(f"the merkle_nodes table holds a malformed value ({exc.orig})",
                        "audit.tree_edited", "merkle_nodes") from None
        stored: dict[NodeID, bytes | None] = {}
        for level, index, value in rows:
            if not isinstance(level, int) or not isinstance(index, int):
                raise _fail(f"a merkle_nodes row holds a level or index that is not a number "
                            f"({str(level)[:20]!r}, {str(index)[:20]!r})", "audit.tree_edited",
                            "merkle_nodes")
            stored[NodeID(level, index)] = bytes(value) if isinstance(
                value, bytes | bytearray | memoryview) else None  # 'x': not a hash at all
        for node, want in sorted(self.pending.items()):
            if stored.get(node) != want:
                what = "is missing" if node not in stored else "differs from the recomputed one"
                raise _fail(f"merkle_nodes row (level {node.level}, index {node.index}) {what}: "
                            "proofs built from it would be wrong", "audit.tree_edited",
                            f"node {node.level}/{node.index}")
        self.total += len(self.pending)
        self.pending.clear()

    def finish(self) -> None:
        self._flush()
        count = int(self.session.exec(select(func.count()).select_from(MerkleNode)).one())
        if count != self.total:
            raise _fail(f"the merkle_nodes table holds {count} nodes, the tree {self.total}: "
                        "nodes were inserted", "audit.tree_edited", "merkle_nodes")
