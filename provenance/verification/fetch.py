"""Fetch verified bytes: the KServe storage initializer (``custody fetch --verify SRC DEST``).

What the predictor loads must be exactly what was verified, so nothing is read twice:

1. SRC (a local path, ``file://``, or an fsspec URI such as ``s3://``, ``gs://``, ``memory://``)
   is listed: every object with its size and identity (version id, ETag, generation, or for a
   local file its inode and change time);
2. each object is downloaded into a private staging directory beside DEST (mode 0700; inside
   DEST when DEST is a mount point, as KServe's ``/mnt/models`` is) and hashed while it is
   written, in one read;
3. the staged bytes are verified as ``custody verify`` verifies a path: the record found by
   their digest, its signature under the policy, inclusion under the pinned ledger key, the
   scan of the staged copy, revocations and the whole upstream chain;
4. only then are the staged files moved into DEST (``rename``, on the same file system). On any
   refusal or error the staging directory is removed and DEST keeps what it had (nothing).

The same listing and hashing serve the admission webhook (:func:`hash_source`), which keys its
cache by the listing (location + each object's identity + size) and re-lists after hashing, so
an object replaced while it was being read is never cached under the identity it had before.

Object stores are listed and read by :mod:`custody.provenance.hashing.objects` (reads pinned
to the listed version, re-listed afterwards; credentials from each store's usual chain, never
shown). Local paths and ``file://`` are read here, with an identity that includes the inode and
change time: a file rewritten in place and given back its old modification time still differs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import unquote, urlsplit

from custody.errors import ArtifactError, UsageError, VerificationError
from custody.provenance.hashing.files import default_workers, iter_files, sha256_file
from custody.provenance.hashing.locations import (
    Locations,
    ObjectIdentity,
    ObjectLocation,
    is_uri,
    redact_uri,
)
from custody.provenance.hashing.manifest import FileEntry, Manifest
from custody.provenance.ledger.store import Ledger
from custody.provenance.log.checkpoint import NoteVerifier
from custody.provenance.policy.core import Policy
from custody.provenance.verification.attestation import parse_claims
from custody.provenance.verification.verify import VerificationReport, verify_manifest
from custody.signing.statement import Statement

STAGING_PREFIX = ".custody-fetch-"

Sink = Callable[[memoryview], object]


@dataclass(frozen=True)
class StoredObject:
    """One object of a source: where it is, and which stored version of it (its identity)."""

    relpath: str
    location: str  # its canonical URI, redacted (file:///abs/path, s3://bucket/key)
    identity: ObjectIdentity
    local: tuple[str, ...] = ()  # a local file's device, inode and change time (cache key only)

    @property
    def size(self) -> int:
        return int(self.identity.size)

    def key(self) -> tuple[Any, ...]:
        return (self.relpath, self.location, tuple(sorted(self.identity.to_json().items())),
                self.local)

    def to_json(self) -> dict[str, Any]:
        return ObjectLocation(self.relpath, self.location, self.identity).to_json()


@dataclass(frozen=True)
class Listing:
    """What a source holds right now, without reading the bytes."""

    location: str  # the canonical URI of the source itself
    name: str  # its last path segment
    is_directory: bool
    objects: tuple[StoredObject, ...]

    def key(self) -> tuple[Any, ...]:
        """Changes whenever any object is replaced, added, removed or resized (cache key)."""
        return (self.location, self.is_directory, tuple(o.key() for o in self.objects))

    @property
    def identified(self) -> bool:
        """Whether every object carries more than a size (else a change may go unseen)."""
        return all(o.local or len(o.identity.to_json()) > 1 for o in self.objects)

    def locations(self) -> Locations:
        return Locations(self.location, tuple(
            ObjectLocation(o.relpath, o.location, o.identity) for o in self.objects))

    def manifest(self, digests: dict[str, str]) -> Manifest:
        entries = [FileEntry(o.relpath, o.size, digests[o.relpath]) for o in self.objects]
        if not self.is_directory:
            return Manifest.for_file(self.name, entries[0])
        return Manifest.for_directory(self.name, entries)


class Source(Protocol):
    display: str

    def listing(self) -> Listing:
        """The objects as listed now, without reading them."""
        ...

    def hash(self, workers: int | None) -> tuple[Listing, Manifest]:
        """Read and hash every object; refuse if the listing changed meanwhile."""
        ...

    def download(self, into: Path, workers: int | None) -> tuple[Listing, Manifest, Path]:
        """Hash while copying into ``into``; the copy (file or directory) is returned."""
        ...


@dataclass(frozen=True)
class FetchReport:
    source: str
    dest: str
    listing: Listing
    report: VerificationReport

    def to_json(self) -> dict[str, Any]:
        return {"ok": True, "source": self.source, "dest": self.dest,
                "objects": [o.to_json() for o in self.listing.objects],
                **self.report.to_json()}


# --- sources -------------------------------------------------------------------------------


def open_source(src: str | Path) -> Source:
    """The source named by a local path, a ``file://`` URI or an object-store URI."""
    text = str(src)
    if not is_uri(text):
        return _LocalSource(Path(text))
    parts = urlsplit(text)
    if parts.scheme.lower() == "file":
        if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
            raise UsageError(f"{redact_uri(text)[:200]} is not a local file URI",
                             hint="use file:///ABSOLUTE/PATH", subject=redact_uri(text)[:200])
        return _LocalSource(Path(unquote(parts.path)))
    return _ObjectSource(text)


