"""The mutation differential (issue 13): one ledger, one database edit, then either the audit
refuses or nothing a user can see has changed.

- :func:`build_ledger` makes the fixture ledger through the real CLI, in-process: two dataset
  versions (the second compared with the first as its baseline, flagged as poisoned and recorded
  with ``--allow-flagged``, then revoked), a model trained
  on the first, a model derived from it (a directory), a flagged model recorded with
  ``--allow-flagged``; the files stay so that verify re-hashes them.
- :class:`Snapshot` is the pristine database as an administrator sees it: every table (read from
  ``sqlite_master``), its columns and its rows by ``rowid``.
- :class:`Mutation` is one edit (a cell changed, a row deleted, duplicated, or two rows' values of
  one column swapped), applied with plain ``sqlite3`` (foreign keys off, as ``sqlite3`` starts).
- :func:`observe` computes every user-visible answer: verify of every artifact file, ``list``,
  ``lineage`` of every ref (both directions, every format), ``bundle`` (and ``--oms``),
  ``audit prove``/``audit checkpoint``, and the service API (records, lineage, checkpoints,
  inclusion and consistency proofs, verify by digest, admission, the lineage page) through
  FastAPI's TestClient.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import re
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from custody.cli import main

# Not part of the ledger's facts: bearer tokens of the service (their own table, never signed or
# shown by a verdict) and Alembic's schema revision (a changed one is refused before anything is
# read: "run custody migrate").
EXCLUDED_TABLES = frozenset({"service_tokens", "alembic_version"})

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "sample_data"


# --- running the CLI in-process -------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    def text(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


def run_cli(*args: str | Path, cwd: Path) -> Run:
    """``custody ARGS...`` in-process in ``cwd``, its output captured (stdout has a buffer, for
    the commands that write bytes)."""
    out, err = io.BytesIO(), io.StringIO()
    stdout = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
    with contextlib.chdir(cwd), contextlib.redirect_stdout(stdout), \
            contextlib.redirect_stderr(err), _built_once():
        code = main([str(a) for a in args])
        stdout.flush()
    return Run(code, out.getvalue().decode("utf-8", "replace"), err.getvalue())


_COMMANDS: dict[int, Any] = {}


@contextlib.contextmanager
def _built_once() -> Iterator[None]:
    """Typer builds the click command tree from the annotations on every call (~50 ms); the tree
    is the same each time, so build it once. Everything below it (``main``'s exit codes, every
    command) runs as it does for a user."""
    import typer.main

    build = typer.main.get_command

    def cached(app: Any) -> Any:
        if id(app) not in _COMMANDS:
            _COMMANDS[id(app)] = build(app)
        return _COMMANDS[id(app)]

    typer.main.get_command = cached
    try:
        yield
    finally:
        typer.main.get_command = build


# --- the fixture ledger ----------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    notnull: bool
    pk: int  # position in the primary key, 0 when not part of it


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[int, dict[str, Any]], ...]  # (rowid, values)

    def values(self, column: str) -> list[Any]:
        return [row[column] for _, row in self.rows]

    @property
    def primary_key(self) -> tuple[Column, ...]:
        return tuple(sorted((c for c in self.columns if c.pk), key=lambda c: c.pk))


class SqliteStore:
    """The workspace's SQLite file, copied back from the pristine one for every example."""

    backend = "sqlite"

    def __init__(self, db: Path):
        self.db = db
        self.pristine = db.parent.parent.parent / "pristine.db"

    def init_args(self) -> tuple[str, ...]:
        return ()

    def freeze(self) -> None:
        """Keep the database as built (its WAL folded in) as the pristine copy."""
        with contextlib.closing(sqlite3.connect(self.db)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        shutil.copyfile(self.db, self.pristine)

    def restore(self) -> None:
        """Put the pristine database back (no -wal or -shm file left from the last example)."""
        for suffix in ("-wal", "-shm", "-journal"):
            Path(f"{self.db}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(self.pristine, self.db)

    def snapshot(self) -> dict[str, Table]:
        """Every ledger table (from ``sqlite_master``) with its rows, by ``rowid``."""
        tables: dict[str, Table] = {}
        with contextlib.closing(sqlite3.connect(self.pristine)) as conn:
            names = [r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
                "'sqlite_%' ORDER BY name")]
            for name in names:
                if name in EXCLUDED_TABLES:
                    continue
                columns = tuple(Column(r[1], str(r[2]).upper(), bool(r[3]), int(r[5]))
                                for r in conn.execute(f'PRAGMA table_info("{name}")'))
                quoted = ", ".join(f'"{c.name}"' for c in columns)
                rows = tuple(
                    (int(r[0]), dict(zip((c.name for c in columns), r[1:], strict=True)))
                    for r in conn.execute(
                        f'SELECT rowid, {quoted} FROM "{name}" ORDER BY rowid'))  # noqa: S608
                tables[name] = Table(name, columns, rows)
        return tables

    def apply(self, mutation: Mutation, tables: dict[str, Table]) -> None:
        """``mutation`` with plain ``sqlite3`` (foreign keys off, as it starts)."""
        conn = sqlite3.connect(self.db, isolation_level=None)
        try:
            conn.execute("BEGIN")
            try:
                for sql, params in mutation.statements(tables[mutation.table], "?", "rowid"):
                    conn.execute(sql, params)
            except sqlite3.IntegrityError as exc:
                conn.execute("ROLLBACK")
                raise NotApplicable(str(exc)) from None
            conn.execute("COMMIT")
        finally:
            conn.close()


class PostgresStore:
    """A PostgreSQL database re-created from a template database for every example."""

    backend = "postgresql"

    def __init__(self, server_url: str, name: str):
        self.server_url = server_url  # any database of the server, for CREATE / DROP DATABASE
        self.name = name
        self.url = server_url.rsplit("/", 1)[0] + f"/{name}"
        self.template = f"{name}_pristine"

    def _admin(self, *statements: str) -> None:
        from sqlalchemy import create_engine, text

        engine = create_engine(self.server_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                for statement in statements:
                    conn.execute(text(statement))
        finally:
            engine.dispose()

    def init_args(self) -> tuple[str, ...]:
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)',
                    f'CREATE DATABASE "{self.name}"')
        return ("--ledger", self.url)

    def freeze(self) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)',
                    f'CREATE DATABASE "{self.template}" TEMPLATE "{self.name}"')

    def restore(self) -> None:
        self._admin(f'DROP DATABASE "{self.name}" WITH (FORCE)',
                    f'CREATE DATABASE "{self.name}" TEMPLATE "{self.template}"')

    def snapshot(self) -> dict[str, Table]:
        """Every ledger table (from ``information_schema``) with its rows; a row's "rowid" is
        its position in primary-key order (PostgreSQL has no stable row id)."""
        from sqlalchemy import create_engine, text

        engine = create_engine(self.url)
        tables: dict[str, Table] = {}
        try:
            with engine.connect() as conn:
                names = [r[0] for r in conn.execute(text(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = "
                    "'public' AND table_type = 'BASE TABLE' ORDER BY table_name"))]
                for name in names:
                    if name in EXCLUDED_TABLES:
                        continue
                    keys = [r[0] for r in conn.execute(text(
                        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = "
                        "i.indrelid AND a.attnum = ANY(i.indkey) WHERE i.indrelid = "
                        "CAST(:t AS regclass) AND i.indisprimary ORDER BY a.attnum"),
                        {"t": f'"{name}"'})]
                    columns = tuple(
                        Column(r[0], str(r[1]).upper(), r[2] == "NO",
                               keys.index(r[0]) + 1 if r[0] in keys else 0)
                        for r in conn.execute(text(
                            "SELECT column_name, data_type, is_nullable FROM "
                            "information_schema.columns WHERE table_schema = 'public' AND "
                            "table_name = :t ORDER BY ordinal_position"), {"t": name}))
                    quoted = ", ".join(f'"{c.name}"' for c in columns)
                    order = ", ".join(f'"{k}"' for k in keys)
                    rows = tuple(
                        (i + 1, dict(zip((c.name for c in columns), r, strict=True)))
                        for i, r in enumerate(conn.execute(text(
                            f'SELECT {quoted} FROM "{name}" ORDER BY {order}'))))  # noqa: S608
                    tables[name] = Table(name, columns, rows)
        finally:
            engine.dispose()
        return tables

    def apply(self, mutation: Mutation, tables: dict[str, Table]) -> None:
        """``mutation`` in one transaction, the row named by its primary key; a value the
        column's type refuses (PostgreSQL is strictly typed) makes it not applicable."""
        from sqlalchemy import create_engine, text
        from sqlalchemy.exc import DBAPIError

        table = tables[mutation.table]
        engine = create_engine(self.url)
        try:
            with engine.begin() as conn:
                for sql, params in mutation.statements(table, "named", "pk"):
                    conn.execute(text(sql), params)
        except DBAPIError as exc:
            raise NotApplicable(str(exc.orig).splitlines()[0]) from None
        finally:
            engine.dispose()


