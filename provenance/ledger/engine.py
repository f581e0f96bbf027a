"""Database engines for the ledger: SQLite (embedded default, WAL) and PostgreSQL.

Appends are serialised so that leaf indices stay gapless: on SQLite a write transaction starts
with ``BEGIN IMMEDIATE`` (the database write lock is taken before the head is read); on
PostgreSQL a transaction-scoped advisory lock is taken first. Reads use ordinary transactions.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError

from custody.errors import LedgerError

WRITE_OPTION = "custody_write"
_PG_LOCK_KEY = 0x637573746F6479  # "custody"


def make_engine(url: str, *, must_exist: bool = True) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise LedgerError(
            f"{url!r} is not a database URL",
            hint="use sqlite:///path/ledger.db or postgresql+psycopg://user@host/db",
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        db = parsed.database or ""
        if must_exist and db not in ("", ":memory:") and not Path(db).is_file():
            raise LedgerError(
                f"no ledger database at {db}",
                hint="run `custody init` first, or check --ledger / $CUSTODY_LEDGER",
                subject=db,
            )
        engine = create_engine(url, connect_args={"timeout": 60})
        _configure_sqlite(engine)
        return engine
    if backend == "postgresql":
        try:
            engine = create_engine(url, pool_pre_ping=True)
        except NoSuchModuleError as exc:
            raise LedgerError(f"PostgreSQL driver missing: {exc}",
                              hint="pip install 'psycopg[binary]'") from None
        _configure_postgres(engine)
        return engine
    raise LedgerError(f"unsupported ledger database {backend!r}",
                      hint="Custody supports SQLite and PostgreSQL")


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _configure_postgres(engine: Engine) -> None:
    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        if conn.get_execution_options().get(WRITE_OPTION, False):
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that holds the ledger's append lock until it commits (Core, no ORM)."""
    with engine.connect() as raw:
        conn = raw.execution_options(**{WRITE_OPTION: True})
        with conn.begin():
            yield conn


def check_schema(engine: Engine, url: str) -> None:
    """Refuse to work on a database that is not a Custody ledger (or not a database at all)."""
    try:
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
    except (DBAPIError, SQLAlchemyError) as exc:
        raise open_error(engine, url, exc) from None
    if "ledger_entries" not in tables:
        raise LedgerError(
            f"{redact(url)} is reachable but holds no Custody ledger (no ledger_entries table)",
            hint="check the ledger URL (--ledger, $CUSTODY_LEDGER or .custody/config.toml); to "
            "create a ledger there, run `custody init --ledger URL` in a folder that has no "
            ".custody/",
            subject=redact(url),
        )


def open_error(engine: Engine, url: str, exc: Exception) -> LedgerError:
    """Say which it is: a server that cannot be reached, or a file that is not a database."""
    parsed = engine.url
    if parsed.get_backend_name() == "postgresql":
        where = f"{parsed.host or 'localhost'}:{parsed.port or 5432}"
        return LedgerError(
            f"cannot connect to the PostgreSQL ledger at {where} (database "
            f"{parsed.database!r}): {_reason(exc)}",
            hint=f"is the server running and reachable at {where}? Check the ledger URL "
            "(--ledger, $CUSTODY_LEDGER or .custody/config.toml) and its credentials",
            subject=redact(url),
        )
    db = parsed.database or ""
    if isinstance(getattr(exc, "orig", None), sqlite3.DatabaseError) and "not a database" in str(
            exc):
        return LedgerError(
            f"{db} is not an SQLite database, so not a Custody ledger ({_reason(exc)})",
            hint="the file is damaged or is another kind of file: restore the ledger from a "
            "backup, or check the path (--ledger, $CUSTODY_LEDGER or .custody/config.toml)",
            subject=db,
        )
    return LedgerError(
        f"cannot open ledger {redact(url)}: {_reason(exc)}",
        hint="check that the file is readable and its folder writable (SQLite keeps -wal and "
        "-shm files beside it)",
        subject=db or redact(url),
    )


def redact(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _reason(exc: Exception) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).splitlines()[0]
