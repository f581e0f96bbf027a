"""The initial ledger schema: entries, Merkle nodes, checkpoints, artifacts, lineage.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_entries",
        sa.Column("idx", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("entry_type", sa.String(length=40), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("leaf_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("idx"),
    )
    op.create_table(
        "merkle_nodes",
        sa.Column("level", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("level", "index"),
    )
    op.create_table(
        "checkpoints",
        sa.Column("size", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("root", sa.String(length=64), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("frontier", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("size"),
    )
    op.create_table(
        "ledger_meta",
        sa.Column("key", sa.String(length=40), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "artifacts",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_artifacts_name", "artifacts", ["name"], unique=True)
    op.create_table(
        "artifact_versions",
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("digest_algorithm", sa.String(length=40), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("file_count", sa.Integer(), nullable=False),
        sa.Column("signer", sa.String(length=300), nullable=False),
        sa.Column("scan_verdict", sa.String(length=20), nullable=False),
        sa.Column("scan_max_severity", sa.String(length=20), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("artifact_id", sa.Integer(), nullable=False),
        sa.Column("entry_idx", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["artifact_id"], ["artifacts.id"]),
        sa.ForeignKeyConstraint(["entry_idx"], ["ledger_entries.idx"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("artifact_id", "version", name="uq_artifact_version"),
        sa.UniqueConstraint("entry_idx"),
    )
    op.create_index("ix_artifact_versions_artifact_id", "artifact_versions", ["artifact_id"])
    op.create_index("ix_artifact_versions_digest", "artifact_versions", ["digest"])
    op.create_table(
        "manifest_files",
        sa.Column("relpath", sa.Text(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["version_id"], ["artifact_versions.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_manifest_files_sha256", "manifest_files", ["sha256"])
    op.create_index("ix_manifest_files_version_id", "manifest_files", ["version_id"])
    op.create_table(
        "signed_statements",
        sa.Column("statement", sa.Text(), nullable=False),
        sa.Column("bundle", sa.Text(), nullable=False),
        sa.Column("scan_report", sa.Text(), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["version_id"], ["artifact_versions.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("version_id"),
    )
    op.create_table(
        "lineage_edges",
        sa.Column("activity", sa.String(length=40), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("input_version_id", sa.Integer(), nullable=False),
        sa.Column("output_version_id", sa.Integer(), nullable=False),
        sa.Column("entry_idx", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["entry_idx"], ["ledger_entries.idx"]),
        sa.ForeignKeyConstraint(["input_version_id"], ["artifact_versions.id"]),
        sa.ForeignKeyConstraint(["output_version_id"], ["artifact_versions.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_lineage_edges_entry_idx", "lineage_edges", ["entry_idx"])
    op.create_index("ix_lineage_edges_input_version_id", "lineage_edges", ["input_version_id"])
    op.create_index("ix_lineage_edges_output_version_id", "lineage_edges", ["output_version_id"])


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: migrations only go forward")