Store = SqliteStore | PostgresStore


@dataclass(frozen=True)
class FixtureLedger:
    root: Path  # the workspace folder (holds .custody/ and the artifact files)
    store: Store  # the ledger database, restorable to the pristine state
    files: dict[str, Path]  # ref -> the file or directory recorded as it
    token: str  # a reader token of the service

    @property
    def refs(self) -> list[str]:
        return sorted(self.files)

    def restore(self) -> None:
        self.store.restore()


def _expect(run: Run, code: int = 0) -> Run:
    assert run.code == code, run.text()
    return run


def build_ledger(root: Path, postgres: tuple[str, str] | None = None) -> FixtureLedger:
    """The fixture ledger (see the module docstring) in ``root``: SQLite, or on PostgreSQL
    with ``postgres`` = (a server URL, the name of the database to use)."""
    from custody.provenance.ledger.store import Ledger
    from custody.provenance.service.tokens import create_token
    from custody.provenance.workspace import load_workspace

    root.mkdir(parents=True, exist_ok=True)
    store: Store = PostgresStore(*postgres) if postgres else SqliteStore(
        root / ".custody" / "ledger.db")
    _expect(run_cli("init", *store.init_args(), cwd=root))
    files = {
        "train@1": root / "train-v1.parquet",
        "train@2": root / "train-v2.parquet",
        "clf@1": root / "clf.pkl",
        "clf-small@1": root / "clf-small",
        "evil@1": root / "evil.pkl",
    }
    shutil.copyfile(SAMPLES / "dataset-v1.parquet", files["train@1"])
    shutil.copyfile(SAMPLES / "dataset-v2-poisoned.parquet", files["train@2"])
    shutil.copyfile(SAMPLES / "model.pkl", files["clf@1"])
    shutil.copyfile(SAMPLES / "malicious.pkl", files["evil@1"])
    small = files["clf-small@1"]
    (small / "weights").mkdir(parents=True)
    (small / "weights" / "part-0.bin").write_bytes(b"\x00small weights" * 32)
    (small / "weights" / "part-1.bin").write_bytes(b"\x01more weights" * 16)
    (small / "config.json").write_text('{"layers": 1, "distilled": true}\n', encoding="utf-8")
    steps: list[tuple[str | Path, ...]] = [
        ("record", files["train@1"], "--name", "train", "--kind", "dataset"),
        ("record", files["train@2"], "--name", "train", "--kind", "dataset",
         "--baseline", "train@1", "--allow-flagged"),
        ("record", files["clf@1"], "--name", "clf", "--kind", "model", "--input", "train@1"),
        ("record", small, "--name", "clf-small", "--kind", "model", "--input", "clf@1",
         "--activity", "derived_from"),
        ("record", files["evil@1"], "--name", "evil", "--kind", "model", "--input", "train@2",
         "--allow-flagged"),
        ("revoke", "train@2", "--reason", "poisoned rows 1200-1300"),
    ]
    for step in steps:
        _expect(run_cli(*step, cwd=root))
    _expect(run_cli("audit", "verify", cwd=root))
    with Ledger.open(load_workspace(root / ".custody").ledger_url) as ledger:
        token, _ = create_token(ledger.engine, "reader", "mutation differential")
    store.freeze()
    return FixtureLedger(root, store, files, token)


