"""DVC's metadata files, read directly (no ``import dvc``): ``*.dvc``, ``dvc.lock``, ``dvc.yaml``.

- A **``.dvc`` file** lists ``outs`` (``path`` relative to the ``.dvc`` file's folder, ``md5``,
  ``size``, ``nfiles`` for directories, ``hash: md5`` since DVC 3).
- **``dvc.lock``** (schema ``2.0``) maps stage names to ``cmd`` (a string or a list), ``deps`` and
  ``outs`` (same entry form) and ``params`` (``{params_file: {key: value}}``). Paths are relative
  to the stage's working directory: the lock file's folder, or ``wdir`` from ``dvc.yaml``.

A path is **DVC-tracked** when an ``outs`` entry of a ``.dvc`` file or of a ``dvc.lock`` stage, in
its folder or a folder above it up to the repository root (the folder holding ``.dvc/``), names it
or a directory that contains it.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from custody.errors import UsageError
from custody.provenance.hashing.dvc.md5 import HASH_LEGACY, HASH_MD5, HASH_NAMES

LOCKFILE = "dvc.lock"
_PIPELINE = "dvc.yaml"
DVC_DIR = ".dvc"
_DVC_SUFFIX = ".dvc"


def find_repo_root(path: Path) -> Path | None:
    """The DVC repository holding ``path``: the nearest folder upward with a ``.dvc/`` folder."""
    start = _absolute(path)
    for folder in (start, *start.parents):
        if (folder / DVC_DIR).is_dir():
            return folder
    return None


def _absolute(path: Path) -> Path:
    return Path(os.path.normpath(path.absolute()))


def _load_yaml(path: Path) -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}", subject=str(path)) from None
    try:
        return YAML(typ="safe", pure=True).load(text)
    except YAMLError as exc:
        raise UsageError(f"{path} is not valid YAML: {exc}", subject=str(path),
                         hint="fix it, or regenerate it with `dvc add` / `dvc repro`") from None


def _malformed(source: Path, what: str) -> UsageError:
    return UsageError(f"{source}: malformed DVC file ({what})", subject=str(source),
                      hint="regenerate it with `dvc add` / `dvc commit` / `dvc repro`")


@dataclass(frozen=True)
class DvcOut:
    """One ``deps``/``outs`` entry: a path and the hash DVC recorded for it."""

    path: str  # as written in the file
    base: Path  # the folder ``path`` is relative to
    hash_name: str  # "md5" (DVC 3) or "md5-dos2unix" (DVC 2 files)
    md5: str | None  # None when DVC has not hashed it (or an external dependency)
    size: int | None = None
    nfiles: int | None = None
    source: str = ""  # "data/raw.csv.dvc" or "dvc.lock:prepare"
    stage: str | None = None  # the dvc.lock stage, for entries of a lock file

    @property
    def is_dir(self) -> bool:
        return bool(self.md5 and self.md5.endswith(".dir"))

    @property
    def is_external(self) -> bool:
        """A URL or remote path (``s3://``, ``remote://``): not a workspace file."""
        return "://" in self.path

    @property
    def resolved(self) -> Path:
        return Path(os.path.normpath(self.base / self.path))

    @classmethod
    def parse(cls, entry: Any, *, base: Path, source: str, origin: Path,
              stage: str | None = None) -> DvcOut:
        if isinstance(entry, str):  # a dvc.yaml-style bare path
            return cls(entry, base, HASH_MD5, None, source=source, stage=stage)
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise _malformed(origin, f"an entry of {source} has no path")
        hash_name = entry.get("hash", HASH_LEGACY)
        if hash_name not in HASH_NAMES:
            raise UsageError(f"{origin}: {entry['path']} uses DVC hash {hash_name!r}",
                             hint=f"Custody reads DVC hashes {', '.join(HASH_NAMES)}",
                             subject=str(origin))
        md5 = entry.get("md5")
        if md5 is not None and not isinstance(md5, str):
            raise _malformed(origin, f"md5 of {entry['path']}")
        return cls(
            path=entry["path"], base=base, hash_name=str(hash_name), md5=md5,
            size=_opt_int(entry.get("size"), origin), nfiles=_opt_int(entry.get("nfiles"), origin),
            source=source, stage=stage,
        )

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "hash": self.hash_name, "md5": self.md5, "size": self.size,
                "nfiles": self.nfiles}


def _opt_int(value: Any, origin: Path) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _malformed(origin, f"expected a number, found {value!r}")
    return value


def read_dvc_file(path: Path, *, repo_root: Path | None = None) -> tuple[DvcOut, ...]:
    """The ``outs`` of one ``.dvc`` file."""
    data = _load_yaml(path)
    if data is None:
        return ()
    if not isinstance(data, dict):
        raise _malformed(path, "not a mapping")
    base = _absolute(path).parent
    if isinstance(data.get("wdir"), str):
        base = _absolute(base / data["wdir"])
    source = _display(path, repo_root)
    outs = data.get("outs") or []
    if not isinstance(outs, list):
        raise _malformed(path, "outs is not a list")
    return tuple(DvcOut.parse(o, base=base, source=source, origin=path) for o in outs)


