"""Streaming SHA-256 of files and directories.

Files are read in large blocks into one reused buffer; the files of a directory are hashed by a
thread pool (hashlib releases the GIL on large updates). Only regular files are read: special
files (FIFOs, sockets, devices) are refused, and so are symlinks, unless ``allow_symlinks`` is
set, in which case links that stay inside the tree are followed and links that leave it are
still refused. Each file is opened without following links and checked again after opening, so
a path swapped for a link or a FIFO between the walk and the read is caught.

With an ``executor`` (:mod:`custody.provenance.execution`), the tree is walked once here, split
into shards of balanced bytes, and each shard is hashed by a worker that opens its files by path
(a shared file system on a cluster); the entries give exactly the manifest of the local path.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from custody.errors import ArtifactError
from custody.provenance.hashing.manifest import FileEntry, Manifest

if TYPE_CHECKING:
    from custody.provenance.execution.interface import Executor

_BLOCK_SIZE = 4 * 1024 * 1024
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)

ProgressCallback = Callable[[int], None]


@dataclass(frozen=True)
class _Planned:
    path: Path
    relpath: str
    size: int  # as listed: balances the shards of an executor run


def default_workers() -> int:
    return max(2, min(16, (os.cpu_count() or 2) * 2))


def sha256_file(path: Path, *, follow: bool = False, progress: ProgressCallback | None = None,
                sink: Callable[[memoryview], object] | None = None) -> tuple[int, str]:
    """Return ``(size, hex sha256)`` of one regular file, streaming it in large blocks.

    ``sink`` receives every block that was hashed: a copy made through it holds exactly the
    bytes the digest is about.
    """
    flags = os.O_RDONLY | _O_NONBLOCK | (0 if follow else _O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise _artifact_error(path, exc) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ArtifactError(
                f"{path} is not a regular file ({_kind(info.st_mode)})",
                hint="Custody hashes regular files only; remove special files from the artifact",
                subject=str(path),
            )
        digest = hashlib.sha256()
        buffer = bytearray(_BLOCK_SIZE)
        view = memoryview(buffer)
        size = 0
        with os.fdopen(fd, "rb", buffering=0, closefd=False) as stream:
            while True:
                n = stream.readinto(buffer)
                if not n:
                    break
                digest.update(view[:n])
                if sink is not None:
                    sink(view[:n])
                size += n
                if progress is not None:
                    progress(n)
        return size, digest.hexdigest()
    except OSError as exc:
        raise _artifact_error(path, exc) from None
    finally:
        os.close(fd)


def hash_path(
    path: Path,
    *,
    allow_symlinks: bool = False,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
    executor: Executor | None = None,
) -> Manifest:
    """Hash a file or a directory tree into a :class:`Manifest` (on ``executor`` if given)."""
    root = _resolve_top(path)
    if root.is_file():
        size, digest = sha256_file(root, follow=True, progress=progress)
        return Manifest.for_file(root.name, FileEntry(root.name, size, digest))
    planned = sorted(_walk(root, allow_symlinks), key=lambda p: p.relpath)
    if not planned:
        raise ArtifactError(
            f"{path} is an empty directory: there is nothing to hash", subject=str(path)
        )
    follow = allow_symlinks
    if executor is not None and len(planned) > 1:
        return Manifest.for_directory(root.name, _hash_on(executor, planned, follow, progress))

    def one(item: _Planned) -> FileEntry:
        size, digest = sha256_file(item.path, follow=follow, progress=progress)
        return FileEntry(item.relpath, size, digest)

    count = workers or default_workers()
    if count <= 1 or len(planned) == 1:
        entries = [one(p) for p in planned]
    else:
        with ThreadPoolExecutor(max_workers=count, thread_name_prefix="custody-hash") as pool:
            entries = list(pool.map(one, planned))
    return Manifest.for_directory(root.name, entries)


def hash_shard(files: tuple[tuple[str, str], ...], *, follow: bool) -> list[FileEntry]:
    """One shard of an executor run, on a worker: ``(path, relpath)`` pairs read by path."""
    return [FileEntry(rel, *sha256_file(Path(path), follow=follow)) for path, rel in files]


def _hash_on(executor: Executor, planned: list[_Planned], follow: bool,
             progress: ProgressCallback | None) -> list[FileEntry]:
    from custody.provenance.execution.shards import balance, shard_count

    groups = balance([p.size for p in planned], shard_count(len(planned), executor.workers))
    shards = [tuple((str(planned[i].path), planned[i].relpath) for i in g) for g in groups]
    weights = [sum(planned[i].size for i in g) for g in groups]
    tick = None if progress is None else (lambda n: progress(weights[n]))
    done = executor.map(partial(hash_shard, follow=follow), shards, on_done=tick)
    return [entry for shard in done for entry in shard]


def iter_files(path: Path, *, allow_symlinks: bool = False) -> Iterator[tuple[Path, str]]:
    """Yield ``(absolute path, relpath)`` for every file the manifest of ``path`` would hold."""
    root = _resolve_top(path)
    if root.is_file():
        yield root, root.name
        return
    for item in sorted(_walk(root, allow_symlinks), key=lambda p: p.relpath):
        yield item.path, item.relpath


def _resolve_top(path: Path) -> Path:
    try:
        info = path.lstat()
    except OSError as exc:
        raise _artifact_error(path, exc) from None
    if stat.S_ISLNK(info.st_mode):
        try:
            target = path.resolve(strict=True)
        except (OSError, RuntimeError):
            raise ArtifactError(
                f"{path} is a broken symbolic link",
                hint="point the link at an existing file, or pass the file itself",
                subject=str(path),
            ) from None
        info = target.lstat()
        path = target
    if stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode):
        return path.absolute()
    raise ArtifactError(
        f"{path} is not a regular file or directory ({_kind(info.st_mode)})",
        hint="Custody hashes regular files and directories of them",
        subject=str(path),
    )


def _walk(root: Path, allow_symlinks: bool) -> Iterator[_Planned]:
    real_root = root.resolve()
    stack: list[tuple[Path, str]] = [(root, "")]
    while stack:
        directory, prefix = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError as exc:
            raise _artifact_error(directory, exc) from None
        for entry in entries:
            rel = f"{prefix}{entry.name}"
            full = Path(entry.path)
            if entry.is_symlink():
                target = _check_link(full, rel, real_root, allow_symlinks)
                if target.is_dir():
                    raise ArtifactError(
                        f"{rel} is a symbolic link to a directory, which is not followed",
                        subject=rel,
                    )
                yield _Planned(full, rel, target.stat().st_size)
                continue
            info = entry.stat(follow_symlinks=False)
            mode = info.st_mode
            if stat.S_ISDIR(mode):
                stack.append((full, rel + "/"))
            elif stat.S_ISREG(mode):
                yield _Planned(full, rel, info.st_size)
            else:
                raise ArtifactError(
                    f"{rel} is not a regular file ({_kind(mode)})",
                    hint="remove special files (FIFOs, sockets, devices) from the artifact",
                    subject=rel,
                )


def _check_link(full: Path, rel: str, real_root: Path, allow: bool) -> Path:
    try:
        target = full.resolve(strict=True)
    except (OSError, RuntimeError):
        raise ArtifactError(
            f"{rel} is a broken symbolic link", hint="remove or fix the link", subject=rel
        ) from None
    if not target.is_relative_to(real_root):
        raise ArtifactError(
            f"{rel} is a symbolic link that points outside the artifact ({target})",
            hint="copy the file into the artifact instead of linking to it",
            subject=rel,
        )
    if not allow:
        raise ArtifactError(
            f"{rel} is a symbolic link; links are refused by default",
            hint="replace the link with the file, or pass --allow-symlinks to follow links "
            "that stay inside the artifact",
            subject=rel,
        )
    return target


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "a special file"


def _artifact_error(path: Path, exc: OSError) -> ArtifactError:
    reason = exc.strerror or str(exc)
    if isinstance(exc, FileNotFoundError):
        hint = "check the path"
    elif isinstance(exc, PermissionError):
        hint = "check the file's permissions"
    elif getattr(exc, "errno", None) == getattr(os, "ELOOP", -1):
        reason = "it is a symbolic link"
        hint = "links are refused by default; pass the file itself"
    else:
        hint = None
    return ArtifactError(f"cannot read {path}: {reason}", hint=hint, subject=str(path))
