"""Keyless signer facts on versions, and the OpenSSF Model Signing bundle of models.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("artifact_versions") as batch:
        batch.add_column(sa.Column("signer_issuer", sa.String(length=300), nullable=True))
        batch.add_column(sa.Column("log_index", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("signed_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("signed_statements") as batch:
        batch.add_column(sa.Column("oms_bundle", sa.Text(), nullable=True))


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: migrations only go forward")
