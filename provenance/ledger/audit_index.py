"""The audit's second half: the index tables say exactly what the signed log entries say.

Every column that a verdict or a displayed fact reads (versions, manifest files, statements,
lineage edges, revocations) is re-derived from the signed entry it indexes and compared; the
first difference is an :class:`AuditError` naming the table, the row and the column. A value the
database cannot even hand over (a malformed timestamp, text that is not UTF-8, an edge to a
missing row) is a refusal naming the row too, never a crash.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, or_
from sqlalchemy.exc import StatementError
from sqlmodel import Session, col, select

from custody.errors import AuditError, CustodyError
from custody.provenance.hashing.manifest import Manifest
from custody.provenance.ledger.append import keyless_columns
from custody.provenance.ledger.models import (
    Artifact,
    ArtifactVersion,
    LedgerEntry,
    LineageEdge,
    ManifestFile,
    Revocation,
    SignedStatement,
    to_utc,
)
from custody.signing.bundle_info import (
    BundleKind,
    certificate_identity,
    classify_bundle,
    keyless_facts,
    signing_certificate,
)
from custody.signing.cert_signer import certificate_name
from custody.signing.key_signer import verify_envelope_with_key
from custody.signing.keys import key_hint, parse_public_key
from custody.signing.statement import Statement, canonical_json

HINT = ("treat this ledger as tampered: restore it from a trusted copy and keep the evidence "
        "(the saved checkpoints)")


def fail(message: str, rule: str, subject: str | None = None) -> AuditError:
    return AuditError(message, rule=rule, subject=subject, hint=HINT)


class EntryChecker:
    """Checks each entry's signature and that the index tables agree with it."""

    def __init__(self, session: Session):
        self.session = session
        self.edges_seen = 0
        self.versions_seen = 0
        self.revocations_seen = 0

    def check(self, idx: int, entry_type: str, payload: bytes) -> int:
        """Check entry ``idx``; return how many signatures were verified."""
        subject = f"entry {idx}"
        try:
            data = json.loads(payload)
        except ValueError as exc:
            raise fail(f"ledger entry {idx} is not JSON ({exc}): it was not written by Custody",
                       "audit.entry_malformed", subject) from None
        try:
            if not isinstance(data, dict):
                raise TypeError("the payload is not a JSON object")
            return self._check(idx, entry_type, data, subject)
        except (KeyError, TypeError, AttributeError) as exc:
            raise fail(f"ledger entry {idx} is malformed ({type(exc).__name__}: {exc}): it was "
                       "not written by Custody", "audit.entry_malformed", subject) from None
        except AuditError:
            raise
        except CustodyError as exc:  # e.g. a signed manifest whose files do not make its digest
            raise fail(f"ledger entry {idx} is malformed: {exc.message}",
                       "audit.entry_malformed", subject) from None
        except (ValueError, StatementError) as exc:  # a value the database cannot hand over
            reason = exc.orig if isinstance(exc, StatementError) else exc
            raise fail(f"ledger entry {idx} or its index rows hold a malformed value ({reason}): "
                       "they were edited", "audit.index_malformed", subject) from None

    def _check(self, idx: int, entry_type: str, data: dict[str, Any], subject: str) -> int:
        if entry_type == "artifact_version" == data.get("type"):
            self._version(idx, data, subject)
            self.versions_seen += 1
            return 1
        if entry_type == "lineage_edge" == data.get("type"):
            self._edge(idx, data, subject)
            self.edges_seen += 1
            return 0
        if entry_type == "revocation" == data.get("type"):
            self._revocation(idx, data, subject)
            self.revocations_seen += 1
            return 1
        raise fail(f"ledger entry {idx} has unknown type {entry_type!r}", "audit.entry_type",
                   subject)

    def _version(self, idx: int, data: dict[str, Any], subject: str) -> None:
        row = self.session.exec(
            select(ArtifactVersion, Artifact, SignedStatement)
            .join(Artifact, col(Artifact.id) == col(ArtifactVersion.artifact_id))
            .join(SignedStatement, col(SignedStatement.version_id) == col(ArtifactVersion.id))
            .where(ArtifactVersion.entry_idx == idx)
        ).first()
        if row is None:
            raise fail(f"ledger entry {idx} ({data.get('name')}@{data.get('version')}) has no "
                       "version row: index rows were deleted", "audit.index_missing", subject)
        version, artifact, stored = row
        said = (data["name"], data["kind"], data["version"], data["digest"]["algorithm"],
                data["digest"]["value"])
        indexed = (artifact.name, artifact.kind, version.version, version.digest_algorithm,
                   version.digest)
        if said != indexed or stored.bundle != data["bundle"]:
            raise fail(f"the index rows of ledger entry {idx} ({said[0]}@{said[2]}) differ from "
                       "the entry: they were edited", "audit.index_edited", subject)
        payload = signed_payload(data, subject)
        if payload.decode("utf-8") != stored.statement:
            raise fail(f"the stored statement of ledger entry {idx} differs from the signed one",
                       "audit.index_edited", subject)
        if stored.oms_bundle != data.get("oms_bundle"):
            raise _column(idx, "signed_statements", "oms_bundle", subject)
        predicate = Statement.from_bytes(payload).custody_predicate()
        self._version_columns(idx, version, stored, predicate, data, subject)

    def _version_columns(self, idx: int, version: ArtifactVersion, stored: SignedStatement,
                         predicate: dict[str, Any], data: dict[str, Any], subject: str) -> None:
        manifest, scan = Manifest.from_json(predicate["manifest"]), predicate["scan"]
        expected: dict[str, Any] = {
            "size": manifest.total_size,
            "file_count": len(manifest.files),
            "scan_verdict": str(scan.get("verdict", "error")),
            "scan_max_severity": scan.get("max_severity"),
            "recorded_at": to_utc(datetime.fromisoformat(predicate["recordedAt"])),
            "signer": signer_named_by(data, subject),
            **keyless_columns(_keyless_facts(data["bundle"], subject)),
        }
        actual = {name: getattr(version, name) for name in expected}
        for name in ("recorded_at", "signed_at"):  # compared exactly, as instants
            if isinstance(actual[name], datetime):
                actual[name] = to_utc(actual[name])
            elif actual[name] is not None:
                raise _column(idx, "artifact_versions", name, subject)
        for name, want in expected.items():
            if actual[name] != want or type(actual[name]) is not type(want):
                raise _column(idx, "artifact_versions", name, subject)
        listed = sorted((f.relpath, f.size, f.sha256) for f in self.session.exec(
            select(ManifestFile).where(ManifestFile.version_id == version.id)).all())
        if listed != sorted((f.relpath, f.size, f.sha256) for f in manifest.files):
            raise _column(idx, "manifest_files", "relpath/size/sha256", subject)
        if "scan_report" in data:  # the entry holds the report: the column is its copy
            if stored.scan_report != canonical_json(data["scan_report"]).decode("utf-8"):
                raise _column(idx, "signed_statements", "scan_report", subject)
            return
        # an entry from before reports were kept in the log: its verdict and severity are
        # signed, its findings are not (and are never shown: see Ledger.scan_report)
        report = json.loads(stored.scan_report)
        if not isinstance(report, dict) or (report.get("verdict"), report.get("max_severity")) \
                != (expected["scan_verdict"], expected["scan_max_severity"]):
            raise _column(idx, "signed_statements", "scan_report", subject)

    def _edge(self, idx: int, data: dict[str, Any], subject: str) -> None:
        edge = self.session.exec(select(LineageEdge).where(LineageEdge.entry_idx == idx)).first()
        if edge is None:
            raise fail(f"lineage entry {idx} has no edge row: it was deleted",
                       "audit.index_missing", subject)
        ends = {}
        for end, vid in (("input", edge.input_version_id), ("output", edge.output_version_id)):
            found = self.session.exec(
                select(Artifact.name, ArtifactVersion.version)
                .join(Artifact, col(Artifact.id) == col(ArtifactVersion.artifact_id))
                .where(ArtifactVersion.id == vid)
            ).first()
            ends[end] = (found[0], found[1]) if found else None
        said = {end: (data[end]["name"], data[end]["version"]) for end in ("input", "output")}
        if ends != said or edge.activity != data["activity"]:
            raise fail(f"the lineage_edges row of entry {idx} differs from the entry (it points "
                       f"at {ends} for {said})", "audit.index_edited", subject)

    def _revocation(self, idx: int, data: dict[str, Any], subject: str) -> None:
        """The ``revocations`` row of entry ``idx`` is re-derived from the entry: the version it
        points at (name, version, digest), the reason and the signer. Verdicts never read the
        table (they read the entries), but ``custody revoke`` and the displays must not be told
        another story."""
        revocation = self.session.exec(
            select(Revocation).where(Revocation.entry_idx == idx)).first()
        target = data["target"]
        said = (target["name"], target["version"], target["digest"]["value"])
        if revocation is None:
            raise fail(f"revocation entry {idx} ({said[0]}@{said[1]}) has no revocations row: "
                       "it was deleted or renumbered", "audit.index_missing", subject)
        points = self.session.exec(
            select(Artifact.name, ArtifactVersion.version, ArtifactVersion.digest)
            .join(Artifact, col(Artifact.id) == col(ArtifactVersion.artifact_id))
            .where(ArtifactVersion.id == revocation.version_id)).first()
        reason, signer = revocation.reason, revocation.signer
        where = f"revocations row {revocation.id} (entry {idx})"
        if points is None or tuple(points) != said:
            shown = f"{points[0]}@{points[1]}" if points is not None else "a missing version"
            raise fail(f"the {where} points at {shown}, the signed entry revokes "
                       f"{said[0]}@{said[1]}: it was edited", "audit.index_edited", subject)
        if reason != data["reason"]:
            raise _column(idx, "revocations", "reason", subject)
        signed_payload(data, subject)
        if signer != signer_named_by(data, subject):
            raise _column(idx, "revocations", "signer", subject)

    def check_orphans(self) -> None:
        counts = [self.session.exec(select(func.count()).select_from(table)).one()
                  for table in (ArtifactVersion, LineageEdge, Revocation)]
        seen = [self.versions_seen, self.edges_seen, self.revocations_seen]
        if counts != seen:
            first = self._first_orphan()
            raise fail(
                f"the index tables hold {counts[0]} versions, {counts[1]} edges and {counts[2]} "
                f"revocations, the signed log {seen[0]}, {seen[1]} and {seen[2]}: rows were "
                f"inserted{f' (first: {first})' if first else ''}", "audit.index_inserted",
                first)

    def _first_orphan(self) -> str | None:
        """The first index row whose entry is not of its kind (every entry was checked by then,
        so its ``entry_type`` is its payload's type)."""
        for row_id, entry_idx, kind, name in (
                (col(ArtifactVersion.id), col(ArtifactVersion.entry_idx), "artifact_version",
                 "artifact_versions"),
                (col(LineageEdge.id), col(LineageEdge.entry_idx), "lineage_edge",
                 "lineage_edges"),
                (col(Revocation.id), col(Revocation.entry_idx), "revocation", "revocations")):
            row = self.session.exec(
                select(row_id, entry_idx)
                .join(LedgerEntry, col(LedgerEntry.idx) == entry_idx, isouter=True)
                .where(or_(col(LedgerEntry.idx).is_(None), col(LedgerEntry.entry_type) != kind))
                .order_by(row_id).limit(1)
            ).first()
            if row is not None:
                return f"{name} row {row[0]} (entry {row[1]})"
        twice = self.session.exec(  # edges are the one index whose entry_idx is not unique
            select(func.min(col(LineageEdge.id)), col(LineageEdge.entry_idx))
            .group_by(col(LineageEdge.entry_idx)).having(func.count() > 1)
            .order_by(col(LineageEdge.entry_idx)).limit(1)).first()
        return f"lineage_edges row {twice[0]} (entry {twice[1]}, twice)" if twice else None


