"""Witness cosignatures collected by the service (``POST /v1/checkpoint/cosignatures``) and served
with the checkpoint they sign (``GET /v1/checkpoint``).

They are stored in the ledger database (``checkpoint_cosignatures``, migration ``0005``), so every
replica of the service sees them, but outside the signed log: nothing here trusts them, and a
client checks them with the witness keys it trusts. The service stores a line only once it has
verified it: the checkpoint must be the ledger's own (signed by the pinned ledger key, the root the
ledger has for that size; another root is refused as ``witness.fork``), and the line must verify
under the key of a witness the service knows (its policy's ``[witness]`` table, else the vkey sent
along).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlmodel import Session, col, select

from custody.errors import LedgerError, UsageError, VerificationError
from custody.provenance.ledger.models import (
    CheckpointCosignature,
    CheckpointRow,
    table_of,
    utc_now,
)
from custody.provenance.log.checkpoint import NoteVerifier, verify_checkpoint
from custody.provenance.log.witness import Cosignature, WitnessVerifier, verify_cosignatures

_MAX_WITNESSES = 64  # cosignatures kept per checkpoint: a note holds at most 100 signature lines
_TABLE = table_of(CheckpointCosignature)
_MIGRATE = "run `custody migrate` if the ledger predates witness cosignatures"


@dataclass(frozen=True)
class Stored:
    """What a post added: the checkpoint and the cosignatures now kept for it."""

    size: int
    root: str
    added: tuple[Cosignature, ...]
    total: int


def add(engine: Engine, row: CheckpointRow, note: str, *, ledger_key: NoteVerifier,
        witnesses: Sequence[WitnessVerifier], now: datetime | None = None) -> Stored:
    """Verify the cosigned ``note`` of the ledger's checkpoint ``row`` and keep the cosignatures
    of ``witnesses`` on it (of each witness the newest)."""
    subject = f"{ledger_key.name}@{row.size}"
    posted = verify_checkpoint(note, ledger_key, origin=ledger_key.name,
                               subject="the posted checkpoint")
    ours = verify_checkpoint(row.note, ledger_key, origin=ledger_key.name,
                             subject=f"the ledger's checkpoint {row.size}")
    if posted.root != ours.root:
        raise VerificationError(
            f"the posted checkpoint of size {posted.size} is signed by the ledger key but has "
            "another root than the ledger's checkpoint of that size: the log forked (a split "
            "view)", rule="witness.fork", subject=subject,
            hint="keep the posted checkpoint and GET /v1/checkpoint?size="
            f"{posted.size}&format=note as evidence, treat the ledger as tampered with, and run "
            "`custody audit verify`")
    if not witnesses:
        raise UsageError("the service knows no witness to check the cosignatures with",
                         hint='send the witness\'s vkey along ({"note": ..., "witness": VKEY}), '
                         "or list the witnesses in the service policy's [witness] table")
    cosigs = verify_cosignatures(note, witnesses, quorum=0, max_age=None,
                                 now=now or datetime.now(UTC))
    if not cosigs:
        raise UsageError(
            f"the posted checkpoint {subject} carries no cosignature by "
            + ", ".join(w.label for w in witnesses),
            hint="post what `custody audit witness --out FILE` wrote (the checkpoint and its "
            "cosignature lines)", subject=subject)
    root = ours.root.hex()
    try:
        with Session(engine) as session:
            kept = session.exec(select(CheckpointCosignature.name, CheckpointCosignature.key_id)
                                .where(CheckpointCosignature.size == row.size,
                                       CheckpointCosignature.root == root)).all()
            keys = {(n, k) for n, k in kept} | {(c.name, c.key_id) for c in cosigs}
            if len(keys) > _MAX_WITNESSES:
                raise UsageError(f"checkpoint {subject} already has {len(kept)} cosignatures; "
                                 f"at most {_MAX_WITNESSES} are kept per checkpoint",
                                 hint="cosign the ledger's newest checkpoint instead")
            for cosig in cosigs:
                _upsert(session, row.size, root, cosig)
            session.commit()
            total = len(cosignatures(session, row))
    except (DBAPIError, SQLAlchemyError) as exc:
        raise LedgerError(f"cannot store the cosignatures: {_reason(exc)}", hint=_MIGRATE
                          ) from None
    return Stored(row.size, root, tuple(cosigs), total)


def _upsert(session: Session, size: int, root: str, cosig: Cosignature) -> None:
    """Insert the line, or replace an older one of the same witness (a newer one stays)."""
    values = {"size": size, "name": cosig.name, "key_id": cosig.key_id, "root": root,
              "timestamp": cosig.timestamp, "line": cosig.line(), "received_at": utc_now()}
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(_TABLE).values(values)
    newer = (statement.excluded.timestamp > _TABLE.c.timestamp) | (
        statement.excluded.root != _TABLE.c.root)
    session.connection().execute(statement.on_conflict_do_update(
        index_elements=["size", "name", "key_id"],
        set_={k: statement.excluded[k] for k in ("root", "timestamp", "line", "received_at")},
        where=newer))


def cosignatures(session: Session, row: CheckpointRow) -> list[CheckpointCosignature]:
    """The cosignature lines kept for the checkpoint ``row`` (its size and root)."""
    return list(session.exec(
        select(CheckpointCosignature)
        .where(CheckpointCosignature.size == row.size, CheckpointCosignature.root == row.root)
        .order_by(col(CheckpointCosignature.name), col(CheckpointCosignature.key_id))).all())


def cosigned_note(engine: Engine, row: CheckpointRow
                  ) -> tuple[str, list[CheckpointCosignature]]:
    """The checkpoint's note followed by every cosignature line kept for it, and those rows."""
    try:
        with Session(engine) as session:
            kept = cosignatures(session, row)
    except (DBAPIError, SQLAlchemyError) as exc:
        raise LedgerError(f"cannot read the cosignatures: {_reason(exc)}", hint=_MIGRATE
                          ) from None
    return row.note + "".join(r.line for r in kept), kept


def newest_cosigned_size(engine: Engine) -> int | None:
    """The largest checkpoint size with a kept cosignature of its current root, if any."""
    try:
        with Session(engine) as session:
            size = session.exec(
                select(func.max(CheckpointCosignature.size))
                .join(CheckpointRow, (col(CheckpointRow.size) == col(CheckpointCosignature.size))
                      & (col(CheckpointRow.root) == col(CheckpointCosignature.root)))).one()
    except (DBAPIError, SQLAlchemyError) as exc:
        raise LedgerError(f"cannot read the cosignatures: {_reason(exc)}", hint=_MIGRATE
                          ) from None
    return None if size is None else int(size)


def _reason(exc: Exception) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).splitlines()[0]