# --- mutations -------------------------------------------------------------------------------


class NotApplicable(Exception):
    """The database refused the edit (a UNIQUE or primary key constraint): nothing changed."""


@dataclass(frozen=True)
class Mutation:
    kind: str  # "cell", "delete", "duplicate", "swap"
    table: str
    rowid: int
    column: str | None = None
    value: Any = None
    value_kind: str = ""  # cell: other_row, x, null, flip, blob, bad_text
    other_rowid: int | None = None

    def describe(self) -> str:
        if self.kind == "cell":
            shown = repr(self.value)
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            return (f"{self.table}.{self.column} of row {self.rowid} set to {shown} "
                    f"({self.value_kind})")
        if self.kind == "swap":
            return f"{self.table}.{self.column} swapped between rows {self.rowid} and " \
                f"{self.other_rowid}"
        return f"{self.table} row {self.rowid} {self.kind}d"

    @property
    def mutation_class(self) -> str:
        """Table, column and kind of edit: what the survivors report groups by."""
        what = self.value_kind if self.kind == "cell" else self.kind
        return f"{self.table}.{self.column or '*'} {what}"

    def statements(self, table: Table, style: str, ident: str
                   ) -> Iterator[tuple[str, Any]]:
        """The SQL of this edit: ``style`` "?" (sqlite3) or "named" (SQLAlchemy ``text``);
        rows named by ``rowid`` (SQLite) or by their primary key ("pk", PostgreSQL)."""
        # S608 below: table and column names come from the database's catalogue; values are bound
        name = f'"{self.table}"'
        rows = dict(table.rows)

        def where(rowid: int, parked: Any = None) -> tuple[str, dict[str, Any]]:
            """The condition naming a row; ``parked``: its swapped column holds that now."""
            values = dict(rows[rowid])
            if parked is not None:
                values[str(self.column)] = parked
            if ident == "rowid":
                alias = [c.name for c in table.primary_key] == [self.column] and \
                    table.primary_key[0].type == "INTEGER"  # the column is the rowid itself
                return "rowid = :rowid", {"rowid": parked if alias and parked is not None
                                          else rowid}
            keys = {f"k{i}": values[c.name] for i, c in enumerate(table.primary_key)}
            return " AND ".join(f'"{c.name}" = :k{i}' for i, c in enumerate(table.primary_key)
                                ), keys

        def run(sql: str, params: dict[str, Any]) -> tuple[str, Any]:
            if style == "named":
                return sql, params
            names = re.findall(r":(\w+)", sql)
            return re.sub(r":\w+", "?", sql), tuple(params[n] for n in names)

        if self.kind == "delete":
            cond, keys = where(self.rowid)
            yield run(f"DELETE FROM {name} WHERE {cond}", keys)  # noqa: S608
        elif self.kind == "cell":
            cond, keys = where(self.rowid)
            setter = "CAST(:value AS TEXT)" if self.value_kind == "bad_text" else ":value"
            yield run(f'UPDATE {name} SET "{self.column}" = {setter} WHERE {cond}',  # noqa: S608
                      {**keys, "value": self.value})
        elif self.kind == "swap":
            assert self.column is not None and self.other_rowid is not None
            first, second = rows[self.rowid][self.column], rows[self.other_rowid][self.column]
            update = f'UPDATE {name} SET "{self.column}" = :value WHERE '  # noqa: S608
            # through a parked value, so that a UNIQUE column can be swapped; a row is found by
            # its key as it is at that moment
            park = _sentinel(first)
            for rowid, parked, value in ((self.rowid, None, park), (self.other_rowid, None, first),
                                         (self.rowid, park, second)):
                cond, keys = where(rowid, parked)
                yield run(update + cond, {**keys, "value": value})
        elif self.kind == "duplicate":
            row = dict(rows[self.rowid])
            for pk in table.primary_key[-1:]:  # a fresh key, else the copy is no insert at all
                row[pk.name] = _fresh(table, pk)
            cols = ", ".join(f'"{c}"' for c in row)
            marks = ", ".join(f":c{i}" for i in range(len(row)))
            yield run(f"INSERT INTO {name} ({cols}) VALUES ({marks})",  # noqa: S608
                      {f"c{i}": v for i, v in enumerate(row.values())})
        else:  # pragma: no cover
            raise AssertionError(self.kind)


