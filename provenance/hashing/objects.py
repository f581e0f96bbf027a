"""Hash objects in object stores (``s3://``, ``gs://``, ``az://``, ``hf://``, ``https://``,
``file://``, ``memory://``) into the same :class:`Manifest` that :func:`hash_path` gives for
the same bytes on disk.

API (small on purpose; ``custody fetch`` and admission build on it):

- :func:`hash_uri` → :class:`ObjectManifest`: the manifest, the redacted source URI and one
  :class:`~custody.provenance.hashing.locations.ObjectLocation` (URI + identity) per file.
- :func:`fetch_private`: the same, and a private local copy written **while** hashing (one
  read); the scanners run on that copy, never on a second download. The copy is removed when
  the ``with`` block ends. :func:`hash_into` writes the copy into a directory the caller owns
  (e.g. on the file system it will be moved within).
- :func:`list_uri` → :class:`ObjectListing`: the one listing (names and identities), no read:
  to tell cheaply whether recorded objects are still the same.

How an object or prefix is read:

1. **Listed once.** A URI ending in ``/`` is a prefix; otherwise the object at that key, else
   the prefix. Each object's identity (version id, ETag, generation or modification time, and
   size) is taken from that one listing. Keys that cannot be files on disk (``a//b``, ``..``, a
   key that is also a prefix) are refused: the manifest must be one ``hash_path`` could give.
2. **Read pinned.** On S3 the listed version id is opened (``version_id=``), and s3fs sends the
   listed ETag as ``If-Match`` with every range; where the store reports the opened object's
   identity, it is compared with the listing before a byte is hashed.
3. **Streamed** (:mod:`custody.provenance.hashing.object_reads`), in blocks of 8 MiB, several
   objects at once, the blocks of a large object fetched concurrently but hashed in order; at
   most ``max(4, workers)`` blocks are in memory at any time, whatever the sizes.
4. **Listed again** after the last byte: an object added, removed or replaced (another version
   id, ETag, generation, size) while it was hashed refuses with ``object.listing_changed`` or
   ``object.changed``: the manifest would describe bytes the store no longer serves together.

With an ``executor`` (:func:`hash_uri` only: a private copy is made on this machine), the one
listing is split into shards of balanced bytes and each worker opens the store itself from the
URI, with its own credential chain (plus the ``storage_options`` given, which then travel to the
workers), reads its objects pinned as listed, and returns their entries; the listing is checked
again here after the last shard. The manifest is the one the local read gives.

Credentials come from each store's usual chain (:mod:`custody.provenance.hashing.object_stores`);
none is recorded or shown (:func:`~custody.provenance.hashing.locations.redact_uri`).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from custody.errors import ArtifactError, UsageError, VerificationError
from custody.provenance.hashing.files import iter_files
from custody.provenance.hashing.locations import (
    Locations,
    ObjectLocation,
    redact_uri,
)
from custody.provenance.hashing.manifest import Manifest
from custody.provenance.hashing.object_reads import (
    CHANGED_HINT,
    Listed,
    ProgressCallback,
    Reader,
    changed_error,
    identity_of,
)
from custody.provenance.hashing.object_stores import (
    Target,
    open_target,
    store_errors,
    translate,
)

if TYPE_CHECKING:
    from custody.provenance.execution.interface import Executor
    from custody.provenance.hashing.manifest import FileEntry


@dataclass(frozen=True)
class ObjectManifest:
    """What :func:`hash_uri` returns: the manifest and where each file's bytes came from.

    ``copy`` is the private local copy (the file or directory, named like the artifact) when
    made by :func:`fetch_private`: scan and load it, never the URI again.
    """

    manifest: Manifest
    locations: Locations
    copy: Path | None = None

    @property
    def source(self) -> str:
        return self.locations.source

    def to_json(self) -> dict[str, Any]:
        return {**self.manifest.to_json(), "locations": self.locations.to_json()}


@dataclass(frozen=True)
class ObjectListing:
    """What :func:`list_uri` returns: the artifact's name and kind, and each object's location."""

    name: str
    is_directory: bool
    locations: Locations


@dataclass(frozen=True)
class TargetListing:
    """What one listing of a target found (before any object is read)."""

    name: str
    is_directory: bool
    objects: tuple[Listed, ...]


def hash_uri(uri: str, *, workers: int | None = None, progress: ProgressCallback | None = None,
             storage_options: dict[str, Any] | None = None,
             executor: Executor | None = None) -> ObjectManifest:
    """Hash the object or prefix at ``uri`` (see the module docstring for how), on
    ``executor`` if given."""
    target = open_target(uri, storage_options)
    if executor is None:
        return hash_target(target, None, workers, progress)
    if redact_uri(uri) != uri:
        raise UsageError(
            f"{target.shown}: the URI carries credentials (userinfo or a query string), which "
            f"are not sent to the workers of {executor.name}",
            hint="give the workers their own credentials (environment, IAM role) and a plain "
            "URI, or hash without --executor", subject=target.shown)
    return _hash_on(target, executor, storage_options, progress)


def list_uri(uri: str, *, storage_options: dict[str, Any] | None = None) -> ObjectListing:
    """List the object or prefix at ``uri`` as :func:`hash_uri` would, reading no object."""
    target = open_target(uri, storage_options)
    listing = list_target(target)
    return ObjectListing(listing.name, listing.is_directory, _locations(target, listing))


def hash_into(uri: str, home: Path, *, workers: int | None = None,
              progress: ProgressCallback | None = None,
              storage_options: dict[str, Any] | None = None) -> ObjectManifest:
    """Hash ``uri`` and copy the hashed bytes into the existing directory ``home`` (the caller
    owns and removes it): ``result.copy`` is ``home / name``, which must not exist yet."""
    return hash_target(open_target(uri, storage_options), home, workers, progress)


@contextmanager
def fetch_private(uri: str, *, workers: int | None = None,
                  progress: ProgressCallback | None = None,
                  storage_options: dict[str, Any] | None = None) -> Iterator[ObjectManifest]:
    """Hash ``uri`` and keep a private copy of exactly the hashed bytes until the block ends.

    The copy lives in a new directory of the temporary folder (mode 0700, files 0600): the
    artifact's file or directory is ``result.copy``, laid out as the manifest says.
    """
    target = open_target(uri, storage_options)
    home = Path(tempfile.mkdtemp(prefix="custody-objects-"))
    try:
        yield hash_target(target, home, workers, progress)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def hash_target(target: Target, home: Path | None, workers: int | None,
                progress: ProgressCallback | None) -> ObjectManifest:
    """:func:`hash_uri` / :func:`hash_into` on an opened target (a caller that keeps one store
    client per scheme, such as the storage initializer)."""
    listing = list_target(target)
    copy = None if home is None else home / (listing.name or "artifact")
    count = max(1, workers or 16)
    reader = Reader(target, count, progress)
    try:
        if listing.is_directory:
            if copy is not None:
                copy.mkdir(mode=0o700)
            dest = (lambda o: copy / o.relpath) if copy is not None else (lambda o: None)
            with ThreadPoolExecutor(max_workers=count, thread_name_prefix="custody-obj") as pool:
                entries = list(pool.map(lambda o: reader.read(o, dest(o)), listing.objects))
            manifest = Manifest.for_directory(listing.name, entries)
        else:
            entry = reader.read(listing.objects[0], copy)
            manifest = Manifest.for_file(listing.name, entry)
    finally:
        reader.close()
    _check_unchanged(target, listing)
    return ObjectManifest(manifest, _locations(target, listing), copy)


def read_shard(objects: tuple[Listed, ...], *, uri: str,
               storage_options: dict[str, Any] | None) -> list[FileEntry]:
    """One shard of an executor run, on a worker: the listed objects read from a store opened
    here, pinned to the listed versions."""
    reader = Reader(open_target(uri, storage_options), 4, None)
    try:
        return [reader.read(o, None) for o in objects]
    finally:
        reader.close()


def _hash_on(target: Target, executor: Executor, storage_options: dict[str, Any] | None,
             progress: ProgressCallback | None) -> ObjectManifest:
    from custody.provenance.execution.shards import balance, shard_count

    listing = list_target(target)
    if not listing.is_directory or len(listing.objects) == 1:
        return hash_target(target, None, None, progress)
    objects = listing.objects
    groups = balance([o.identity.size for o in objects],
                     shard_count(len(objects), executor.workers))
    weights = [sum(objects[i].identity.size for i in g) for g in groups]
    tick = None if progress is None else (lambda n: progress(weights[n]))
    done = executor.map(partial(read_shard, uri=target.shown, storage_options=storage_options),
                        [tuple(objects[i] for i in g) for g in groups], on_done=tick)
    manifest = Manifest.for_directory(listing.name, [e for shard in done for e in shard])
    _check_unchanged(target, listing)
    return ObjectManifest(manifest, _locations(target, listing), None)


def _locations(target: Target, listing: TargetListing) -> Locations:
    return Locations(target.shown, tuple(
        ObjectLocation(o.relpath, o.uri, o.identity) for o in listing.objects))


# --- listing ---------------------------------------------------------------------------------


def list_target(target: Target) -> TargetListing:
    """List ``target`` once, as :func:`hash_target` does before it reads."""
    fs, errors = target.fs, store_errors(target.protocol)
    root = target.path.rstrip("/") if target.protocol.listable else target.path
    try:
        if not target.path.endswith("/") or not target.protocol.listable:
            info = fs.info(root)
            if info.get("type") == "file" or not target.protocol.listable:
                return _single(target, root, info)
        if target.protocol.scheme == "file":  # links and special files, as hash_path refuses
            for _ in iter_files(Path(root)):
                pass
        # withdirs=False: with directories, s3fs would let prefix "a/" hide the object "a"
        found = fs.find(root, detail=True, withdirs=False)
    except errors as exc:
        raise translate(exc, target.shown, target.protocol, target.secrets) from None
    objects = [_listed(target, root, path, info) for path, info in sorted(found.items())
               if _is_object(target, path, info, root)]
    if not objects:
        raise ArtifactError(f"{target.shown} holds no objects: there is nothing to hash",
                            hint="check the prefix (keys are case-sensitive)",
                            subject=target.shown)
    _check_tree([o.relpath for o in objects], target.shown)
    return TargetListing(_basename(root), True, tuple(objects))


def _single(target: Target, root: str, info: dict[str, Any]) -> TargetListing:
    _refuse_special(target, root, info)
    if target.protocol.listable:
        name = _basename(root)
    else:
        name = PurePosixPath(urlsplit(target.path).path).name or urlsplit(target.path).netloc
    listed = Listed(root, name, target.shown, identity_of(info), _pin(target, info))
    return TargetListing(name, False, (listed,))


def _is_object(target: Target, path: str, info: dict[str, Any], root: str) -> bool:
    _refuse_special(target, path, info)
    return info.get("type") == "file" and path.rstrip("/") != root


def _listed(target: Target, root: str, path: str, info: dict[str, Any]) -> Listed:
    rel = path[len(root) + 1:] if path.startswith(root + "/") else path
    uri = redact_uri(target.fs.unstrip_protocol(path))
    if not path.startswith(root + "/") or not _safe_relpath(rel):
        raise ArtifactError(
            f"{uri}: the key cannot be a file of a directory on disk (an empty, '.' or '..' "
            "segment), so its manifest could not match hash_path's",
            hint="rename the object, or hash the objects one by one", subject=uri)
    return Listed(path, rel, uri, identity_of(info), _pin(target, info))


def _refuse_special(target: Target, path: str, info: dict[str, Any]) -> None:
    if info.get("islink") or info.get("type") not in ("file", "directory"):
        what = "a symbolic link" if info.get("islink") else f"a {info.get('type')}"
        shown = redact_uri(target.fs.unstrip_protocol(path))
        raise ArtifactError(f"{shown} is {what}: only regular files and prefixes are hashed",
                            hint="replace the link with the file it points to", subject=shown)


def _safe_relpath(rel: str) -> bool:
    return bool(rel) and "\x00" not in rel and all(
        part not in ("", ".", "..") for part in rel.split("/"))


def _check_tree(relpaths: list[str], shown: str) -> None:
    names = set(relpaths)
    for rel in relpaths:
        parts = rel.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent in names:
                raise ArtifactError(
                    f"{shown}: {parent} is both an object and a prefix of {rel}; a directory "
                    "on disk cannot hold both", hint="rename one of the objects", subject=shown)


def _basename(root: str) -> str:
    return root.rstrip("/").rsplit("/", 1)[-1]


def _pin(target: Target, info: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    version = info.get("VersionId")
    if target.protocol.pin is None or version in (None, "null"):
        return ()
    return ((target.protocol.pin, str(version)),)


def _check_unchanged(target: Target, before: TargetListing) -> None:
    """List again after the last byte: the objects must be the ones that were hashed."""
    target.fs.invalidate_cache()
    after = list_target(target)
    old = {o.relpath: o for o in before.objects}
    new = {o.relpath: o for o in after.objects}
    added, removed = sorted(new.keys() - old.keys()), sorted(old.keys() - new.keys())
    if added or removed:
        what = "; ".join(p for p in (
            f"added: {', '.join(added[:5])}" if added else "",
            f"removed: {', '.join(removed[:5])}" if removed else "") if p)
        raise VerificationError(f"{target.shown} changed while it was hashed ({what})",
                                rule="object.listing_changed", hint=CHANGED_HINT,
                                subject=target.shown)
    for rel in sorted(old):
        fields = old[rel].identity.differs(new[rel].identity)
        if fields:
            raise changed_error(old[rel], new[rel].identity, fields)
