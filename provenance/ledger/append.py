"""One append: the next version of an artifact, its lineage edges, their log leaves, the new head.

Runs inside the write transaction that holds the append lock, with SQLAlchemy Core statements
(the ORM's unit of work costs more than the whole append otherwise). Nothing here updates or
deletes a row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select

from custody.errors import UsageError
from custody.provenance.hashing.manifest import Manifest
from custody.provenance.ledger import tree as log
from custody.provenance.ledger.models import (
    Artifact,
    ArtifactVersion,
    ArtifactVersionPublic,
    LineageEdge,
    ManifestFile,
    Revocation,
    SignedStatement,
    table_of,
    to_utc,
)
from custody.provenance.ledger.tree import NewEntry
from custody.provenance.log.checkpoint import NoteSigner
from custody.signing.statement import Statement, canonical_json

_ARTIFACTS = table_of(Artifact)
_VERSIONS = table_of(ArtifactVersion)
_FILES = table_of(ManifestFile)
_STATEMENTS = table_of(SignedStatement)
_EDGES = table_of(LineageEdge)
_REVOCATIONS = table_of(Revocation)


@dataclass(frozen=True)
class InputLink:
    version: ArtifactVersionPublic
    activity: str


@dataclass(frozen=True)
class SignedRecord:
    """What the record flow hands the ledger for one new version, already signed."""

    statement: bytes
    bundle: str
    signer: str
    scan_report: dict[str, Any]
    signer_key: str | None = None  # PEM public key for key-signed bundles, kept in the entry
    oms_bundle: str | None = None  # models: the OpenSSF Model Signing signature (model.sig)
    keyless: dict[str, Any] | None = None  # keyless: identity, issuer, log index, signed time
    entry_extras: dict[str, Any] | None = None  # unsigned data kept in the log entry (profiles)


def append_version(
    conn: Connection,
    *,
    name: str,
    kind: str,
    manifest: Manifest,
    inputs: Sequence[InputLink],
    build: Callable[[int], SignedRecord],
    signer: NoteSigner,
    now: datetime,
) -> ArtifactVersionPublic:
    artifact_id, last = _artifact_and_last_version(conn, name, kind, now)
    version = last + 1
    signed = build(version)
    digest = {"algorithm": manifest.algorithm, "value": manifest.digest}
    payload: dict[str, Any] = {
        "type": "artifact_version", "name": name, "kind": kind, "version": version,
        "digest": digest, "bundle": signed.bundle, "signer_key": signed.signer_key,
        # the full scan report (findings and all; the signed statement holds its summary), in
        # the log so that what is shown of it is what the checkpoints cover
        "scan_report": signed.scan_report,
    }
    if signed.oms_bundle is not None:
        payload["oms_bundle"] = signed.oms_bundle
    for key, value in (signed.entry_extras or {}).items():
        payload.setdefault(key, value)
    entries = [NewEntry("artifact_version", canonical_json(payload))]
    entries += [NewEntry("lineage_edge", canonical_json({
        "type": "lineage_edge",
        "input": {"name": link.version.name, "version": link.version.version,
                  "digest": {"algorithm": link.version.digest_algorithm,
                             "value": link.version.digest}},
        "output": {"name": name, "version": version, "digest": digest},
        "activity": link.activity,
    })) for link in inputs]
    indices = log.append_entries(conn, entries, signer, now)
    values: dict[str, Any] = {
        "artifact_id": artifact_id,
        "version": version,
        "digest_algorithm": manifest.algorithm,
        "digest": manifest.digest,
        "size": manifest.total_size,
        "file_count": len(manifest.files),
        "signer": signed.signer,
        "scan_verdict": str(signed.scan_report.get("verdict", "error")),
        "scan_max_severity": signed.scan_report.get("max_severity"),
        "recorded_at": _signed_time(signed.statement, now),
        "entry_idx": indices[0],
        **keyless_columns(signed.keyless),
    }
    version_id = int(conn.execute(insert(_VERSIONS).returning(_VERSIONS.c.id), values).scalar_one())
    conn.execute(insert(_FILES), [
        {"version_id": version_id, "relpath": f.relpath, "size": f.size, "sha256": f.sha256}
        for f in manifest.files
    ])
    conn.execute(insert(_STATEMENTS), {
        "version_id": version_id,
        "statement": signed.statement.decode("utf-8"),
        "bundle": signed.bundle,
        "scan_report": canonical_json(signed.scan_report).decode("utf-8"),
        "oms_bundle": signed.oms_bundle,
    })
    if inputs:
        conn.execute(insert(_EDGES), [
            {"input_version_id": link.version.id, "output_version_id": version_id,
             "activity": link.activity, "entry_idx": idx}
            for link, idx in zip(inputs, indices[1:], strict=True)
        ])
    # Built from values this function just wrote: no validation pass needed.
    return ArtifactVersionPublic.model_construct(**values, id=version_id, name=name, kind=kind)


def _artifact_and_last_version(conn: Connection, name: str, kind: str, now: datetime
                               ) -> tuple[int, int]:
    row = conn.execute(
        select(_ARTIFACTS.c.id, _ARTIFACTS.c.kind).where(_ARTIFACTS.c.name == name)
    ).first()
    if row is None:
        return int(conn.execute(
            insert(_ARTIFACTS).returning(_ARTIFACTS.c.id),
            {"name": name, "kind": kind, "created_at": now},
        ).scalar_one()), 0
    if row[1] != kind:
        raise UsageError(f"{name} is recorded as a {row[1]}, not a {kind}",
                         hint=f"use --kind {row[1]} or another name")
    last = conn.execute(
        select(func.max(_VERSIONS.c.version)).where(_VERSIONS.c.artifact_id == row[0])
    ).scalar()
    return int(row[0]), int(last or 0)

def _signed_time(statement: bytes, now: datetime) -> datetime:
    """The signed statement's recordedAt (what audit compares the column with), else ``now``."""
    recorded = Statement.from_bytes(statement).custody_predicate().get("recordedAt")
    return to_utc(datetime.fromisoformat(recorded)) if isinstance(recorded, str) else now


def keyless_columns(facts: dict[str, Any] | None) -> dict[str, Any]:
    """The ``artifact_versions`` columns of a keyless bundle's facts (``KeylessFacts.to_json``;
    None for a key or certificate-chain bundle): the audit re-derives them the same way."""
    if not facts:
        return {"signer_issuer": None, "log_index": None, "signed_at": None}
    signed_at = facts.get("integrated_time") or facts.get("timestamp")
    return {
        "signer_issuer": facts.get("issuer"),
        "log_index": facts.get("log_index"),
        "signed_at": to_utc(datetime.fromisoformat(signed_at)) if signed_at else None,
    }


def append_revocation(
    conn: Connection,
    target: ArtifactVersionPublic,
    *,
    reason: str,
    bundle: str,
    signer_identity: str,
    signer_key: str | None,
    signer: NoteSigner,
    now: datetime,
) -> int:
    payload = canonical_json({
        "type": "revocation",
        "target": {"name": target.name, "version": target.version,
                   "digest": {"algorithm": target.digest_algorithm, "value": target.digest}},
        "reason": reason,
        "bundle": bundle,
        "signer_key": signer_key,
    })
    (idx,) = log.append_entries(conn, [NewEntry("revocation", payload)], signer, now)
    conn.execute(insert(_REVOCATIONS), {"version_id": target.id, "entry_idx": idx,
                                        "reason": reason, "signer": signer_identity,
                                        "revoked_at": now})
    return idx