def _sentinel(value: Any) -> Any:
    """A value of ``value``'s type that no row holds (valid on both databases)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return -987654321
    if isinstance(value, bytes):
        return b"\x00parked"
    if isinstance(value, datetime):
        return datetime(1970, 1, 1, tzinfo=UTC)
    return "~parked~"


def _fresh(table: Table, column: Column) -> Any:
    values = table.values(column.name)
    if all(isinstance(v, int) for v in values):
        return max(values, default=0) + 1
    return f"{values[0]}-copy"


_HEX = "0123456789abcdef"


def flipped(value: Any, position: int) -> Any:
    """``value`` with one character (or bit, or unit) changed at ``position``."""
    if isinstance(value, bool) or value is None:
        return 1
    if isinstance(value, datetime):  # PostgreSQL hands timestamps over typed
        return value + (timedelta(seconds=1) if position % 2 == 0 else timedelta(microseconds=1))
    if isinstance(value, int):
        return value + (1 if position % 2 == 0 else -1)
    if isinstance(value, bytes):
        if not value:
            return b"\x01"
        i = position % len(value)
        return value[:i] + bytes([value[i] ^ 0x01]) + value[i + 1:]
    text = str(value)
    if not text:
        return "a"
    i = position % len(text)
    c = text[i]
    if c in _HEX:
        new = _HEX[(_HEX.index(c) + 1) % 16]
    elif c.isdigit():
        new = str((int(c) + 1) % 10)
    else:
        new = chr(ord(c) ^ 0x01)
    return text[:i] + new + text[i + 1:]


def not_utf8(value: Any, position: int) -> bytes:
    """The bytes of ``value`` with one byte made invalid UTF-8 (``\\xff``)."""
    raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
    if not raw:
        return b"\xff"
    i = position % len(raw)
    return raw[:i] + b"\xff" + raw[i + 1:]


# --- observations ----------------------------------------------------------------------------

_NONCE = re.compile(r"nonce-[A-Za-z0-9_-]+|nonce=\"[A-Za-z0-9_-]+\"")


@dataclass
class Observations:
    answers: dict[str, str] = field(default_factory=dict)

    def add(self, key: str, value: str) -> None:
        self.answers[key] = value

    def differences(self, other: Observations) -> list[str]:
        keys = sorted(set(self.answers) | set(other.answers))
        return [k for k in keys if self.answers.get(k) != other.answers.get(k)]


LINEAGE_FORMATS = ("json", "openlineage", "cyclonedx", "prov", "dot", "table")


def observe(fx: FixtureLedger, *, full: bool = True) -> Observations:
    """Every user-visible answer about the ledger in ``fx.root`` (see the module docstring).

    ``full=False`` (PostgreSQL, where each answer costs many round trips) keeps the verdicts and
    the facts every view is made of: verify of every file, ``list``, ``lineage --json`` and
    ``bundle`` of every ref, and the service's artifacts, checkpoint, verify and admission."""
    obs = Observations()

    def cli(*args: str | Path) -> str:
        return run_cli(*args, cwd=fx.root).text()

    for ref, path in sorted(fx.files.items()):
        obs.add(f"verify {ref}", cli("verify", path, "--json"))
    obs.add("list", cli("list", "--json"))
    for ref in fx.refs:
        obs.add(f"lineage {ref}", cli("lineage", ref, "--json"))
        obs.add(f"bundle {ref}", cli("bundle", ref))
    if full:
        obs.add("list table", cli("list"))
        for ref in fx.refs:
            obs.add(f"bundle {ref} --oms", cli("bundle", ref, "--oms"))
            obs.add(f"audit prove {ref}", cli("audit", "prove", ref))
        obs.add("audit checkpoint", cli("audit", "checkpoint"))
    for key, value in [*(_lineage_formats(fx) if full else ()), *_service(fx, full=full)]:
        obs.add(key, value)
    return obs