@dataclass(frozen=True)
class Stage:
    """One stage of a ``dvc.lock``: the command that turned ``deps`` into ``outs``."""

    name: str
    cmd: str | tuple[str, ...]
    deps: tuple[DvcOut, ...]
    outs: tuple[DvcOut, ...]
    params: dict[str, Any] = field(default_factory=dict)  # {params file: {key: value}}
    wdir: Path = Path()

    def details(self, lock_display: str) -> dict[str, Any]:
        """What goes into the signed record of each output: the activity that made it."""
        return {
            "type": "dvc-stage",
            "lockfile": lock_display,
            "stage": self.name,
            "cmd": list(self.cmd) if isinstance(self.cmd, tuple) else self.cmd,
            "params": self.params,
            "deps": [d.to_json() for d in self.deps],
            "outs": [o.to_json() for o in self.outs],
        }


@dataclass(frozen=True)
class LockFile:
    path: Path
    repo_root: Path  # the DVC repository, else the lock file's folder
    stages: tuple[Stage, ...]

    @property
    def display(self) -> str:
        return _display(self.path, self.repo_root)

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        names = ", ".join(s.name for s in self.stages) or "none"
        raise UsageError(f"{self.display} has no stage {name!r}", subject=str(self.path),
                         hint=f"stages: {names}")

    def ordered(self) -> list[Stage]:
        """Stages in dependency order: a stage comes after every stage whose outs it uses."""
        producer = {o.resolved: s.name for s in self.stages for o in s.outs}
        by_name = {s.name: s for s in self.stages}
        done: list[Stage] = []
        state: dict[str, int] = {}  # 1 visiting, 2 done

        def visit(stage: Stage, trail: tuple[str, ...]) -> None:
            if state.get(stage.name) == 2:
                return
            if state.get(stage.name) == 1:
                raise UsageError(f"{self.display}: the stages form a cycle: "
                                 f"{' → '.join((*trail, stage.name))}", subject=str(self.path))
            state[stage.name] = 1
            for dep in stage.deps:
                for out_path, name in producer.items():
                    if name != stage.name and _within(dep.resolved, out_path):
                        visit(by_name[name], (*trail, stage.name))
            state[stage.name] = 2
            done.append(stage)

        for stage in self.stages:
            visit(stage, ())
        return done


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _pipeline_wdirs(folder: Path) -> dict[str, str]:
    """``wdir`` of each stage in the ``dvc.yaml`` next to a lock file (literal values only)."""
    pipeline = folder / _PIPELINE
    if not pipeline.is_file():
        return {}
    data = _load_yaml(pipeline)
    stages = data.get("stages") if isinstance(data, dict) else None
    if not isinstance(stages, dict):
        return {}
    wdirs: dict[str, str] = {}
    for name, body in stages.items():
        if isinstance(body, dict) and isinstance(body.get("wdir"), str) \
                and "${" not in body["wdir"]:
            wdirs[str(name)] = body["wdir"]
    return wdirs


def load_lock(path: Path) -> LockFile:
    """Parse a ``dvc.lock`` (schema 2.0, or the DVC 1 form without ``schema``)."""
    path = _absolute(path)
    if not path.is_file():
        raise UsageError(f"no DVC lock file at {path}", subject=str(path),
                         hint="run `dvc repro` first, or pass the path of dvc.lock")
    data = _load_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _malformed(path, "not a mapping")
    if "schema" in data:
        if str(data["schema"]) != "2.0":
            raise UsageError(f"{path}: unsupported dvc.lock schema {data['schema']!r}",
                             subject=str(path), hint="Custody reads dvc.lock schema 2.0")
        raw_stages = data.get("stages") or {}
    else:
        raw_stages = data
    if not isinstance(raw_stages, dict):
        raise _malformed(path, "stages is not a mapping")
    root = find_repo_root(path.parent) or path.parent
    wdirs = _pipeline_wdirs(path.parent)
    stages = []
    for name, body in raw_stages.items():
        if not isinstance(body, dict):
            raise _malformed(path, f"stage {name!r} is not a mapping")
        wdir = _absolute(path.parent / wdirs.get(str(name), "."))
        source = f"{_display(path, root)}:{name}"
        cmd = body.get("cmd", "")
        if isinstance(cmd, list) and all(isinstance(c, str) for c in cmd):
            command: str | tuple[str, ...] = tuple(cmd)
        elif isinstance(cmd, str):
            command = cmd
        else:
            raise _malformed(path, f"cmd of stage {name!r}")
        params = body.get("params") or {}
        if not isinstance(params, dict):
            raise _malformed(path, f"params of stage {name!r}")
        entries = {}
        for key in ("deps", "outs"):
            items = body.get(key) or []
            if not isinstance(items, list):
                raise _malformed(path, f"{key} of stage {name!r} is not a list")
            entries[key] = tuple(DvcOut.parse(i, base=wdir, source=source, origin=path,
                                              stage=str(name)) for i in items)
        stages.append(Stage(name=str(name), cmd=command, deps=entries["deps"],
                            outs=entries["outs"], params=_plain(params), wdir=wdir))
    return LockFile(path=path, repo_root=root, stages=tuple(stages))


