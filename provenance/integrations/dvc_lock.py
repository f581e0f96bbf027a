"""``custody dvc import``: record every stage of a ``dvc.lock`` as signed lineage.

For each stage, in dependency order:

- every **dep** that is not yet in the ledger (no version has its exact bytes) is recorded as a
  dataset with no inputs; a dep that is already recorded, under any name, is used as it is; a dep
  inside a folder output of an earlier stage is represented by that folder's record;
- every **out** is recorded with the stage's deps as inputs, activity ``trained_on`` when it is a
  model and ``derived_from`` otherwise, unless a version of the same name already holds these
  bytes with these inputs (importing twice records nothing new).

An out is a **model** when its path matches a ``--model-out`` glob, or when its content is a
model container recognised by magic bytes (safetensors, GGUF); everything else is a dataset
(a pickle may be either, so it is a model only when a glob says so).

Names: ``dvc/<path relative to the DVC repository root>`` (see :func:`artifact_name`).

Nothing is written until the whole workspace has been checked against ``dvc.lock``: a dep or
out whose bytes differ from what DVC recorded refuses the import (``dvc.workspace_mismatch``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from custody.errors import UsageError
from custody.provenance.hashing.dvc.check import DvcInfo, OutStatus, check_out
from custody.provenance.hashing.dvc.files import (
    DvcOut,
    LockFile,
    Stage,
    load_lock,
    matches_any,
    relpath,
)
from custody.provenance.hashing.dvc.md5 import IgnoreRules

if TYPE_CHECKING:
    from custody.provenance.ledger.models import ArtifactVersionPublic
    from custody.provenance.ledger.store import Ledger
    from custody.signing.interface import Signer
    from custody.validators.findings import Severity

_NAME_PREFIX = "dvc/"
_MAX_NAME = 200
_UNSAFE = re.compile(r"[^A-Za-z0-9._/-]")


def artifact_name(path: str, prefix: str = _NAME_PREFIX) -> str:
    """The ledger name of a DVC path: ``dvc/`` + its POSIX path from the repository root.

    ``data/raw.csv`` → ``dvc/data/raw.csv``. Characters a ledger name cannot hold (anything but
    letters, digits and ``. _ / -``) become ``_`` and ``..`` segments become ``__``; when that
    changed anything, or the name would pass 200 characters (it is then cut), ``-`` and the
    first 8 hex digits of the SHA-256 of the original path are appended, so two different paths
    never share a name.
    """
    parts = [("__" if p == ".." else p) for p in path.strip("/").split("/") if p not in ("", ".")]
    safe = _UNSAFE.sub("_", "/".join(parts))
    name = prefix + safe
    if safe != path or len(name) > _MAX_NAME:
        tag = "-" + hashlib.sha256(path.encode("utf-8")).hexdigest()[:8]
        name = name[: _MAX_NAME - len(tag)].rstrip("/") + tag
    return name


@dataclass(frozen=True)
class ImportedArtifact:
    path: str  # relative to the repository root
    ref: str  # NAME@VERSION
    kind: str
    digest: str  # Custody's algorithm:hex
    dvc_md5: str
    created: bool  # False: an existing version was used

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "ref": self.ref, "kind": self.kind, "digest": self.digest,
                "dvc_md5": self.dvc_md5, "created": self.created}


@dataclass(frozen=True)
class ImportedStage:
    name: str
    cmd: str | tuple[str, ...]
    inputs: tuple[ImportedArtifact, ...]
    outputs: tuple[ImportedArtifact, ...]

    def to_json(self) -> dict[str, Any]:
        return {"stage": self.name,
                "cmd": list(self.cmd) if isinstance(self.cmd, tuple) else self.cmd,
                "inputs": [i.to_json() for i in self.inputs],
                "outputs": [o.to_json() for o in self.outputs]}


@dataclass(frozen=True)
class DvcImport:
    lockfile: str
    stages: tuple[ImportedStage, ...]
    skipped: tuple[str, ...]  # external or excluded deps: not recorded, not linked

    @property
    def created(self) -> int:
        refs = {a.ref for s in self.stages for a in (*s.inputs, *s.outputs) if a.created}
        return len(refs)

    def to_json(self) -> dict[str, Any]:
        return {"lockfile": self.lockfile, "created": self.created,
                "stages": [s.to_json() for s in self.stages], "skipped": list(self.skipped)}


def _is_model_content(path: Path) -> bool:
    from custody.validators.formats import FileFormat, detect

    if not path.is_file():
        return False
    try:
        with path.open("rb") as stream:
            head = stream.read(64)
    except OSError:
        return False
    return detect(head) in (FileFormat.SAFETENSORS, FileFormat.GGUF)


class _Importer:
    def __init__(self, lock: LockFile, *, ledger: Ledger, signer: Signer,
                 model_outs: tuple[str, ...], exclude: tuple[str, ...], threshold: Severity,
                 allow_flagged: bool, tool_version: str | None):
        self.lock = lock
        self.root = lock.repo_root
        self.ledger = ledger
        self.signer = signer
        self.model_outs = model_outs
        self.exclude = exclude
        self.threshold = threshold
        self.allow_flagged = allow_flagged
        self.tool_version = tool_version
        self.status: dict[Path, OutStatus] = {}
        self.done: dict[Path, ImportedArtifact] = {}
        self.skipped: list[str] = []

    def wanted(self, entry: DvcOut) -> bool:
        if entry.is_external:
            self.skipped.append(entry.path)
            return False
        if self.exclude and matches_any(relpath(entry.resolved, self.root), self.exclude):
            self.skipped.append(relpath(entry.resolved, self.root))
            return False
        return True

    def check_all(self, stages: list[Stage]) -> None:
        """Refuse before writing anything if any dep or out differs from ``dvc.lock``."""
        ignore = IgnoreRules(self.root)
        for stage in stages:
            for entry in (*stage.deps, *stage.outs):
                if entry.is_external or entry.resolved in self.status:
                    continue
                if self.exclude and matches_any(relpath(entry.resolved, self.root),
                                                self.exclude):
                    continue
                status = check_out(entry, self.root, ignore=ignore)
                if not status.ok:
                    raise status.error()
                self.status[entry.resolved] = status

    def info(self, entry: DvcOut) -> DvcInfo:
        return self.status[entry.resolved].info()

    def dep(self, entry: DvcOut) -> ImportedArtifact:
        target = entry.resolved
        if target in self.done:
            return self.done[target]
        for path, made in self.done.items():  # a file inside a folder output of a stage
            if path in target.parents:
                return made
        info = self.info(entry)
        made = self.ensure(target, info, kind="dataset", inputs=(), activity="derived_from",
                           details=None, any_name=True)
        self.done[target] = made
        return made

    def out(self, entry: DvcOut, stage: Stage, inputs: tuple[ImportedArtifact, ...]
            ) -> ImportedArtifact:
        target = entry.resolved
        rel = relpath(target, self.root)
        model = matches_any(rel, self.model_outs) or _is_model_content(target)
        made = self.ensure(target, self.info(entry), kind="model" if model else "dataset",
                           inputs=inputs, activity="trained_on" if model else "derived_from",
                           details=stage.details(self.lock.display), any_name=False)
        self.done[target] = made
        return made

    def ensure(self, target: Path, info: DvcInfo, *, kind: str,
               inputs: tuple[ImportedArtifact, ...], activity: str,
               details: dict[str, Any] | None, any_name: bool) -> ImportedArtifact:
        from custody.provenance.hashing.files import hash_path
        from custody.provenance.recording.record import record

        name = artifact_name(info.path)
        manifest = hash_path(target)
        hits = self.ledger.find_by_digest(manifest.algorithm, manifest.digest)
        same = [h for h in hits if h.name == name]
        reuse: ArtifactVersionPublic | None = None
        if any_name and hits:
            reuse = same[-1] if same else hits[-1]
        elif same and self._inputs_of(same[-1]) == {i.ref for i in inputs}:
            reuse = same[-1]
        if reuse is not None:
            return ImportedArtifact(info.path, reuse.ref, reuse.kind, manifest.ref, info.md5,
                                    created=False)
        result = record(target, name=name, kind=kind, ledger=self.ledger, signer=self.signer,
                        inputs=[i.ref for i in inputs], activity=activity,
                        threshold=self.threshold, allow_flagged=self.allow_flagged,
                        tool_version=self.tool_version, dvc=info, activity_details=details)
        return ImportedArtifact(info.path, result.version.ref, kind, result.manifest.ref,
                                info.md5, created=True)

    def _inputs_of(self, version: ArtifactVersionPublic) -> set[str]:
        return {v.ref for _edge, v in self.ledger.edges([version.id], upstream=True)}


def import_dvc_lock(
    lock_path: Path,
    *,
    ledger: Ledger,
    signer: Signer,
    model_outs: Sequence[str] = (),
    exclude: Sequence[str] = (),
    threshold: Severity | None = None,
    allow_flagged: bool = False,
    tool_version: str | None = None,
) -> DvcImport:
    """Record every stage of ``lock_path`` (deps → outs) in the ledger; see the module doc.

    ``model_outs``: globs (fnmatch, against the path from the repository root; a pattern without
    ``/`` also matches the file name) of outs to record as models. ``exclude``: globs of deps and
    outs to leave out (source code, for instance). Raises before writing anything when the
    workspace differs from ``dvc.lock``; a scan refusal stops at that artifact (what was
    recorded before it stays recorded: the ledger is append-only).
    """
    from custody.validators.findings import Severity

    lock = load_lock(lock_path)
    if not lock.stages:
        raise UsageError(f"{lock.display} has no stages", subject=str(lock.path),
                         hint="run `dvc repro` first")
    importer = _Importer(lock, ledger=ledger, signer=signer, model_outs=tuple(model_outs),
                         exclude=tuple(exclude), threshold=threshold or Severity.MEDIUM,
                         allow_flagged=allow_flagged, tool_version=tool_version)
    stages = lock.ordered()
    importer.check_all(stages)
    imported = []
    for stage in stages:
        inputs: list[ImportedArtifact] = []
        for entry in stage.deps:
            if importer.wanted(entry):
                made = importer.dep(entry)
                if made.ref not in {i.ref for i in inputs}:
                    inputs.append(made)
        outputs = tuple(importer.out(entry, stage, tuple(inputs))
                        for entry in stage.outs if importer.wanted(entry))
        imported.append(ImportedStage(stage.name, stage.cmd, tuple(inputs), outputs))
    return DvcImport(lockfile=lock.display, stages=tuple(imported),
                     skipped=tuple(dict.fromkeys(importer.skipped)))