def _lineage_formats(fx: FixtureLedger) -> Iterator[tuple[str, str]]:
    """``custody lineage REF --upstream/--downstream --format F`` for every ref and format, as
    the command computes it (its policy, the pinned ledger key) but on one open ledger: the
    graph is computed once per ref and direction, and every formatter renders it."""
    from custody._commands import render
    from custody.errors import CustodyError
    from custody.provenance.verification.lineage import lineage
    from custody.provenance.verification.policy_options import build_policy
    from custody.provenance.workspace import resolve

    with contextlib.chdir(fx.root):
        ws = resolve()
        policy = build_policy(keys=[], identity=None, identity_regexp=None, issuer=None,
                              ca_certs=[], trusted_root=None, staging=False, threshold=None,
                              workspace=ws)
        try:
            ledger = ws.open_ledger()
        except CustodyError as exc:
            yield "lineage formats", f"ledger refused: {exc.diagnostic()}"
            return
        with ledger:
            for ref in fx.refs:
                for upstream in (True, False):
                    key = f"lineage {ref} {'upstream' if upstream else 'downstream'}"
                    try:
                        graph = lineage(ledger, ref, upstream=upstream, depth=10, policy=policy,
                                        ledger_verifier=ws.ledger_verifier())
                    except CustodyError as exc:
                        yield key, f"refused: {exc.diagnostic()}"
                        continue
                    except Exception as exc:  # noqa: BLE001 - a crash is an answer too (exit 2)
                        yield key, f"crash: {type(exc).__name__}: {exc}"
                        continue
                    for fmt in LINEAGE_FORMATS:
                        yield f"{key} {fmt}", _captured(
                            lambda f=fmt, g=graph: render.lineage_render(
                                g, render.LineageFormat(f)))