def _local_object(rel: str, path: Path, info: os.stat_result) -> StoredObject:
    # the change time cannot be set from user space: any write or rename changes it
    return StoredObject(rel, path.as_uri(), ObjectIdentity(info.st_size,
                                                           modified=str(info.st_mtime_ns)),
                        (str(info.st_dev), str(info.st_ino), str(info.st_ctime_ns)))


class _LocalSource:
    """A local file or directory: its identity includes the inode and change time, which no
    write can keep (a modification time can be set back; a change time cannot)."""

    def __init__(self, path: Path):
        self.path = path.absolute()
        self.display = str(path)

    def listing(self) -> Listing:
        try:
            info = self.path.stat(follow_symlinks=False)
        except OSError as exc:
            raise ArtifactError(f"{self.display}: {exc.strerror or exc}",
                                hint="check the path (and that this process may read it)",
                                subject=self.display) from None
        location = self.path.as_uri()
        if stat.S_ISDIR(info.st_mode):
            objects = [_local_object(rel, file, file.stat(follow_symlinks=False))
                       for file, rel in iter_files(self.path)]
            if not objects:
                raise ArtifactError(f"{self.display} holds no files", subject=self.display,
                                    hint="check the path")
            return Listing(location, self.path.name, True, tuple(sorted(
                objects, key=lambda o: o.relpath)))
        if not stat.S_ISREG(info.st_mode):
            raise ArtifactError(f"{self.display} is not a regular file or a directory",
                                hint="fetch reads regular files only (no links or devices)",
                                subject=self.display)
        return Listing(location, self.path.name, False,
                       (_local_object(self.path.name, self.path, info),))

    def _read(self, obj: StoredObject, sink: Sink | None) -> tuple[int, str]:
        return sha256_file(Path(unquote(urlsplit(obj.location).path)), sink=sink)

    def hash(self, workers: int | None) -> tuple[Listing, Manifest]:
        listing = self.listing()
        digests = _read_all(self._read, listing, None, workers)
        self._unchanged(listing)
        return listing, listing.manifest(digests)

    def download(self, into: Path, workers: int | None) -> tuple[Listing, Manifest, Path]:
        listing = self.listing()
        copy = into / listing.name

        def open_sink(obj: StoredObject) -> Any:
            where = copy / obj.relpath if listing.is_directory else copy
            where.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            return where.open("xb")

        digests = _read_all(self._read, listing, open_sink, workers)
        self._unchanged(listing)
        return listing, listing.manifest(digests), copy

    def _unchanged(self, listing: Listing) -> None:
        if self.listing().key() != listing.key():
            raise VerificationError(f"{self.display} changed while it was read",
                                    rule="object.changed", subject=self.display,
                                    hint="retry once the files are no longer being written")