def _column(idx: int, table: str, column: str, subject: str) -> AuditError:
    return fail(f"the {table} row of ledger entry {idx} differs from the signed entry in column "
                f"{column}: it was edited", "audit.index_edited", subject)


def _keyless_facts(bundle: str, subject: str) -> dict[str, Any] | None:
    """What the record flow kept of a keyless bundle (``keyless_facts``), read from the signed
    entry's bundle; None for a key or certificate-chain bundle."""
    if classify_bundle(bundle, source=subject) not in (BundleKind.KEYLESS_DSSE,
                                                       BundleKind.KEYLESS_ARTIFACT):
        return None
    return keyless_facts(bundle, source=subject).to_json()


def signer_named_by(data: dict[str, Any], subject: str) -> str:
    """The signer name Custody shows for an entry, derived from the signed material alone: the
    key's hint for a key-signed entry, the certificate's name or identity otherwise."""
    key_pem = data.get("signer_key")
    if isinstance(key_pem, str):
        return f"key:{key_hint(parse_public_key(key_pem.encode(), source=subject))}"
    cert = signing_certificate(data["bundle"], source=subject)
    if classify_bundle(data["bundle"], source=subject) is BundleKind.X509_CHAIN:
        return certificate_name(cert)
    return certificate_identity(cert)


def signed_payload(data: dict[str, Any], subject: str) -> bytes:
    """Check an entry's DSSE signature cryptographically with the key it was made with: the PEM
    key kept in the entry, or the public key of the bundle's certificate. Whether that signer is
    *trusted* is the verification policy's question, not the audit's."""
    key_pem = data.get("signer_key")
    try:
        if isinstance(key_pem, str):
            key = parse_public_key(key_pem.encode(), source=subject)
        else:
            public = signing_certificate(data["bundle"], source=subject).public_key()
            if not isinstance(public, ec.EllipticCurvePublicKey):
                raise fail(f"{subject}: the signing certificate's key is not an EC key",
                           "audit.signature_unverifiable", subject)
            key = public
        return verify_envelope_with_key(data["bundle"], key, source=subject)
    except AuditError:
        raise
    except CustodyError as exc:
        raise fail(f"the signature of ledger {subject} does not verify: {exc.message}",
                   "audit.signature_invalid", subject) from None
