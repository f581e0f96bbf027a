"""The service's own table: bearer tokens, stored as SHA-256 hashes (never the token itself).

The table lives in the ledger database (migration ``0003``) but is not part of the signed log:
tokens are access control for the service, not provenance facts.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel


class ServiceToken(SQLModel, table=True):
    __tablename__ = "service_tokens"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    role: str = Field(max_length=20)
    label: str = Field(max_length=200)
    created_at: datetime
    revoked_at: datetime | None = None
