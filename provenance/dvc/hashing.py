"""DVC's own content hashes, computed from the workspace bytes without importing DVC.

What DVC writes (checked against ``dvc add`` / ``dvc repro`` output in ``tests/test_dvc_*.py``,
and read from ``dvc_data.hashfile``: ``hash.py``, ``tree.py``, ``istextfile.py``):

- ``hash: md5`` (DVC 3): a file's value is the plain MD5 of its bytes.
- no ``hash`` field (written by DVC 2, and still read by DVC 3 as ``md5-dos2unix``): the file is
  read in 1 MiB chunks and, for each chunk whose first 512 bytes look like text (no NUL, at most
  30 % bytes outside printable ASCII and ``\\n\\r\\t\\f\\b``), ``\\r\\n`` is replaced by ``\\n``
  before hashing that chunk.
- a directory's value is ``<md5>.dir`` where ``<md5>`` is the MD5 of
  ``json.dumps(entries, sort_keys=True)`` (default separators, ASCII escapes) and ``entries`` is
  the list of ``{"md5": <file value>, "relpath": <posix path>}`` sorted by ``relpath``. The files
  are those DVC sees: ``.git``, ``.hg`` and ``.dvc`` are skipped, and so is whatever a
  ``.dvcignore`` file (git wildmatch syntax) in the repository excludes.

MD5 is DVC's identifier, not a security property: Custody's own digests stay SHA-256.
"""

from __future__ import annotations

import hashlib
import json
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

CHUNK_SIZE = 2**20  # dvc_data.hashfile.hash.fobj_md5
_TEXT_PROBE = 512  # dvc_data.hashfile.istextfile.DEFAULT_CHUNK_SIZE
_TEXT_CHARS = bytes(range(32, 127)) + b"\n\r\t\f\b"
_ALWAYS_IGNORED = frozenset({".git", ".hg", ".dvc"})
DVCIGNORE = ".dvcignore"


def _is_text_block(block: bytes) -> bool:
    if not block:
        return True
    if b"\x00" in block:
        return False
    return len(block.translate(None, _TEXT_CHARS)) / len(block) <= 0.30


def file_md5(path: Path, hash_name: str = HASH_MD5) -> tuple[int, str]:
    """``(size, value)`` of one file as DVC computes it under ``hash_name``."""
    if hash_name not in HASH_NAMES:
        raise ArtifactError(f"unsupported DVC hash {hash_name!r} for {path}",
                            hint=f"Custody reads DVC hashes {', '.join(HASH_NAMES)}",
                            subject=str(path))
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    try:
        with path.open("rb") as stream:
            while chunk := stream.read(CHUNK_SIZE):
                size += len(chunk)
                if hash_name == HASH_LEGACY and _is_text_block(chunk[:_TEXT_PROBE]):
                    chunk = chunk.replace(b"\r\n", b"\n")
                digest.update(chunk)
    except OSError as exc:
        raise ArtifactError(f"cannot read {path}: {exc.strerror or exc}",
                            subject=str(path)) from None
    return size, digest.hexdigest()


@dataclass(frozen=True, order=True)
class DirEntry:
    """One file of a DVC-tracked directory: what DVC keeps in its ``.dir`` listing."""

    relpath: str
    md5: str
    size: int | None = None


def dir_md5(entries: list[DirEntry]) -> str:
    """The ``<md5>.dir`` value of a directory listing (DVC's ``Tree.digest``)."""
    listing = [{"md5": e.md5, "relpath": e.relpath} for e in sorted(entries)]
    data = json.dumps(listing, sort_keys=True).encode("utf-8")
    return hashlib.md5(data, usedforsecurity=False).hexdigest() + DIR_SUFFIX


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
            candidate = folder / DVCIGNORE
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


def iter_dir_files(root: Path, ignore: IgnoreRules | None) -> Iterator[tuple[Path, str]]:
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
    for full, rel in iter_dir_files(root, ignore):
        size, value = file_md5(full, hash_name)
        entries.append(DirEntry(rel, value, size))
    return entries
