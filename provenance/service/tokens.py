"""Bearer tokens: created at random, shown once, stored as SHA-256, compared in constant time.

Roles, weakest first: ``reader`` and ``auditor`` read (verify, artifacts, lineage, proofs,
exports, admission decisions); ``publisher`` also appends records; ``admin`` also manages tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, update
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlmodel import Session, col, select

from custody.domain import ROLES
from custody.errors import LedgerError, NotFoundError, UsageError
from custody.provenance.ledger.models import table_of, utc_now
from custody.provenance.ledger.token_table import ServiceToken

RANK = {"reader": 1, "auditor": 1, "publisher": 2, "admin": 3}
PREFIX = "cst_"
_TOKENS = table_of(ServiceToken)


@dataclass(frozen=True)
class TokenInfo:
    id: int
    role: str
    label: str
    created_at: datetime
    revoked: bool

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "role": self.role, "label": self.label,
                "created_at": self.created_at.isoformat(timespec="seconds"),
                "revoked": self.revoked}


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise UsageError(f"unknown role {role!r}", hint=f"use one of: {', '.join(ROLES)}")
    return role


def allows(role: str, needed: str) -> bool:
    return RANK.get(role, 0) >= RANK[needed]


def _info(row: ServiceToken) -> TokenInfo:
    return TokenInfo(int(row.id or 0), row.role, row.label, row.created_at,
                     row.revoked_at is not None)


def create_token(engine: Engine, role: str, label: str = "") -> tuple[str, TokenInfo]:
    """A new token of ``role``; the plaintext is returned once and never stored."""
    _check_role(role)
    if len(label) > 200:
        raise UsageError("a token label has at most 200 characters")
    token = PREFIX + secrets.token_urlsafe(32)
    row = ServiceToken(token_hash=_hash_token(token), role=role, label=label,
                       created_at=utc_now())
    try:
        with Session(engine) as session:
            session.add(row)
            session.commit()
            session.refresh(row)
            return token, _info(row)
    except (DBAPIError, SQLAlchemyError) as exc:
        raise LedgerError(f"cannot store the token: {_reason(exc)}",
                          hint="run `custody migrate` if the ledger predates the service") from None


def list_tokens(engine: Engine) -> list[TokenInfo]:
    try:
        with Session(engine) as session:
            rows = session.exec(select(ServiceToken).order_by(col(ServiceToken.id))).all()
    except (DBAPIError, SQLAlchemyError) as exc:
        raise LedgerError(f"cannot read tokens: {_reason(exc)}",
                          hint="run `custody migrate` if the ledger predates the service") from None
    return [_info(r) for r in rows]


def revoke_token(engine: Engine, token_id: int) -> None:
    try:
        with Session(engine) as session:
            result = session.connection().execute(
                update(_TOKENS)
                .where(col(ServiceToken.id) == token_id, col(ServiceToken.revoked_at).is_(None))
                .values(revoked_at=utc_now()))
            session.commit()
    except (DBAPIError, SQLAlchemyError) as exc:
        raise LedgerError(f"cannot revoke the token: {_reason(exc)}") from None
    if result.rowcount == 0:
        raise NotFoundError(f"no active token with id {token_id}", subject=str(token_id),
                            hint="`custody token list` (or GET /v1/tokens) lists the tokens, "
                            "their ids and which are already revoked")


def authenticate(engine: Engine, token: str) -> TokenInfo | None:
    """The live token matching ``token``, or None. The lookup is by hash (an index), and the
    stored hash is compared again in constant time."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    wanted = _hash_token(token)
    try:
        with Session(engine) as session:
            row = session.exec(
                select(ServiceToken).where(ServiceToken.token_hash == wanted)).first()
    except (DBAPIError, SQLAlchemyError) as exc:
        raise LedgerError(f"cannot check the token: {_reason(exc)}") from None
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.token_hash.encode(), wanted.encode()):
        return None
    return _info(row)


def _reason(exc: Exception) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).splitlines()[0]
