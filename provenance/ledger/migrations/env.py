"""Alembic environment: migrations run on the connection Custody hands over (never a URL)."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import custody.provenance.ledger.models
import custody.provenance.ledger.token_table  # noqa: F401 - the service's token table

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run Custody migrations through custody.provenance.ledger.migrate")
context.configure(connection=connection, target_metadata=SQLModel.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
