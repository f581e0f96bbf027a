"""The append-only ledger: record artifact versions, look them up, walk lineage edges.

There is deliberately no update or delete path here. Every append writes one
:class:`LedgerEntry` (gapless index, canonical payload, RFC 6962 leaf hash) and the index rows
derived from it, in one transaction that holds the append lock.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, LargeBinary, and_, cast, func, not_, or_
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlmodel import Session, col, select

from custody.errors import (
    KeyMaterialError,
    LedgerError,
    NotFoundError,
    UsageError,
    VerificationError,
)
from custody.provenance.hashing.manifest import Manifest
from custody.provenance.ledger import append
from custody.provenance.ledger import tree as log
from custody.provenance.ledger.append import InputLink, SignedRecord
from custody.provenance.ledger.engine import check_schema, make_engine, redact, write_transaction
from custody.provenance.ledger.graph import NO_LIMIT, EdgeRow, walk_edges
from custody.provenance.ledger.models import (
    Artifact,
    ArtifactVersion,
    ArtifactVersionPublic,
    CheckpointRow,
    LedgerEntry,
    LineageEdge,
    ManifestFile,
    SignedStatement,
    utc_now,
)
from custody.provenance.log.checkpoint import NoteSigner, NoteVerifier
from custody.signing.statement import Statement

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")
_DIGEST_RE = re.compile(r"^(sha256(?:-manifest-v1)?):([0-9a-f]{64})$")


def check_name(name: str) -> str:
    if not _NAME_RE.match(name) or "@" in name:
        raise UsageError(
            f"invalid artifact name {name!r}",
            hint="use letters, digits and . _ / - (up to 200 characters), not starting with "
            "punctuation",
        )
    return name


ENV_LEDGER_VKEY = "CUSTODY_LEDGER_VKEY"  # the pinned checkpoint key (also read by workspace.py)
UNPINNED_HINT = (
    "pin the ledger's checkpoint verifier key (NAME+KEYID+BASE64, the `ledger_vkey` line of the "
    ".custody/config.toml of the workspace that created this ledger; never copy it from the "
    "database): pass --ledger-vkey VKEY, or set CUSTODY_LEDGER_VKEY=VKEY, or run inside a "
    "workspace whose config.toml says ledger_vkey = \"VKEY\"")


@dataclass(frozen=True)
class PinnedKey:
    """The checkpoint verifier key a verdict is reached with, and where it was pinned."""

    verifier: NoteVerifier
    source: str  # for messages: "--ledger-vkey", "$CUSTODY_LEDGER_VKEY", "the workspace config"

    @property
    def label(self) -> str:
        return f"{self.verifier.name}+{self.verifier.key_id:08x}"


@dataclass(frozen=True)
class SignedRevocation:
    """A revocation as its ledger entry says it (not as the ``revocations`` table says it)."""

    entry_idx: int
    name: str
    version: int
    reason: str
    payload: bytes  # the entry's exact bytes: their leaf hash is what inclusion proofs prove

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class StoredRecord:
    version: ArtifactVersionPublic
    statement: bytes
    bundle: str
    scan_report: str
    oms_bundle: str | None = None


class Ledger:
    def __init__(self, engine: Engine, url: str, signer: NoteSigner | None = None,
                 pinned: PinnedKey | None = None):
        self.engine = engine
        self.url = url
        self.signer = signer
        self.pinned = pinned  # the checkpoint key pinned by whoever opened it (a workspace)
        self._signer_checked = False

    @classmethod
    def open(cls, url: str, *, signer: NoteSigner | None = None,
             pinned: PinnedKey | None = None) -> Ledger:
        """Open an existing ledger; ``signer`` (the ledger key) is needed only to append;
        ``pinned`` is the checkpoint key its verdicts are reached with (see
        :meth:`checkpoint_key`)."""
        from custody.provenance.ledger.migrate import HEAD, current_revision

        engine = make_engine(url, must_exist=True)
        check_schema(engine, url)
        current, head = current_revision(engine), HEAD
        if current != head:
            engine.dispose()
            raise LedgerError(
                f"ledger {redact(url)} has schema revision {current}, this Custody needs {head}",
                hint="run `custody migrate` (after a backup) to upgrade it",
            )
        return cls(engine, url, signer, pinned)

    @classmethod
    def create(cls, url: str, *, signer: NoteSigner) -> Ledger:
        """Create the schema (Alembic migrations) and sign the empty tree's checkpoint."""
        from custody.provenance.ledger.migrate import current_revision, upgrade

        engine = make_engine(url, must_exist=False)
        try:
            if current_revision(engine) is not None:
                raise LedgerError(
                    f"{redact(url)} already holds a Custody ledger",
                    hint="point the workspace at it with --ledger instead of creating it again",
                )
            upgrade(engine)
            with write_transaction(engine) as conn:
                log.initialise(conn, signer, utc_now())
        except (DBAPIError, SQLAlchemyError) as exc:
            raise LedgerError(f"cannot create ledger at {redact(url)}: {exc}") from None
        return cls(engine, url, signer)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def display_url(self) -> str:
        return redact(self.url)

    # --- appending -------------------------------------------------------------------------

    def append_version(
        self,
        *,
        name: str,
        kind: str,
        manifest: Manifest,
        inputs: Sequence[InputLink],
        build: Callable[[int], SignedRecord],
    ) -> ArtifactVersionPublic:
        """Append the next version of ``name``; ``build(version)`` signs it under the lock."""
        check_name(name)
        signer = self._signer()
        with write_transaction(self.engine) as conn:
            return append.append_version(
                conn, name=name, kind=kind, manifest=manifest, inputs=inputs,
                build=build, signer=signer, now=utc_now(),
            )

    def append_revocation(self, target: ArtifactVersionPublic, *, reason: str, bundle: str,
                          signer: str, signer_key: str | None) -> int:
        note_signer = self._signer()
        with write_transaction(self.engine) as conn:
            return append.append_revocation(
                conn, target, reason=reason, bundle=bundle,
                signer_identity=signer, signer_key=signer_key, signer=note_signer,
                now=utc_now())

    def revocation_entries(self, versions: Sequence[ArtifactVersionPublic], *,
                           below: int | None = None) -> dict[int, SignedRevocation]:
        """The revocation of each of these versions that has one, read from the signed log's
        entries (one query), never from the ``revocations`` table: its rows can be deleted or
        pointed elsewhere. ``below`` (a checkpoint size) leaves out entries it does not cover.

        A revocation entry comes after the version it revokes, so only entries after the oldest
        of ``versions`` are read. The entries are not proved here: a verdict proves each one it
        uses under the pinned checkpoint (``InclusionChecker.check_payload``)."""
        if not versions:
            return {}
        wanted = {(v.name, v.version): v.id for v in versions}
        lowest = min(v.entry_idx for v in versions)
        with self._read() as session:
            payload = col(LedgerEntry.payload)
            raw = session.get_bind().dialect.name == "sqlite"  # text that is not UTF-8 stays bytes
            query = (select(col(LedgerEntry.idx), cast(payload, LargeBinary) if raw else payload)
                     .where(_maybe_revocation(), col(LedgerEntry.idx) > lowest))
            if below is not None:
                query = query.where(col(LedgerEntry.idx) < below)
            try:
                rows = session.exec(query.order_by(col(LedgerEntry.idx))).all()
            except (DBAPIError, SQLAlchemyError) as exc:
                raise LedgerError(f"ledger query failed: {exc}") from None
        found: dict[int, SignedRevocation] = {}
        for idx, body in rows:
            revocation = _parse_revocation(int(idx), body)
            if revocation is None:
                continue
            vid = wanted.get((revocation.name, revocation.version))
            if vid is not None and vid not in found:
                found[vid] = revocation
        return found

    def checkpoint_key(self, given: NoteVerifier | None = None, *,
                       source: str = "the key given") -> PinnedKey | None:
        """The pinned checkpoint verifier key, never the one stored in the database: ``given``
        (``--ledger-vkey``, a library argument), else ``$CUSTODY_LEDGER_VKEY``, else the key
        pinned by whoever opened the ledger (the workspace's ``ledger_vkey``), else the verifier
        of the ledger key held to append; None when nothing pins it."""
        if given is not None:
            return PinnedKey(given, source)
        env = os.environ.get(ENV_LEDGER_VKEY, "").strip()
        if env:
            try:
                return PinnedKey(NoteVerifier.from_vkey(env), f"${ENV_LEDGER_VKEY}")
            except KeyMaterialError as exc:
                raise KeyMaterialError(
                    f"${ENV_LEDGER_VKEY} is not a ledger verifier key: {exc.message}",
                    hint="a verifier key reads NAME+KEYID+BASE64: copy the ledger_vkey line of "
                    "the .custody/config.toml of the workspace that created the ledger",
                    subject=f"${ENV_LEDGER_VKEY}") from None
        if self.pinned is not None:
            return self.pinned
        if self.signer is not None:
            return PinnedKey(self.signer.verifier(), "the ledger key this workspace appends with")
        return None

    def stored_key_differs(self, pinned: PinnedKey, stored: object = None) -> str | None:
        """Why the checkpoint key the database names (``stored``, else read from it) is not the
        pinned one, or None."""
        if stored is None:
            stored = self.meta().get(log.META_VKEY, "")
        if not isinstance(stored, str):  # a blob where the key should be
            stored = repr(stored)[:80]
        if stored == pinned.verifier.vkey:
            return None
        name, _, rest = stored.partition("+")
        label = f"{name}+{rest.partition('+')[0]}" if rest else repr(stored[:80])
        return (f"the ledger database {self.display_url} names the checkpoint key {label}, but "
                f"the key pinned by {pinned.source} is {pinned.label}")

    def _signer(self) -> NoteSigner:
        if self.signer is None:
            raise UsageError(
                f"appending to the ledger {self.display_url} needs its checkpoint key, and this "
                "workspace has none (it joined an existing ledger read-only)",
                hint="copy keys/ledger.skey from the workspace that created this ledger (keep it "
                "mode 600) and name it in .custody/config.toml: ledger_key = \"/path/to/"
                "ledger.skey\" (a new workspace: `custody init --ledger URL --ledger-key FILE`)",
            )
        if not self._signer_checked:
            with self._read() as session:
                log.check_signer(session, self.signer)
            self._signer_checked = True
        return self.signer

    # --- the log ---------------------------------------------------------------------------

    def head(self) -> CheckpointRow:
        with self._read() as session:
            return log.latest_checkpoint(session)

    def checkpoint(self, size: int) -> CheckpointRow:
        with self._read() as session:
            return log.checkpoint_at(session, size)

    def meta(self) -> dict[str, str]:
        with self._read() as session:
            return log.read_meta(session)

    def entry(self, idx: int) -> LedgerEntry:
        with self._read() as session:
            row = session.get(LedgerEntry, idx)
        if row is None:
            raise NotFoundError(f"the ledger has no entry {idx}")
        return row

    def entry_bytes(self, idx: int) -> bytes:
        """Entry ``idx``'s payload as stored, as bytes (SQLite may hold text that is not UTF-8:
        the caller refuses it, the database driver would crash on it)."""
        with self._read() as session:
            raw = session.get_bind().dialect.name == "sqlite"
            payload = cast(col(LedgerEntry.payload), LargeBinary) if raw else col(
                LedgerEntry.payload)
            body = session.exec(select(payload).where(col(LedgerEntry.idx) == idx)).first()
        if body is None:
            raise NotFoundError(f"the ledger has no entry {idx}",
                                hint="run `custody audit verify`", subject=f"ledger entry {idx}")
        return _as_bytes(body)

    def prove_inclusion(self, idx: int, size: int) -> list[bytes]:
        with self._read() as session:
            return log.prove_inclusion(session, idx, size)

    def prove_consistency(self, size1: int, size2: int) -> list[bytes]:
        with self._read() as session:
            return log.prove_consistency(session, size1, size2)

    # --- lookups ---------------------------------------------------------------------------

    def resolve(self, ref: str, *, as_of: int | None = None) -> ArtifactVersionPublic:
        """``NAME@VERSION``, ``NAME`` (latest) or ``sha256:HEX`` → one recorded version.

        ``sha256:HEX`` also finds a directory by its root digest (``sha256-manifest-v1:HEX``
        is the explicit form).

        With ``as_of`` (a checkpoint size), only versions recorded before it exist.
        """
        ref = ref.strip()
        digest = _DIGEST_RE.match(ref)
        limit = col(ArtifactVersion.entry_idx) < (as_of if as_of is not None else NO_LIMIT)
        with self._read() as session:
            if digest:
                rows = self._versions(
                    session, and_(col(ArtifactVersion.digest) == digest.group(2), limit))
                # ``sha256:HEX`` names a file's digest or a directory's root digest (the
                # SHA-256 of its canonical manifest, which is what its statement's subject says)
                algorithms = ({"sha256", "sha256-manifest-v1"} if digest.group(1) == "sha256"
                              else {digest.group(1)})
                rows = [r for r in rows if r.digest_algorithm in algorithms]
                if not rows:
                    raise NotFoundError(
                        f"no recorded artifact has digest {ref}", subject=ref,
                        hint="`custody hash PATH` prints a file's or directory's digest; "
                        "`custody list` lists the recorded versions")
                return rows[-1]
            name, sep, number = ref.partition("@")
            if sep and not number.isdigit():
                raise UsageError(
                    f"invalid reference {ref!r}",
                    hint="use NAME, NAME@VERSION (a number) or sha256:HEX",
                )
            check_name(name)
            cond = and_(col(Artifact.name) == name, limit)
            if sep:
                cond = and_(cond, col(ArtifactVersion.version) == int(number))
            rows = self._versions(session, cond)
            if not rows:
                what = f"{name} has no version {number}" if sep else f"no artifact named {name}"
                what += f" as of checkpoint {as_of}" if as_of is not None else ""
                raise NotFoundError(
                    f"{what} in the ledger", hint="list the recorded versions with `custody list`",
                    subject=ref,
                )
            return rows[-1]

    def find_by_digest(self, algorithm: str, digest: str) -> list[ArtifactVersionPublic]:
        with self._read() as session:
            rows = self._versions(session, ArtifactVersion.digest == digest)
        return [r for r in rows if r.digest_algorithm == algorithm]

    def versions_sharing_files(self, sha256s: Iterable[str]) -> list[ArtifactVersionPublic]:
        """Versions holding any of these file digests, most overlapping first (diagnostics)."""
        wanted = list(set(sha256s))[:500]
        with self._read() as session:
            hits = session.exec(
                select(ManifestFile.version_id, func.count())
                .where(col(ManifestFile.sha256).in_(wanted))
                .group_by(col(ManifestFile.version_id))
            ).all()
            ranked = sorted(hits, key=lambda h: (-h[1], -h[0]))[:5]
            ids = [vid for vid, _ in ranked]
            rows = self._versions(session, col(ArtifactVersion.id).in_(ids)) if ids else []
        order = {vid: i for i, vid in enumerate(ids)}
        return sorted(rows, key=lambda r: order.get(r.id, 0))

    def list_versions(self, name: str | None = None) -> list[ArtifactVersionPublic]:
        with self._read() as session:
            cond = Artifact.name == name if name else None
            return self._versions(session, cond)

    def stored_record(self, version: ArtifactVersionPublic) -> StoredRecord:
        with self._read() as session:
            row = session.exec(
                select(SignedStatement).where(SignedStatement.version_id == version.id)
            ).first()
        if row is None:
            raise LedgerError(
                f"{version.ref} has no stored statement: the ledger is incomplete",
                hint="run `custody audit verify`",
                subject=version.ref,
            )
        return StoredRecord(version, row.statement.encode("utf-8"), row.bundle, row.scan_report,
                            row.oms_bundle)

    def scan_report(self, version: ArtifactVersionPublic) -> dict[str, Any]:
        """The scan report shown for ``version``, from its log entry (never from the
        ``signed_statements`` copy): the full report the entry keeps, else (an entry from before
        reports were kept in the log) the signed statement's summary, without findings."""
        try:
            entry = json.loads(self.entry_bytes(version.entry_idx))
            report = entry.get("scan_report") if isinstance(entry, dict) else None
            if isinstance(report, dict):
                return report
            summary = Statement.from_bytes(self.stored_record(version).statement
                                           ).custody_predicate().get("scan")
        except (ValueError, TypeError, VerificationError) as exc:
            raise LedgerError(f"the ledger entry of {version.ref} is unreadable ({exc})",
                              hint="run `custody audit verify`", subject=version.ref) from None
        return {**summary, "findings": []} if isinstance(summary, dict) else {"findings": []}

    def edges(
        self, version_ids: Sequence[int], *, upstream: bool
    ) -> list[tuple[LineageEdge, ArtifactVersionPublic]]:
        """Edges one hop from ``version_ids``, with the version at the other end."""
        if not version_ids:
            return []
        here = col(LineageEdge.output_version_id if upstream else LineageEdge.input_version_id)

        def there(edge: LineageEdge) -> int:
            return edge.input_version_id if upstream else edge.output_version_id

        with self._read() as session:
            edges = session.exec(
                select(LineageEdge).where(here.in_(list(version_ids)))
                .order_by(col(LineageEdge.id))
            ).all()
            other_ids = sorted({there(e) for e in edges})
            others = {
                v.id: v
                for v in self._versions(session, col(ArtifactVersion.id).in_(other_ids))
            } if other_ids else {}
        return [(e, others[there(e)]) for e in edges]

    def walk(self, root: ArtifactVersionPublic, *, upstream: bool, depth: int,
             as_of: int | None = None) -> tuple[list[EdgeRow], dict[int, ArtifactVersionPublic]]:
        """Edges within ``depth`` hops (recursive CTE) and every version they touch."""
        with self._read() as session:
            rows = walk_edges(session, root.id, upstream=upstream, depth=depth, as_of=as_of)
            ids = sorted({r.input_id for r in rows} | {r.output_id for r in rows} | {root.id})
            versions = {v.id: v for v in self._versions(session, col(ArtifactVersion.id)
                                                        .in_(ids))}
        return rows, versions

    def entry_count(self) -> int:
        with self._read() as session:
            return int(session.exec(select(func.count()).select_from(LedgerEntry)).one())

    # --- internals -------------------------------------------------------------------------

    def _read(self) -> Session:
        return Session(self.engine)

    @staticmethod
    def _versions(session: Session, cond: Any) -> list[ArtifactVersionPublic]:
        query = select(ArtifactVersion, Artifact).join(
            Artifact, col(Artifact.id) == col(ArtifactVersion.artifact_id)
        )
        if cond is not None:
            query = query.where(cond)
        query = query.order_by(col(ArtifactVersion.artifact_id), col(ArtifactVersion.version))
        try:
            rows = session.exec(query).all()
        except (DBAPIError, SQLAlchemyError) as exc:
            raise LedgerError(f"ledger query failed: {exc}") from None
        return [_public(v, a) for v, a in rows]