def _captured(action: Callable[[], None]) -> str:
    out, err = io.BytesIO(), io.StringIO()
    stdout = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(err):
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - a crash is an answer too (exit 2)
            err.write(f"crash: {type(exc).__name__}: {exc}")
        stdout.flush()
    return out.getvalue().decode("utf-8", "replace") + "\n--- stderr\n" + err.getvalue()


def _service(fx: FixtureLedger, *, full: bool) -> Iterator[tuple[str, str]]:
    from fastapi.testclient import TestClient

    from custody.errors import CustodyError
    from custody.provenance.service.app import create_app
    from custody.provenance.service.settings import ServiceContext, Settings

    with contextlib.chdir(fx.root):
        try:
            ctx = ServiceContext.open(Settings())
        except CustodyError as exc:
            yield "service", f"does not start: {exc.diagnostic()}"
            return
        try:
            app = create_app(ctx=ctx)
            headers = {"Authorization": f"Bearer {fx.token}"}
            with TestClient(app, raise_server_exceptions=False) as client:
                for key, response in _requests(fx, client, headers, full=full):
                    yield key, f"{response.status_code}\n" + _NONCE.sub("nonce-N",
                                                                          response.text)
        finally:
            ctx.close()


def _requests(fx: FixtureLedger, client: Any, headers: dict[str, str], *, full: bool
              ) -> Iterator[tuple[str, Any]]:
    get = lambda path: client.get(path, headers=headers)  # noqa: E731
    yield "GET /v1/artifacts", get("/v1/artifacts")
    head = client.get("/v1/checkpoint", headers=headers)
    yield "GET /v1/checkpoint", head
    size = int(head.json().get("size", 0)) if head.status_code == 200 else 0
    for n in range(size + 1 if full else 0):
        yield f"GET /v1/checkpoint?size={n}", get(f"/v1/checkpoint?size={n}&format=note")
        yield f"GET /v1/proofs/consistency?from={n}", get(
            f"/v1/proofs/consistency?from={n}&to={size}")
    for i in range(size if full else 0):
        yield f"GET /v1/proofs/inclusion/{i}", get(f"/v1/proofs/inclusion/{i}")
    for ref, path in sorted(fx.files.items()):
        yield f"GET /v1/artifacts/{ref}", get(f"/v1/artifacts/{ref}")
        for direction in ("upstream", "downstream") if full else ():
            yield f"GET /v1/lineage/{ref} {direction}", get(
                f"/v1/lineage/{ref}?direction={direction}")
            yield f"GET /ui/lineage/{ref} {direction}", get(
                f"/ui/lineage/{ref}?direction={direction}")
        yield f"POST /v1/verify {ref}", client.post(
            "/v1/verify", headers=headers, json={"digest": _digest_of(path)})
        review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                  "request": {"uid": f"uid-{ref}", "operation": "CREATE",
                              "kind": {"group": "", "version": "v1", "kind": "Pod"},
                              "object": {"apiVersion": "v1", "kind": "Pod",
                                         "metadata": {"name": "p", "annotations": {
                                             "custody.dev/artifact": ref}}}}}
        yield f"POST /v1/admission/kubernetes {ref}", client.post(
            "/v1/admission/kubernetes", headers=headers, content=json.dumps(review))


_DIGESTS: dict[Path, str] = {}


def _digest_of(path: Path) -> str:
    if path not in _DIGESTS:
        from custody.provenance.hashing.files import hash_path

        _DIGESTS[path] = hash_path(path).ref
    return _DIGESTS[path]


def audit(fx: FixtureLedger) -> Run:
    return run_cli("audit", "verify", "--json", cwd=fx.root)


# --- the exhaustive survey (opt-in: CUSTODY_MUTATION_SURVEY=1) ---------------------------------