class _ObjectSource:
    """An object or prefix in an object store, listed and read by
    :mod:`custody.provenance.hashing.objects` (version-pinned reads, re-listed afterwards)."""

    def __init__(self, uri: str):
        self.uri = uri
        self.target = _target(uri)
        self.display = self.target.shown

    def listing(self) -> Listing:
        from custody.provenance.hashing import objects

        listed = objects.list_target(self.target)  # the listing hash_uri makes, without reading
        return _as_listing(self.display, listed.name, listed.is_directory, (
            ObjectLocation(o.relpath, o.uri, o.identity) for o in listed.objects))

    def hash(self, workers: int | None) -> tuple[Listing, Manifest]:
        from custody.provenance.hashing import objects

        hashed = objects.hash_target(self.target, None, workers, None)
        return _from_locations(hashed.locations, hashed.manifest), hashed.manifest

    def download(self, into: Path, workers: int | None) -> tuple[Listing, Manifest, Path]:
        from custody.provenance.hashing import objects

        # objects.fetch_private stages in the temporary folder; DEST needs its own file system
        hashed = objects.hash_target(self.target, into, workers, None)
        assert hashed.copy is not None  # noqa: S101 - a home was given
        return _from_locations(hashed.locations, hashed.manifest), hashed.manifest, hashed.copy


_CLIENTS: dict[str, Any] = {}  # one filesystem (and its store client) per scheme
_CLIENTS_LOCK = threading.Lock()
_CHAIN_PREFIXES = ("AWS_", "GOOGLE_", "GCE_", "AZURE_", "HF_", "FSSPEC_")


def _target(uri: str) -> Any:
    """The store target of ``uri``, on a filesystem shared by the URIs of its scheme: a store
    client is set up once per process (its sessions, connection pool and credential refresh)
    instead of once per request. Listings are never cached (``use_listings_cache=False``)."""
    from custody.provenance.hashing.object_stores import open_target

    target = open_target(uri)
    # a new client when the environment its credential chain and endpoint come from changes
    chain = hashlib.sha256(repr(sorted(
        (k, v) for k, v in os.environ.items() if k.startswith(_CHAIN_PREFIXES))).encode())
    key = f"{target.protocol.scheme}:{chain.hexdigest()}"
    with _CLIENTS_LOCK:
        if len(_CLIENTS) > 64:
            _CLIENTS.clear()
        shared = _CLIENTS.setdefault(key, target.fs)
    return replace(target, fs=shared)


def _as_listing(source: str, name: str, is_directory: bool,
                objects: Iterable[ObjectLocation]) -> Listing:
    return Listing(source, name, is_directory, tuple(sorted(
        (StoredObject(o.relpath, o.uri, o.identity) for o in objects),
        key=lambda o: o.relpath)))


def _from_locations(locations: Locations, manifest: Manifest) -> Listing:
    return _as_listing(locations.source, manifest.name, manifest.is_directory,
                       locations.objects)


# --- hashing and fetching ------------------------------------------------------------------


def _read_all(read: Callable[[StoredObject, Sink | None], tuple[int, str]], listing: Listing,
              open_sink: Callable[[StoredObject], Any] | None, workers: int | None
              ) -> dict[str, str]:
    """sha256 of every object (size checked against the listing), read concurrently."""

    def one(obj: StoredObject) -> tuple[str, str]:
        if open_sink is None:
            size, digest = read(obj, None)
        else:
            with open_sink(obj) as out:
                size, digest = read(obj, out.write)
        if size != obj.size:
            raise ArtifactError(
                f"{obj.location}: {size} bytes read, the listing said {obj.size}: it changed "
                "while it was read", hint="retry once the object is no longer being written",
                subject=obj.location)
        return obj.relpath, digest

    count = len(listing.objects)
    if count == 1:
        return dict([one(listing.objects[0])])
    with ThreadPoolExecutor(max_workers=min(count, workers or default_workers())) as pool:
        return dict(pool.map(one, listing.objects))


