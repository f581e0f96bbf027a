"""Reading listed objects: pinned, streamed, concurrent, with a bound on memory.

The second half of :mod:`custody.provenance.hashing.objects` (which lists the objects, and
lists them again afterwards): a :class:`Reader` streams each listed object in blocks of
:data:`BLOCK` bytes into SHA-256 and, optionally, into a private copy. The blocks of a large
object are fetched concurrently through fsspec's byte-range primitive and hashed in order; one
semaphore bounds the blocks held in memory across all objects, whatever their sizes and count.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from custody.errors import VerificationError
from custody.provenance.hashing.locations import ObjectIdentity
from custody.provenance.hashing.manifest import FileEntry
from custody.provenance.hashing.object_stores import (
    Target,
    changed_errors,
    store_errors,
    translate,
)

ProgressCallback = Callable[[int], None]

BLOCK = 8 * 1024 * 1024
CHANGED_HINT = ("the objects were written while Custody read them: wait until the upload has "
                 "finished (or read a fixed version), then run the command again")
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


@dataclass(frozen=True)
class Listed:
    """One object as the listing saw it."""

    path: str  # the filesystem's path of the object
    relpath: str
    uri: str  # redacted
    identity: ObjectIdentity
    pin: tuple[tuple[str, str], ...]  # open() arguments that select the listed version


def identity_of(info: dict[str, Any]) -> ObjectIdentity:
    version = info.get("VersionId") or info.get("version_id")
    etag = info.get("ETag") or info.get("etag") or info.get("blob_id")
    generation = info.get("generation")
    modified = None
    if version in (None, "null") and etag is None and generation is None:
        stamp = info.get("mtime", info.get("created"))
        if isinstance(stamp, datetime):
            stamp = stamp.timestamp()
        modified = None if stamp is None else f"{stamp}" + (
            f":{info['ino']}" if "ino" in info else "")
    return ObjectIdentity(
        size=int(info.get("size") or 0),
        version_id=None if version in (None, "null") else str(version),
        etag=None if etag is None else str(etag),
        generation=None if generation is None else str(generation),
        modified=modified)


def changed_error(obj: Listed, now: ObjectIdentity | None, fields: list[str]) -> VerificationError:
    seen = f"; now {now.describe()}" if now is not None else ""
    return VerificationError(
        f"{obj.uri} changed while it was hashed ({', '.join(fields)}): listed as "
        f"{obj.identity.describe()}{seen}",
        rule="object.changed", hint=CHANGED_HINT, subject=obj.uri)


class Reader:
    """Streams objects: a budget of blocks in memory, and a pool for the ranges of big ones."""

    def __init__(self, target: Target, workers: int, progress: ProgressCallback | None):
        self.target = target
        self.progress = progress
        self.slots = max(4, workers)
        self.budget = threading.BoundedSemaphore(self.slots)
        self.ranges = ThreadPoolExecutor(max_workers=self.slots,
                                         thread_name_prefix="custody-range")
        self.errors = store_errors(target.protocol)
        self.changed = changed_errors(target.protocol)

    def close(self) -> None:
        self.ranges.shutdown(wait=True, cancel_futures=True)

    def read(self, obj: Listed, dest: Path | None) -> FileEntry:
        digest = hashlib.sha256()
        size = 0
        try:
            with _Sink(dest) as sink:
                for block in self._blocks(obj):
                    digest.update(block)
                    sink.write(block)
                    size += len(block)
                    if self.progress is not None:
                        self.progress(len(block))
        except self.changed:
            raise changed_error(obj, None, ["etag"]) from None
        except self.errors as exc:
            raise translate(exc, obj.uri, self.target.protocol, self.target.secrets) from None
        if size != obj.identity.size:
            raise changed_error(obj, replace(obj.identity, size=size), ["size"])
        return FileEntry(obj.relpath, size, digest.hexdigest())

    def _blocks(self, obj: Listed) -> Iterator[bytes]:
        size = obj.identity.size
        if obj.pin and size <= BLOCK:
            # a pinned version is immutable: one ranged GET of it, no HEAD before
            if size:
                with self._slot():
                    yield self.target.fs.cat_file(obj.path, start=0, end=size, **dict(obj.pin))
            return
        with self.target.fs.open(obj.path, "rb", block_size=BLOCK, cache_type="none",
                                 **dict(obj.pin)) as f:
            self._check_opened(obj, f)
            yield from (self._ranges(f, size) if _ranged(f, size) else self._sequential(f))

    @contextmanager
    def _slot(self) -> Iterator[None]:
        self.budget.acquire()
        try:
            yield
        finally:
            self.budget.release()

    def _check_opened(self, obj: Listed, f: Any) -> None:
        details = getattr(f, "details", None)
        if not isinstance(details, dict) or "size" not in details:
            return
        now = identity_of(details)
        fields = [n for n in obj.identity.differs(now)
                  if n == "size" or getattr(now, n) is not None]
        if fields:
            raise changed_error(obj, now, fields)

    def _sequential(self, f: Any) -> Iterator[bytes]:
        while True:
            with self._slot():
                block = f.read(BLOCK)
            if not block:
                return
            yield block

    def _ranges(self, f: Any, size: int) -> Iterator[bytes]:
        """The blocks of one object, fetched ahead concurrently and yielded in order."""
        starts = iter(range(0, size, BLOCK))
        pending: deque[tuple[int, Future[bytes]]] = deque()
        following = next(starts, None)
        try:
            while pending or following is not None:
                while following is not None and len(pending) < self.slots:
                    # wait for memory only when nothing of ours is in flight (no deadlock)
                    if not self.budget.acquire(blocking=not pending):
                        break
                    end = min(following + BLOCK, size)
                    pending.append((end - following,
                                    self.ranges.submit(f._fetch_range, following, end)))
                    following = next(starts, None)
                length, future = pending.popleft()
                try:
                    block = future.result()
                finally:
                    self.budget.release()
                if len(block) != length:
                    raise OSError(f"a range of {length} bytes returned {len(block)}")
                yield block
        finally:
            for _, future in pending:
                future.cancel()
                self.budget.release()


def _ranged(f: Any, size: int) -> bool:
    """Buffered fsspec files (S3, GCS, Azure, HTTP) fetch byte ranges: big ones go in parallel.

    Only those: a local file's ``_fetch_range`` is a seek and a read on one shared handle, so
    concurrent ranges would interleave (short reads, or the wrong bytes hashed)."""
    buffered = importlib.import_module("fsspec.spec").AbstractBufferedFile
    return size > 2 * BLOCK and isinstance(f, buffered)


class _Sink:
    """The private copy of one object (or nothing), created exclusively with mode 0600."""

    def __init__(self, dest: Path | None):
        self.dest = dest
        self.fd: int | None = None

    def __enter__(self) -> _Sink:
        if self.dest is not None:
            self.dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.fd = os.open(self.dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW,
                              0o600)
        return self

    def write(self, block: bytes) -> None:
        if self.fd is None:
            return
        view = memoryview(block)
        while view:
            view = view[os.write(self.fd, view):]

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)
