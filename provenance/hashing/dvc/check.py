"""Does the workspace hold what DVC recorded? Re-hash the bytes the DVC way and compare."""

from __future__ import annotations

import configparser
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from custody.errors import UsageError, VerificationError
from custody.provenance.hashing.dvc.files import (
    DVC_DIR,
    DvcOut,
    LockFile,
    find_repo_root,
    find_tracking,
    load_lock,
    relpath,
)
from custody.provenance.hashing.dvc.md5 import (
    DIR_SUFFIX,
    DirEntry,
    IgnoreRules,
    dir_md5,
    directory_entries,
    file_md5,
)

RULE_MISMATCH = "dvc.workspace_mismatch"


@dataclass(frozen=True)
class DvcInfo:
    """The DVC facts recorded beside Custody's SHA-256 for a DVC-tracked path."""

    path: str  # POSIX path relative to the DVC repository root
    hash_name: str  # "md5" or "md5-dos2unix"
    md5: str  # DVC's value, with ".dir" for directories
    size: int | None
    nfiles: int | None  # directories only
    source: str  # the ".dvc" file or "dvc.lock:STAGE" that tracks it (inside "...": a folder)

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "hash": self.hash_name, "md5": self.md5, "size": self.size,
                "nfiles": self.nfiles, "source": self.source}


@dataclass(frozen=True)
class OutStatus:
    """How one tracked path compares with its recorded DVC hash."""

    out: DvcOut
    path: str  # POSIX, relative to the repository root
    state: str  # "ok", "modified", "missing" or "unhashed"
    detail: str = ""
    subject: str | None = None  # the first differing file
    actual: str | None = None  # the workspace's DVC hash
    size: int | None = None
    nfiles: int | None = None

    @property
    def ok(self) -> bool:
        return self.state == "ok"

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "source": self.out.source, "state": self.state,
                "recorded": self.out.md5, "actual": self.actual, "detail": self.detail or None}

    def info(self) -> DvcInfo:
        """The DVC facts of a path that matched; raise :meth:`error` if it did not."""
        if not self.ok or self.actual is None or self.out.md5 is None:
            raise self.error()
        return DvcInfo(path=self.path, hash_name=self.out.hash_name, md5=self.out.md5,
                       size=self.size, nfiles=self.nfiles, source=self.out.source)

    def error(self) -> VerificationError:
        if self.out.stage is not None:
            hint = (f"run `dvc repro` (or `dvc commit`) so that dvc.lock records the workspace, "
                    f"or `dvc checkout {self.path}` to restore what it recorded")
        else:
            hint = (f"run `dvc add {self.path}` to record the new content in DVC, or "
                    f"`dvc checkout {self.path}` to restore what DVC recorded")
        return VerificationError(
            f"{self.path} does not match {self.out.source}: {self.detail}",
            rule=RULE_MISMATCH, subject=self.subject or self.path, hint=hint,
        )


def check_out(out: DvcOut, repo_root: Path, *,
              ignore: IgnoreRules | None = None) -> OutStatus:
    """Hash ``out``'s workspace path as DVC would and compare with its recorded value."""
    target = out.resolved
    rel = relpath(target, repo_root)
    if out.md5 is None:
        return OutStatus(out, rel, "unhashed", "DVC recorded no hash for it")
    if not target.exists():
        return OutStatus(out, rel, "missing", "it is missing from the workspace",
                         subject=rel)
    if out.is_dir != target.is_dir():
        what = "a directory" if target.is_dir() else "a file"
        return OutStatus(out, rel, "modified", f"it is now {what}", subject=rel)
    if not target.is_dir():
        size, value = file_md5(target, out.hash_name)
        if value == out.md5:
            return OutStatus(out, rel, "ok", actual=value, size=size)
        return OutStatus(out, rel, "modified",
                         f"content changed (DVC {out.hash_name} recorded {out.md5}, now {value})",
                         subject=rel, actual=value, size=size)
    entries = directory_entries(target, out.hash_name, ignore or IgnoreRules(repo_root))
    value = dir_md5(entries)
    size = sum(e.size or 0 for e in entries)
    if value == out.md5:
        return OutStatus(out, rel, "ok", actual=value, size=size, nfiles=len(entries))
    recorded = _read_cached_dir(repo_root, out.md5)
    detail, first = _describe_dir_change(recorded, entries)
    return OutStatus(out, rel, "modified", detail,
                     subject=f"{rel}/{first}" if first else rel, actual=value, size=size,
                     nfiles=len(entries))


def _describe_dir_change(recorded: list[DirEntry] | None, actual: list[DirEntry]
                        ) -> tuple[str, str | None]:
    """A sentence naming the changed files, and the first of them."""
    if recorded is None:
        return ("content changed (DVC's listing of the recorded folder is not in the local "
                "cache, so the changed file cannot be named)", None)
    old = {e.relpath: e.md5 for e in recorded}
    new = {e.relpath: e.md5 for e in actual}
    groups = (("changed", sorted(p for p in old.keys() & new.keys() if old[p] != new[p])),
              ("added", sorted(new.keys() - old.keys())),
              ("removed", sorted(old.keys() - new.keys())))
    parts = [f"{label}: {', '.join(items[:5])}{' …' if len(items) > 5 else ''}"
             for label, items in groups if items]
    first = next((items[0] for _label, items in groups if items), None)
    return "; ".join(parts) or "content changed", first