def every_mutation(tables: dict[str, Table]) -> Iterator[Mutation]:
    """Every kind of edit on a few rows of every table: each value kind in each column, the row
    deleted and duplicated, and each column swapped with the next row that differs."""
    for table in tables.values():
        rows = table.rows if len(table.rows) <= 4 else (
            table.rows[0], table.rows[1], table.rows[len(table.rows) // 2], table.rows[-1])
        for rowid, row in rows:
            yield Mutation("delete", table.name, rowid)
            yield Mutation("duplicate", table.name, rowid)
            for column in table.columns:
                current = row[column.name]
                others = [v for v in dict.fromkeys(table.values(column.name)) if v != current]
                # flipped first, middle and last (a timestamp's microseconds, a hash's end)
                edits: list[tuple[str, Any]] = [
                    ("x", "x"), ("flip", flipped(current, 0)), ("flip", flipped(current, 1)),
                    ("flip", flipped(current, len(str(current)) // 2)),
                    ("flip", flipped(current, -1)), ("blob", not_utf8(current, 5)),
                    ("bad_text", not_utf8(current, 5))]
                if others:
                    edits.append(("other_row", others[0]))
                if not column.notnull:
                    edits.append(("null", None))
                seen: list[Any] = []
                for kind, value in edits:
                    if (value == current and type(value) is type(current)) or (
                            (kind, value) in seen):
                        continue
                    seen.append((kind, value))
                    yield Mutation("cell", table.name, rowid, column.name, value, kind)
        for column in table.columns:
            pair = next(((a, b) for (a, va), (b, vb) in itertools.pairwise(table.rows)
                         if va[column.name] != vb[column.name]), None)
            if pair is not None:
                yield Mutation("swap", table.name, pair[0], column.name, other_rowid=pair[1])


@dataclass(frozen=True)
class Outcome:
    mutation: Mutation
    status: str  # refused, unchanged, not applicable, audit crashed, SURVIVED
    detail: str = ""  # the rule, the answers that changed, or audit's output


def judge(fx: FixtureLedger, tables: dict[str, Table], baseline: Observations,
          mutation: Mutation, *, full: bool = True) -> Outcome:
    """One mutation on a fresh copy of the pristine ledger, and what came of it."""
    fx.restore()
    try:
        fx.store.apply(mutation, tables)
    except NotApplicable as exc:
        return Outcome(mutation, "not applicable", str(exc))
    result = audit(fx)
    if result.code != 0 or "Traceback" in result.err:
        try:
            rule = json.loads(result.out).get("rule") if result.code == 1 else None
        except ValueError:
            rule = None
        if rule and "Traceback" not in result.err:
            return Outcome(mutation, "refused", str(rule))
        return Outcome(mutation, "audit crashed", _crash_summary(result))
    after = observe(fx, full=full)
    changed = baseline.differences(after)
    if not changed:
        return Outcome(mutation, "unchanged")
    first = changed[0]
    where = _first_difference(baseline.answers.get(first, ""), after.answers.get(first, ""))
    return Outcome(mutation, "SURVIVED",
                   f"{', '.join(changed)}; first difference, in {first}: {where}")


def _first_difference(before: str, after: str, context: int = 70) -> str:
    """The first place two answers differ, with some text around it."""
    at = next((i for i, (a, b) in enumerate(zip(before, after, strict=False)) if a != b),
              min(len(before), len(after)))
    start = max(0, at - context)
    return (f"was {before[start:at + context]!r}, now {after[start:at + context]!r}")


def _crash_summary(result: Run) -> str:
    """Where a crashed command failed: its innermost Custody frame and the exception."""
    lines = result.err.splitlines()
    frames = [line.strip() for line in lines if line.strip().startswith("File ")
              and str(REPO) in line and "/tests/" not in line]
    errors = [line for line in lines if line and not line.startswith((" ", "Traceback"))
              and ("Error" in line or "Exception" in line)]
    if not frames and not errors:
        return result.text()[-600:]
    return f"exit {result.code}: {errors[-1] if errors else ''} at {frames[-1] if frames else ''}"


def survey_report(outcomes: list[Outcome]) -> str:
    """Survivors and audit crashes grouped by mutation class (table.column kind of edit)."""
    groups: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        if outcome.status in ("SURVIVED", "audit crashed"):
            groups.setdefault(f"{outcome.status}: {outcome.mutation.mutation_class}",
                              []).append(outcome)
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    lines = [f"{len(outcomes)} mutations: {counts}"]
    for name, items in sorted(groups.items()):
        first = items[0]
        detail = re.sub(r"\s+", " ", first.detail)[:700]
        lines.append(f"{name} ({len(items)}x), e.g. {first.mutation.describe()}: {detail}")
    return "\n".join(lines)