def _plain(value: Any) -> Any:
    """YAML values as plain JSON-able Python (mappings, lists, scalars)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _display(path: Path, root: Path | None) -> str:
    """``path`` relative to ``root`` in POSIX form (with ``..`` when outside it)."""
    absolute = _absolute(path)
    if root is None:
        return absolute.as_posix()
    return Path(os.path.relpath(absolute, _absolute(root))).as_posix()


def relpath(path: Path, root: Path) -> str:
    return _display(path, root)


def find_tracking(path: Path, repo_root: Path) -> tuple[DvcOut, str] | None:
    """The ``outs`` entry that tracks ``path`` and ``path``'s POSIX path inside it (``""`` when
    the entry is ``path`` itself), searching ``.dvc`` files and ``dvc.lock`` from ``path``'s
    folder up to the repository root; the nearest entry wins."""
    target = _absolute(path)
    root = _absolute(repo_root)
    folder = target.parent
    while True:
        names = target.relative_to(folder).parts
        for candidate in _metadata_files(folder):
            conventional = candidate.name == names[0] + _DVC_SUFFIX  # always read, fail closed
            if not conventional and not _may_name(candidate, names):
                continue
            outs = (read_dvc_file(candidate, repo_root=root) if candidate.name != LOCKFILE
                    else tuple(o for s in load_lock(candidate).stages for o in s.outs))
            for out in outs:
                if out.is_external:
                    continue
                tracked = out.resolved
                if _within(target, tracked):
                    inner = "" if target == tracked else target.relative_to(tracked).as_posix()
                    return out, inner
        if folder == root or root not in folder.parents:
            return None
        folder = folder.parent


def _may_name(candidate: Path, names: tuple[str, ...]) -> bool:
    """Cheap pre-filter (a folder may hold thousands of ``.dvc`` files): an entry tracking the
    target or a folder above it ends with one of these names, which DVC writes verbatim. Only
    ASCII names are trusted to appear as written; otherwise the file is parsed."""
    if not all(n.isascii() for n in names):
        return True
    try:
        text = candidate.read_bytes()
    except OSError:
        return True  # let the parser report it
    return any(n.encode("ascii") in text for n in names)


def _metadata_files(folder: Path) -> list[Path]:
    try:
        names = sorted(p.name for p in folder.iterdir())
    except OSError:
        return []
    found = [folder / n for n in names
             if n.endswith(_DVC_SUFFIX) and n != DVC_DIR and (folder / n).is_file()]
    if LOCKFILE in names and (folder / LOCKFILE).is_file():
        found.append(folder / LOCKFILE)
    return found


def iter_tracked(repo_root: Path) -> list[DvcOut]:
    """Every ``outs`` entry of every ``.dvc`` file and ``dvc.lock`` in the repository."""
    from custody.provenance.hashing.dvc.md5 import IgnoreRules

    root = _absolute(repo_root)
    ignore = IgnoreRules(root)
    found: list[DvcOut] = []
    tracked: set[Path] = set()
    for folder, dirs, _files in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not ignore.ignored(here / d, is_dir=True))
        here_outs: list[DvcOut] = []
        for candidate in _metadata_files(here):
            if candidate.name == LOCKFILE:
                here_outs.extend(o for s in load_lock(candidate).stages for o in s.outs)
            else:
                here_outs.extend(read_dvc_file(candidate, repo_root=root))
        found.extend(here_outs)
        # Do not walk into tracked data folders: they hold data, not DVC metadata.
        tracked.update(o.resolved for o in here_outs if not o.is_external)
        dirs[:] = [d for d in dirs if here / d not in tracked]
    return [o for o in found if not o.is_external]


def matches_any(relpath: str, patterns: tuple[str, ...]) -> bool:
    """Whether ``relpath`` (POSIX, relative to the repository root) matches a glob pattern.

    fnmatch rules (``*`` also crosses ``/``); a pattern without ``/`` is also tried against the
    file name alone, so ``model.pkl`` matches ``models/model.pkl``.
    """
    name = relpath.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(relpath, p) or ("/" not in p and fnmatch.fnmatchcase(name, p))
               for p in patterns)
