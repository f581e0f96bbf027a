"""Revocations: a signed entry that withdraws trust in one artifact version.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "revocations",
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("signer", sa.String(length=300), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("entry_idx", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["entry_idx"], ["ledger_entries.idx"]),
        sa.ForeignKeyConstraint(["version_id"], ["artifact_versions.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("entry_idx"),
    )
    op.create_index("ix_revocations_version_id", "revocations", ["version_id"])


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: migrations only go forward")