def hash_source(source: Source, *, workers: int | None = None) -> tuple[Listing, Manifest]:
    """List and hash a source; refuses (``object.changed``) if it changed while being read."""
    return source.hash(workers)


def _as_recorded_name(manifest: Manifest, ledger: Ledger, name: str | None) -> Manifest:
    """The manifest under the top-level name its record gives it, when its digest is recorded.

    The name is a label, bound by no digest (a file's digest is its content's, a directory's
    covers relative paths, sizes and contents): a model copied to ``s3://b/models/3/`` is the
    one recorded from ``./model/``. Everything that is bound is still compared by verify."""
    matches = ledger.find_by_digest(manifest.algorithm, manifest.digest)
    matches = [m for m in matches if name is None or m.name == name]
    if not matches:
        return manifest
    try:
        statement = Statement.from_bytes(ledger.stored_record(matches[-1]).statement)
        label = parse_claims(statement, source=matches[-1].ref).manifest.name
    except VerificationError:
        return manifest  # verify refuses the record with the rule that says why
    if manifest.is_directory:
        return replace(manifest, name=label)
    return Manifest.for_file(label, replace(manifest.files[0], relpath=label))


def fetch_verified(src: str | Path, dest: str | Path, policy: Policy, *, ledger: Ledger,
                   ledger_verifier: NoteVerifier | None = None, name: str | None = None,
                   workers: int | None = None) -> FetchReport:
    """Download SRC, verify exactly the downloaded bytes, and only then move them into DEST."""
    source = open_source(src)
    target = Path(dest)
    staging = _staging_for(target)
    try:
        (staging / "in").mkdir(mode=0o700)
        listing, hashed, copy = source.download(staging / "in", workers)
        manifest = _as_recorded_name(hashed, ledger, name)
        # verify_manifest only prints the path: the URI as given, not a Path that folds "//"
        report = verify_manifest(cast(Path, source.display), copy, manifest, policy,
                                 ledger=ledger, name=name, ledger_verifier=ledger_verifier)
        _publish(copy if listing.is_directory else copy.parent, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return FetchReport(source.display, str(target), listing, report)


def _staging_for(dest: Path) -> Path:
    """A private directory on DEST's file system: beside DEST, or inside DEST when DEST is a
    mount point (an emptyDir at /mnt/models). DEST must be absent or hold nothing but the
    staging directories of an interrupted fetch (removed here)."""
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise UsageError(f"{dest} exists and is not a directory", subject=str(dest),
                         hint="give a DEST directory that is empty or does not exist yet")
    if dest.is_dir():
        leftovers = []
        for entry in dest.iterdir():
            if not entry.name.startswith(STAGING_PREFIX) or entry.is_symlink():
                raise UsageError(
                    f"{dest} is not empty ({entry.name})", subject=str(dest),
                    hint="fetch into an empty or new directory: it never mixes verified files "
                    "with files that were there before")
            leftovers.append(entry)
        for entry in leftovers:
            shutil.rmtree(entry, ignore_errors=True)
        parent = dest.parent
        inside = dest.stat().st_dev != parent.stat().st_dev or not os.access(parent, os.W_OK)
        where = dest if inside else parent
    else:
        where = dest.parent
        try:
            where.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create {where}: {exc.strerror or exc}",
                             subject=str(where), hint="give a DEST this process may write") \
                from None
    try:
        return Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=where))  # mode 0700
    except OSError as exc:
        raise UsageError(f"cannot write in {where}: {exc.strerror or exc}", subject=str(where),
                         hint="give a DEST this process may write") from None


def _publish(content: Path, dest: Path) -> None:
    """Open the verified files for reading (a predictor may run as another user) and move them
    into DEST: one rename of the whole tree when DEST does not exist, else one per entry."""
    for folder, _dirs, files in os.walk(content):
        Path(folder).chmod(0o755)  # verified model files: the predictor may be another user
        for file in files:
            (Path(folder) / file).chmod(0o644)
    if not dest.exists():
        content.rename(dest)
        return
    for entry in _entries(content):
        entry.rename(dest / entry.name)


def _entries(folder: Path) -> Iterable[Path]:
    return sorted(folder.iterdir())
