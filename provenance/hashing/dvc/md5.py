"""DVC's own content hashes of workspace files and folders, computed by DVC's library.

The values come from ``dvc-data`` (the hashing library DVC itself uses; the ``dvc`` application
is not needed and never imported), loaded inside the functions so that a process that never
hashes a DVC-tracked path does not import it:

- a file: :func:`dvc_data.hashfile.hash.fobj_md5` under the out's hash name, ``md5`` (DVC 3) or
  ``md5-dos2unix`` (files written by DVC 2, without a ``hash`` field: ``\\r\\n`` becomes ``\\n`` in
  each 1 MiB chunk whose first 512 bytes look like text);
- a folder: :meth:`dvc_data.hashfile.tree.Tree.digest`, ``<md5>.dir`` over the sorted
  ``{"md5", "relpath"}`` listing of its files.

Which files a folder holds is decided here, as DVC's workspace code (in ``dvc``, not
``dvc-data``) decides it: ``.git``, ``.hg`` and ``.dvc`` are skipped, and so is whatever a
``.dvcignore`` file (git wildmatch syntax) excludes, the deepest one first. ``dvc add`` output
in ``tests/test_dvc_hashing.py`` checks that both give DVC's values.

MD5 is DVC's identifier, not a security property: Custody's own digests stay SHA-256.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from custody.errors import ArtifactError

if TYPE_CHECKING:
    from pathspec import GitIgnoreSpec

HASH_MD5 = "md5"
HASH_LEGACY = "md5-dos2unix"
HASH_NAMES = (HASH_MD5, HASH_LEGACY)
DIR_SUFFIX = ".dir"

_ALWAYS_IGNORED = frozenset({".git", ".hg", ".dvc"})
_DVCIGNORE = ".dvcignore"


def file_md5(path: Path, hash_name: str = HASH_MD5) -> tuple[int, str]:
    """``(size, value)`` of one file as DVC computes it under ``hash_name``."""
    if hash_name not in HASH_NAMES:
        raise ArtifactError(f"unsupported DVC hash {hash_name!r} for {path}",
                            hint=f"Custody reads DVC hashes {', '.join(HASH_NAMES)}",
                            subject=str(path))
    from dvc_data.hashfile.hash import fobj_md5

    try:
        with path.open("rb") as stream:
            value = fobj_md5(stream, name=hash_name)
            size = stream.tell()  # read to the end: the bytes hashed
    except OSError as exc:
        raise ArtifactError(f"cannot read {path}: {exc.strerror or exc}",
                            subject=str(path)) from None
    return size, value


@dataclass(frozen=True, order=True)
class DirEntry:
    """One file of a DVC-tracked directory: what DVC keeps in its ``.dir`` listing."""

    relpath: str
    md5: str
    size: int | None = None


def dir_md5(entries: list[DirEntry]) -> str:
    """The ``<md5>.dir`` value of a directory listing (DVC's ``Tree.digest``)."""
    from dvc_data.hashfile.tree import Tree

    tree = Tree.from_list([{"md5": e.md5, "relpath": e.relpath} for e in entries])
    tree.digest()
    # digest() leaves the listing in fsspec's process-wide in-memory store; drop it.
    tree.fs.rm(tree.path)
    return str(tree.oid)


class IgnoreRules:
    """The ``.dvcignore`` files of one DVC repository, applied as DVC applies them.

    Each ``.dvcignore`` holds git wildmatch patterns relative to its own folder; the deepest file
    with a matching pattern decides; ``.git``, ``.hg`` and ``.dvc`` are always ignored.
    """

    def __init__(self, repo_root: Path):
        self.root = repo_root
        self._specs: dict[Path, GitIgnoreSpec | None] = {}

    def _spec(self, folder: Path) -> GitIgnoreSpec | None:
        if folder not in self._specs:
            from pathspec import GitIgnoreSpec

            spec: GitIgnoreSpec | None = None
            candidate = folder / _DVCIGNORE
            if candidate.is_file():
                try:
                    lines = candidate.read_text(encoding="utf-8").splitlines()
                except (OSError, UnicodeDecodeError) as exc:
                    raise ArtifactError(f"cannot read {candidate}: {exc}",
                                        subject=str(candidate)) from None
                patterns = [ln.strip() for ln in lines
                            if ln.strip() and not ln.strip().startswith("#")]
                if patterns:
                    spec = GitIgnoreSpec.from_lines(patterns)
            self._specs[folder] = spec
        return self._specs[folder]

    def ignored(self, path: Path, *, is_dir: bool) -> bool:
        """Whether DVC skips ``path`` (absolute, inside the repository)."""
        if path.name in _ALWAYS_IGNORED:
            return True
        try:
            rel = path.relative_to(self.root)
        except ValueError:
            return False
        folders = [self.root / Path(*rel.parts[:i]) for i in range(len(rel.parts))]
        for folder in reversed(folders):
            spec = self._spec(folder)
            if spec is None:
                continue
            sub = path.relative_to(folder).as_posix() + ("/" if is_dir else "")
            result = spec.check_file(sub)
            if result.include is not None:
                return bool(result.include)
        return False


def _iter_dir_files(root: Path, ignore: IgnoreRules | None) -> Iterator[tuple[Path, str]]:
    """``(path, posix relpath)`` of each file DVC would hash under ``root``, sorted by relpath.

    Symlinked files are read through (as DVC does); symlinked folders are not entered.
    """
    found: list[tuple[str, Path]] = []
    for folder, dirs, files in os.walk(root, onerror=_walk_error):
        here = Path(folder)
        dirs[:] = [d for d in dirs
                   if not (ignore and ignore.ignored(here / d, is_dir=True))
                   and d not in _ALWAYS_IGNORED]
        for name in files:
            full = here / name
            if ignore is not None and ignore.ignored(full, is_dir=False):
                continue
            try:
                mode = full.stat().st_mode
            except OSError as exc:
                raise ArtifactError(f"cannot read {full}: {exc.strerror or exc}",
                                    subject=str(full)) from None
            if not stat.S_ISREG(mode):
                raise ArtifactError(f"{full} is not a regular file",
                                    hint="remove special files from the DVC-tracked folder",
                                    subject=str(full))
            found.append((full.relative_to(root).as_posix(), full))
    for rel, full in sorted(found):
        yield full, rel


def _walk_error(exc: OSError) -> None:
    raise ArtifactError(f"cannot list {exc.filename}: {exc.strerror or exc}",
                        subject=str(exc.filename)) from None


def directory_entries(root: Path, hash_name: str, ignore: IgnoreRules | None) -> list[DirEntry]:
    """The listing DVC would build for the directory ``root``."""
    entries = []
    for full, rel in _iter_dir_files(root, ignore):
        size, value = file_md5(full, hash_name)
        entries.append(DirEntry(rel, value, size))
    return entries
