"""``custody audit verify``: prove the ledger database was not edited behind the log's back.

The audit recomputes everything from the stored entries and trusts only signatures:

- entry indices are gapless from 0; every leaf hash is recomputed from the canonical payload;
- the root recomputed at every checkpoint's size equals that checkpoint's root, and every
  checkpoint's signature verifies with the pinned ledger key (two checkpoints of one size with
  different roots are a fork); no entry exists beyond the newest checkpoint;
- every artifact entry's DSSE signature verifies under the key it carries, and the index tables
  (versions, statements, lineage edges) say exactly what the signed entries say;
- with a checkpoint saved earlier, the current log is proved consistent with it.

The first failure raises :class:`AuditError` naming the entry; nothing is ever repaired.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from sqlmodel import Session, col, select

from custody.errors import AuditError
from custody.provenance.checkpoint import NoteVerifier, verify_checkpoint
from custody.provenance.ledger.log import META_ORIGIN, META_VKEY, read_meta
from custody.provenance.ledger.models import (
    Artifact,
    ArtifactVersion,
    CheckpointRow,
    LedgerEntry,
    LineageEdge,
    Revocation,
    SignedStatement,
)
from custody.provenance.ledger.store import Ledger
from custody.provenance.merkle import CompactRange, leaf_hash, verify_consistency
from custody.signing.bundle_info import signing_certificate
from custody.signing.key_signer import verify_envelope_with_key
from custody.signing.keys import parse_public_key

_BATCH = 5000


@dataclass
class AuditReport:
    size: int = 0
    root: str = ""
    entries: int = 0
    checkpoints: int = 0
    signatures: int = 0
    consistent_with: list[int] = field(default_factory=list)
    ledger_key_pinned: bool = True

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
        }


def _fail(message: str, rule: str, subject: str | None = None) -> AuditError:
    return AuditError(message, rule=rule, subject=subject,
                      hint="treat this ledger as tampered: restore it from a trusted copy and "
                      "keep the evidence (the saved checkpoints)")


def audit_ledger(
    ledger: Ledger,
    verifier: NoteVerifier | None,
    *,
    saved_checkpoints: tuple[bytes, ...] = (),
) -> AuditReport:
    """Audit the whole ledger; raise :class:`AuditError` at the first broken entry."""
    report = AuditReport()
    with Session(ledger.engine) as session:
        meta = read_meta(session)
        origin = meta.get(META_ORIGIN, "")
        if verifier is None:
            report.ledger_key_pinned = False
            verifier = NoteVerifier.from_vkey(meta.get(META_VKEY, ""))
        roots = _checked_checkpoints(session, verifier, origin, report)
        head = max(roots) if roots else 0
        frontier = CompactRange()
        checker = _EntryChecker(session)
        for entry in _entries(session):
            if entry.idx >= head:
                raise _fail(f"ledger entry {entry.idx} is not covered by any signed checkpoint "
                            f"(the newest covers {head} entries): it was inserted",
                            "audit.size_mismatch", f"entry {entry.idx}")
            if entry.idx != frontier.size:
                what = "missing (deleted or renumbered)" if entry.idx > frontier.size else \
                    "out of order"
                raise _fail(f"ledger entry {frontier.size} is {what}; found entry {entry.idx}",
                            "audit.entry_gap", f"entry {frontier.size}")
            payload = entry.payload.encode("utf-8")
            leaf = leaf_hash(payload)
            if leaf.hex() != entry.leaf_hash:
                raise _fail(f"ledger entry {entry.idx} was edited: its payload no longer "
                            "matches its leaf hash", "audit.entry_edited", f"entry {entry.idx}")
            frontier.append(leaf)
            want = roots.get(frontier.size)
            if want is not None and frontier.root() != want:
                raise _fail(
                    f"ledger entry {_first_of(roots, frontier.size)}..{entry.idx} does not "
                    f"match the signed checkpoint of size {frontier.size}: an entry in that "
                    "range was edited, replaced, reordered or inserted",
                    "audit.root_mismatch", f"entry {entry.idx}")
            report.signatures += checker.check(entry, payload)
            report.entries += 1
        if frontier.size != head:
            raise _fail(f"the ledger has {frontier.size} entries but its newest signed "
                        f"checkpoint covers {head}: entries were deleted or inserted",
                        "audit.size_mismatch", f"entry {min(frontier.size, head)}")
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
) -> dict[int, bytes]:
    roots: dict[int, bytes] = {}
    rows = session.exec(select(CheckpointRow).order_by(col(CheckpointRow.size))).all()
    for row in rows:
        cp = verify_checkpoint(row.note, verifier, origin=origin,
                               subject=f"checkpoint {row.size}")
        if cp.size != row.size or cp.root.hex() != row.root:
            raise _fail(f"checkpoint row {row.size} was edited: its columns differ from its "
                        "signed note", "audit.checkpoint_edited", f"checkpoint {row.size}")
        if roots.get(cp.size, cp.root) != cp.root:
            raise _fail(f"two signed checkpoints of size {cp.size} have different roots: the "
                        "log was forked", "audit.fork", f"checkpoint {cp.size}")
        roots[cp.size] = cp.root
        report.checkpoints += 1
    return roots


def _entries(session: Session) -> Iterator[LedgerEntry]:
    last = -1
    while True:
        batch = session.exec(
            select(LedgerEntry).where(LedgerEntry.idx > last)
            .order_by(col(LedgerEntry.idx)).limit(_BATCH)
        ).all()
        if not batch:
            return
        yield from batch
        last = batch[-1].idx


class _EntryChecker:
    """Checks each entry's signature and that the index tables agree with it."""

    def __init__(self, session: Session):
        self.session = session
        self.edges_seen = 0
        self.versions_seen = 0
        self.revocations_seen = 0

    def check(self, entry: LedgerEntry, payload: bytes) -> int:
        data = json.loads(payload)
        if entry.entry_type == "artifact_version" == data.get("type"):
            self._version(entry, data)
            self.versions_seen += 1
            return 1
        if entry.entry_type == "lineage_edge" == data.get("type"):
            self._edge(entry, data)
            self.edges_seen += 1
            return 0
        if entry.entry_type == "revocation" == data.get("type"):
            self._revocation(entry, data)
            self.revocations_seen += 1
            return 1
        raise _fail(f"ledger entry {entry.idx} has unknown type {entry.entry_type!r}",
                    "audit.entry_type", f"entry {entry.idx}")

    def _version(self, entry: LedgerEntry, data: dict[str, Any]) -> None:
        subject = f"entry {entry.idx}"
        row = self.session.exec(
            select(ArtifactVersion, Artifact, SignedStatement)
            .join(Artifact, col(Artifact.id) == col(ArtifactVersion.artifact_id))
            .join(SignedStatement, col(SignedStatement.version_id) == col(ArtifactVersion.id))
            .where(ArtifactVersion.entry_idx == entry.idx)
        ).first()
        if row is None:
            raise _fail(f"ledger entry {entry.idx} ({data.get('name')}@{data.get('version')}) "
                        "has no version row: index rows were deleted", "audit.index_missing",
                        subject)
        version, artifact, stored = row
        said = (data["name"], data["kind"], data["version"], data["digest"]["algorithm"],
                data["digest"]["value"])
        indexed = (artifact.name, artifact.kind, version.version, version.digest_algorithm,
                   version.digest)
        if said != indexed or stored.bundle != data["bundle"]:
            raise _fail(f"the index rows of ledger entry {entry.idx} ({said[0]}@{said[2]}) "
                        "differ from the entry: they were edited", "audit.index_edited", subject)
        payload = _signed_payload(data, subject)
        if payload.decode("utf-8") != stored.statement:
            raise _fail(f"the stored statement of ledger entry {entry.idx} differs from the "
                        "signed one", "audit.index_edited", subject)

    def _edge(self, entry: LedgerEntry, data: dict[str, Any]) -> None:
        edge = self.session.exec(
            select(LineageEdge).where(LineageEdge.entry_idx == entry.idx)
        ).first()
        subject = f"entry {entry.idx}"
        if edge is None:
            raise _fail(f"lineage entry {entry.idx} has no edge row: it was deleted",
                        "audit.index_missing", subject)
        ends = {}
        for end, vid in (("input", edge.input_version_id), ("output", edge.output_version_id)):
            found = self.session.exec(
                select(ArtifactVersion, Artifact)
                .join(Artifact, col(Artifact.id) == col(ArtifactVersion.artifact_id))
                .where(ArtifactVersion.id == vid)
            ).first()
            ends[end] = (found[1].name, found[0].version) if found else None
        said = {end: (data[end]["name"], data[end]["version"]) for end in ("input", "output")}
        if ends != said or edge.activity != data["activity"]:
            raise _fail(f"the edge row of lineage entry {entry.idx} differs from the entry",
                        "audit.index_edited", subject)

    def _revocation(self, entry: LedgerEntry, data: dict[str, Any]) -> None:
        subject = f"entry {entry.idx}"
        row = self.session.exec(
            select(Revocation, ArtifactVersion, Artifact)
            .join(ArtifactVersion, col(ArtifactVersion.id) == col(Revocation.version_id))
            .join(Artifact, col(Artifact.id) == col(ArtifactVersion.artifact_id))
            .where(Revocation.entry_idx == entry.idx)
        ).first()
        if row is None:
            raise _fail(f"revocation entry {entry.idx} has no revocation row: it was deleted",
                        "audit.index_missing", subject)
        revocation, version, artifact = row
        target = data["target"]
        if ((artifact.name, version.version, version.digest) != (
                target["name"], target["version"], target["digest"]["value"])
                or revocation.reason != data["reason"]):
            raise _fail(f"the revocation row of entry {entry.idx} differs from the entry",
                        "audit.index_edited", subject)
        _signed_payload(data, subject)

    def check_orphans(self) -> None:
        from sqlalchemy import func

        counts = [self.session.exec(select(func.count()).select_from(table)).one()
                  for table in (ArtifactVersion, LineageEdge, Revocation)]
        seen = [self.versions_seen, self.edges_seen, self.revocations_seen]
        if counts != seen:
            raise _fail(
                f"the index tables hold {counts[0]} versions, {counts[1]} edges and {counts[2]} "
                f"revocations, the signed log {seen[0]}, {seen[1]} and {seen[2]}: rows were "
                "inserted", "audit.index_inserted")


def _signed_payload(data: dict[str, Any], subject: str) -> bytes:
    """Check an entry's DSSE signature cryptographically with the key it was made with: the PEM
    key kept in the entry, or the public key of the bundle's certificate. Whether that signer is
    *trusted* is the verification policy's question, not the audit's."""
    key_pem = data.get("signer_key")
    if isinstance(key_pem, str):
        key = parse_public_key(key_pem.encode(), source=subject)
    else:
        public = signing_certificate(data["bundle"], source=subject).public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey):
            raise _fail(f"{subject}: the signing certificate's key is not an EC key",
                        "audit.signature_unverifiable", subject)
        key = public
    return verify_envelope_with_key(data["bundle"], key, source=subject)
