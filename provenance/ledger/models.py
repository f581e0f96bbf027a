"""Ledger tables (SQLModel), split the sqlmodel way: a Base with the shared fields, the table,
and a Public model for what leaves the ledger.

The source of truth is :class:`LedgerEntry`: one row per appended fact, with a gapless index
(the future Merkle leaf index), the canonical JSON payload and its RFC 6962 leaf hash. The other
tables are indexes over those entries, written in the same transaction, so that lookups by name,
digest, file or lineage edge do not have to parse payloads.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, Column, LargeBinary, Table, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def table_of(model: type[SQLModel]) -> Table:
    """The Core table behind a SQLModel table class (for the append path's Core statements)."""
    table: Table = model.__table__  # type: ignore[attr-defined]
    return table


def utc_now() -> datetime:
    """The current time, timezone-aware UTC: timestamp columns store UTC (``timestamptz`` on
    PostgreSQL) and read back as aware UTC datetimes."""
    return datetime.now(UTC)


def to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


# --- ledger entries ---------------------------------------------------------------------------


class LedgerEntryBase(SQLModel):
    entry_type: str = Field(max_length=40)
    payload: str = Field(sa_column=Column(Text, nullable=False))
    leaf_hash: str = Field(max_length=64)
    created_at: datetime


class LedgerEntry(LedgerEntryBase, table=True):
    __tablename__ = "ledger_entries"

    idx: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})


# --- the Merkle log over the entries -------------------------------------------------------------


class MerkleNode(SQLModel, table=True):
    """The hash of the complete subtree of ``2**level`` leaves starting at ``index * 2**level``.

    Every complete subtree is stored once, when the append that completes it commits, so roots and
    proofs need O(log n) lookups and never a recomputation.
    """

    __tablename__ = "merkle_nodes"

    level: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    index: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    hash: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))


class CheckpointRow(SQLModel, table=True):
    """A signed checkpoint (C2SP tlog-checkpoint note) for every tree size the ledger reached."""

    __tablename__ = "checkpoints"

    size: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    root: str = Field(max_length=64)
    note: str = Field(sa_column=Column(Text, nullable=False))
    frontier: str = Field(sa_column=Column(Text, nullable=False))  # base64 hashes, space-separated
    created_at: datetime


class LedgerMeta(SQLModel, table=True):
    """Facts about the ledger itself: its origin (log name) and checkpoint verifier key."""

    __tablename__ = "ledger_meta"

    key: str = Field(primary_key=True, max_length=40)
    value: str = Field(sa_column=Column(Text, nullable=False))


# --- artifacts and their versions ---------------------------------------------------------------


class ArtifactBase(SQLModel):
    name: str = Field(max_length=200, unique=True, index=True)
    kind: str = Field(max_length=20)


class Artifact(ArtifactBase, table=True):
    __tablename__ = "artifacts"

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime


class ArtifactVersionBase(SQLModel):
    version: int
    digest_algorithm: str = Field(max_length=40)
    digest: str = Field(max_length=64, index=True)
    size: int
    file_count: int
    signer: str = Field(max_length=300)
    scan_verdict: str = Field(max_length=20)
    scan_max_severity: str | None = Field(default=None, max_length=20)
    recorded_at: datetime
    signer_issuer: str | None = Field(default=None, max_length=300)  # keyless: OIDC issuer
    log_index: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    signed_at: datetime | None = None  # keyless: the transparency log's time


class ArtifactVersion(ArtifactVersionBase, table=True):
    __tablename__ = "artifact_versions"
    __table_args__ = (UniqueConstraint("artifact_id", "version", name="uq_artifact_version"),)

    id: int | None = Field(default=None, primary_key=True)
    artifact_id: int = Field(foreign_key="artifacts.id", index=True)
    entry_idx: int = Field(foreign_key="ledger_entries.idx", unique=True)


class ArtifactVersionPublic(ArtifactVersionBase):
    """One recorded version as shown to users and written to ``--json``."""

    id: int
    name: str
    kind: str
    entry_idx: int

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


# --- manifests, statements, lineage -------------------------------------------------------------


class ManifestFileBase(SQLModel):
    relpath: str = Field(sa_column=Column(Text, nullable=False))
    size: int
    sha256: str = Field(max_length=64, index=True)


class ManifestFile(ManifestFileBase, table=True):
    __tablename__ = "manifest_files"

    id: int | None = Field(default=None, primary_key=True)
    version_id: int = Field(foreign_key="artifact_versions.id", index=True)


class SignedStatementBase(SQLModel):
    statement: str = Field(sa_column=Column(Text, nullable=False))
    bundle: str = Field(sa_column=Column(Text, nullable=False))
    scan_report: str = Field(sa_column=Column(Text, nullable=False))
    oms_bundle: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class SignedStatement(SignedStatementBase, table=True):
    __tablename__ = "signed_statements"

    id: int | None = Field(default=None, primary_key=True)
    version_id: int = Field(foreign_key="artifact_versions.id", unique=True)


class LineageEdgeBase(SQLModel):
    activity: str = Field(max_length=40)


class LineageEdge(LineageEdgeBase, table=True):
    __tablename__ = "lineage_edges"

    id: int | None = Field(default=None, primary_key=True)
    input_version_id: int = Field(foreign_key="artifact_versions.id", index=True)
    output_version_id: int = Field(foreign_key="artifact_versions.id", index=True)
    entry_idx: int = Field(foreign_key="ledger_entries.idx", index=True)


class LineageEdgePublic(LineageEdgeBase):
    input_ref: str
    output_ref: str
    depth: int


# --- revocations ----------------------------------------------------------------------------------


class RevocationBase(SQLModel):
    reason: str = Field(sa_column=Column(Text, nullable=False))
    signer: str = Field(max_length=300)
    revoked_at: datetime


class Revocation(RevocationBase, table=True):
    """A signed revocation entry: ``verify`` refuses the version and everything made from it."""

    __tablename__ = "revocations"

    id: int | None = Field(default=None, primary_key=True)
    version_id: int = Field(foreign_key="artifact_versions.id", index=True)
    entry_idx: int = Field(foreign_key="ledger_entries.idx", unique=True)


class RevocationPublic(RevocationBase):
    ref: str
    entry_idx: int


# --- witness cosignatures collected by the service ---------------------------------------------


class CheckpointCosignature(SQLModel, table=True):
    """A witness's cosignature of the checkpoint of ``size`` and ``root`` (one C2SP
    tlog-cosignature line), posted to the service and served with the checkpoint. Not part of
    the signed log and not trusted by anything here: a cache that every client verifies with the
    witness keys it trusts (a deleted row only makes a quorum harder to meet)."""

    __tablename__ = "checkpoint_cosignatures"

    size: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    name: str = Field(primary_key=True, max_length=300)  # the witness's key name
    key_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    root: str = Field(max_length=64)  # the checkpoint's root hash (hex) the line signs
    timestamp: int = Field(sa_column=Column(BigInteger, nullable=False))  # POSIX seconds
    line: str = Field(sa_column=Column(Text, nullable=False))
    received_at: datetime