def cache_dir(repo_root: Path) -> Path:
    """DVC's local cache: ``cache.dir`` from ``.dvc/config.local`` / ``.dvc/config``, else
    ``.dvc/cache`` (relative settings are relative to ``.dvc/``)."""
    dvc_dir = repo_root / DVC_DIR
    for name in ("config.local", "config"):
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        try:
            parser.read(dvc_dir / name, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError):
            continue
        if parser.has_option("cache", "dir"):
            return Path(os.path.normpath(dvc_dir / parser.get("cache", "dir")))
    return dvc_dir / "cache"


def _read_cached_dir(repo_root: Path, value: str) -> list[DirEntry] | None:
    """The ``.dir`` listing DVC stored in its cache for ``value``, if it is there."""
    if not value.endswith(DIR_SUFFIX):
        return None
    digest = value[: -len(DIR_SUFFIX)]
    cache = cache_dir(repo_root)
    for folder in (cache / "files" / "md5", cache):  # DVC 3 layout, then DVC 2
        candidate = folder / digest[:2] / (digest[2:] + DIR_SUFFIX)
        try:
            raw = json.loads(candidate.read_bytes())
        except (OSError, ValueError):
            continue
        if isinstance(raw, list) and all(isinstance(e, dict) and isinstance(e.get("relpath"), str)
                                         and isinstance(e.get("md5"), str) for e in raw):
            listing = [DirEntry(e["relpath"], e["md5"]) for e in raw]
            if dir_md5(listing) == value:  # the cache may itself be corrupt: trust only a match
                return listing
    return None


def check_dvc_workspace(path: Path) -> DvcInfo | None:
    """The DVC facts of ``path`` if DVC tracks it; raise if the workspace differs from them.

    ``None``: ``path`` is not inside a DVC repository, or nothing there tracks it. Otherwise the
    bytes are hashed as DVC hashes them and compared with the ``.dvc`` file or ``dvc.lock``
    entry; a difference raises :class:`VerificationError` (rule ``dvc.workspace_mismatch``)
    naming the first file that differs. A path inside a tracked folder is checked against
    DVC's listing of that folder (from the local cache, else by re-hashing the whole folder).
    """
    if not path.exists():  # nothing to compare: hashing it reports the missing path
        return None
    root = find_repo_root(path if path.is_dir() else path.parent)
    if root is None:
        return None
    found = find_tracking(path, root)
    if found is None:
        return None
    out, inner = found
    if not inner:
        return check_out(out, root).info()
    return _check_inside(out, inner, root)


def _check_inside(out: DvcOut, inner: str, root: Path) -> DvcInfo:
    """``out`` is a tracked folder and the path is ``inner`` inside it."""
    rel = relpath(out.resolved / inner, root)
    listing = _read_cached_dir(root, out.md5) if out.md5 else None
    if listing is None:  # no cached listing: the whole folder must match
        listing = directory_entries(out.resolved, out.hash_name, IgnoreRules(root))
        if dir_md5(listing) != out.md5:
            detail, first = _describe_dir_change(None, listing)
            raise OutStatus(out, relpath(out.resolved, root), "modified", detail).error()
    target = out.resolved / inner
    source = f"{out.source} (inside {relpath(out.resolved, root)})"
    if target.is_dir():
        prefix = inner + "/"
        recorded = [DirEntry(e.relpath[len(prefix):], e.md5) for e in listing
                    if e.relpath.startswith(prefix)]
        actual = directory_entries(target, out.hash_name, IgnoreRules(root))
        if dir_md5(recorded) != dir_md5(actual):
            detail, first = _describe_dir_change(recorded, actual)
            raise OutStatus(out, rel, "modified", detail,
                            subject=f"{rel}/{first}" if first else rel).error()
        return DvcInfo(path=rel, hash_name=out.hash_name, md5=dir_md5(actual),
                       size=sum(e.size or 0 for e in actual), nfiles=len(actual), source=source)
    expected = next((e.md5 for e in listing if e.relpath == inner), None)
    size, value = file_md5(target, out.hash_name)
    if expected != value:
        detail = ("it is not in DVC's listing of the folder" if expected is None else
                  f"content changed (DVC {out.hash_name} recorded {expected}, now {value})")
        raise OutStatus(out, rel, "modified", detail, subject=rel).error()
    return DvcInfo(path=rel, hash_name=out.hash_name, md5=value, size=size, nfiles=None,
                   source=source)


def stage_outputs(stage_name: str, lock_path: Path = Path("dvc.lock")) -> tuple[Path, ...]:
    """The workspace paths of every ``outs`` entry of one stage (for ``verify --dvc-stage``)."""
    lock: LockFile = load_lock(lock_path)
    stage = lock.stage(stage_name)
    paths = tuple(o.resolved for o in stage.outs if not o.is_external)
    if not paths:
        raise UsageError(f"stage {stage_name!r} of {lock.display} has no workspace outputs",
                         subject=str(lock.path))
    return paths
