"""Validated, atomic output files: ``--out``, ``--bundle-out``, ``--oms-out``.

:meth:`OutputFile.prepare` checks the destination before any work is done (its folder exists and
is a folder, it is not itself a folder or a special file) and proves the folder writable by
creating the temporary file the data will go to, next to the destination. :meth:`write` fills
and fsyncs that file; :meth:`commit` renames it over the destination (a rename: readers
see the old file or the new one, never half of one) and fsyncs the folder. Leaving the ``with``
block without committing removes the temporary file.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from types import TracebackType

from custody.errors import OutputError, UsageError


class OutputFile:
    """One destination file, validated up front and written atomically."""

    def __init__(self, path: Path, option: str, tmp: Path, mode: int):
        self.path = path
        self.option = option
        self._tmp: Path | None = tmp
        self._mode = mode

    @classmethod
    def prepare(cls, path: Path, *, option: str = "--out") -> OutputFile:
        """Validate ``path`` and create its temporary file; raise UsageError (exit 2) if it
        cannot be written."""
        where = f"{option} {path}"
        try:
            info = path.stat()
        except (FileNotFoundError, NotADirectoryError):  # the folder is checked below
            info = None
        except OSError as exc:
            raise UsageError(f"{where}: {exc.strerror or exc}", subject=str(path),
                             hint="choose another output path") from None
        if info is not None and stat.S_ISDIR(info.st_mode):
            raise UsageError(f"{where} is a directory, not a file", subject=str(path),
                             hint=f"give a file path, e.g. {path / 'NAME'}")
        if info is not None and not stat.S_ISREG(info.st_mode):
            raise UsageError(f"{where} exists and is not a regular file", subject=str(path),
                             hint="choose another output path")
        parent = path.absolute().parent
        if not parent.exists():
            raise UsageError(f"{where}: the folder {parent} does not exist", subject=str(path),
                             hint=f"create it first (mkdir -p {parent}) or choose another path")
        if not parent.is_dir():
            raise UsageError(f"{where}: {parent} is not a folder", subject=str(path),
                             hint="choose another output path")
        try:
            fd, name = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp")
        except OSError as exc:
            raise UsageError(f"{where}: cannot write in {parent}: {exc.strerror or exc}",
                             subject=str(path),
                             hint="choose a folder you can write to") from None
        os.close(fd)
        mode = stat.S_IMODE(info.st_mode) if info is not None else 0o666 & ~_umask()
        return cls(path, option, Path(name), mode)

    def write(self, data: bytes | str) -> None:
        """Write the whole content to the temporary file and fsync it."""
        tmp = self._pending()
        raw = data.encode("utf-8") if isinstance(data, str) else data
        try:
            with tmp.open("wb") as stream:
                stream.write(raw)
                stream.flush()
                os.fsync(stream.fileno())
            tmp.chmod(self._mode)
        except OSError as exc:
            raise OutputError(f"{self.option} {self.path}: cannot write: {exc.strerror or exc}",
                              subject=str(self.path),
                              hint="free space or choose another output path") from None

    def commit(self) -> None:
        """Rename the written temporary file over the destination."""
        tmp = self._pending()
        try:
            tmp.replace(self.path)
        except OSError as exc:
            raise OutputError(f"{self.option} {self.path}: cannot rename {tmp.name} into place: "
                              f"{exc.strerror or exc}", subject=str(self.path),
                              hint="choose another output path") from None
        self._tmp = None
        _fsync_dir(self.path.absolute().parent)

    def discard(self) -> None:
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None

    def _pending(self) -> Path:
        if self._tmp is None:
            raise RuntimeError(f"{self.path}: output already committed or discarded")
        return self._tmp

    def __enter__(self) -> OutputFile:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.discard()


def write_output(path: Path, data: bytes | str, *, option: str = "--out") -> None:
    """Validate ``path``, then write ``data`` to it atomically."""
    with OutputFile.prepare(path, option=option) as out:
        out.write(data)
        out.commit()


def check_distinct(*outputs: tuple[str, Path | None]) -> None:
    """Refuse two options that name the same destination (the second would overwrite)."""
    seen: dict[Path, str] = {}
    for option, path in outputs:
        if path is None:
            continue
        key = path.absolute().resolve()
        if key in seen:
            raise UsageError(f"{seen[key]} and {option} name the same file {path}",
                             subject=str(path), hint="give each output its own path")
        seen[key] = option


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # not supported here (e.g. Windows): the rename itself is still atomic
    try:
        with contextlib.suppress(OSError):  # best effort: some filesystems refuse it
            os.fsync(fd)
    finally:
        os.close(fd)