def _maybe_revocation() -> Any:
    """Entries that may be revocations, found without reading every payload: every entry
    except those typed ``artifact_version`` or ``lineage_edge`` *and* indexed as one (a version
    or an edge row names it). Retyping a revocation entry does not hide it (it has no such row);
    hiding one takes a forged index row too, which the audit names like the retyping."""
    version = select(col(ArtifactVersion.id)).where(
        col(ArtifactVersion.entry_idx) == col(LedgerEntry.idx)).exists()
    edge = select(col(LineageEdge.id)).where(
        col(LineageEdge.entry_idx) == col(LedgerEntry.idx)).exists()
    return not_(or_(and_(col(LedgerEntry.entry_type) == "artifact_version", version),
                    and_(col(LedgerEntry.entry_type) == "lineage_edge", edge)))


def _as_bytes(body: Any) -> bytes:
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    return str(body).encode("utf-8")


def _parse_revocation(idx: int, body: Any) -> SignedRevocation | None:
    """The revocation an entry's payload states; None if the payload is another type (its
    ``entry_type`` column lies: the audit names it). Refuses a payload it cannot read: that
    could be a revocation, and a revocation must never be lost to a parse error."""
    data = _as_bytes(body)
    try:
        entry = json.loads(data.decode("utf-8"))
        if not isinstance(entry, dict):
            raise TypeError("not a JSON object")
        if entry.get("type") != "revocation":
            return None
        target = entry["target"]
        return SignedRevocation(idx, str(target["name"]), int(target["version"]),
                                str(entry["reason"]), data)
    except (ValueError, KeyError, TypeError) as exc:
        raise VerificationError(
            f"ledger_entries row {idx} (a revocation entry) is unreadable ({type(exc).__name__}):"
            " the ledger database was edited", rule="ledger.inconsistent",
            hint="run `custody audit verify`", subject=f"ledger entry {idx}") from None


def _row_id(value: int | None) -> int:
    if value is None:  # pragma: no cover - the database assigns ids on flush
        raise LedgerError("the database did not assign a row id")
    return value


def _public(row: ArtifactVersion, artifact: Artifact) -> ArtifactVersionPublic:
    return ArtifactVersionPublic.model_validate(
        {**row.model_dump(), "name": artifact.name, "kind": artifact.kind}
    )
