"""Webhook deliveries accepted by the service (MLflow registry webhooks), kept for the signature
window so that a replayed delivery is refused: outside the signed log, a cache.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# The table's model must be on SQLModel.metadata wherever the migrations are (env.py imports only
# the ledger models), so that the migrations and the models describe the same schema.
import custody.provenance.ledger.delivery_table  # noqa: F401

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_deliveries",
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("delivery_id", sa.String(length=200), nullable=False),
        sa.Column("sent_at", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", "delivery_id"),
    )


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: migrations only go forward")
