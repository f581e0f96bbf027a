"""Manifests: the per-file ``(relpath, size, sha256)`` list of an artifact and its root digest.

Digest names carry their parameters:

- ``sha256``: a single file; the value is the file's own SHA-256 (what ``sha256sum`` prints).
- ``sha256-manifest-v1``: a directory; SHA-256 over ``custody-manifest-v1\\0`` followed, for each
  file in sorted POSIX relpath order, by ``relpath\\0size\\0hexdigest\\0``. Names, sizes and
  contents are all bound, so a rename changes the root.

``resources`` is the OpenSSF Model Signing (OMS) list: ``{"name", "algorithm", "digest"}``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from custody.errors import VerificationError

_FILE_DIGEST = "sha256"
_TREE_DIGEST = "sha256-manifest-v1"
_TREE_PREFIX = b"custody-manifest-v1\x00"


@dataclass(frozen=True, order=True)
class FileEntry:
    relpath: str
    size: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.relpath, "size": self.size, "algorithm": "sha256",
                "digest": self.sha256}


@dataclass(frozen=True)
class Manifest:
    name: str
    is_directory: bool
    files: tuple[FileEntry, ...]
    algorithm: str
    digest: str

    @classmethod
    def for_file(cls, name: str, entry: FileEntry) -> Manifest:
        return cls(name=name, is_directory=False, files=(entry,), algorithm=_FILE_DIGEST,
                   digest=entry.sha256)

    @classmethod
    def for_directory(cls, name: str, entries: list[FileEntry]) -> Manifest:
        files = tuple(sorted(entries))
        return cls(name=name, is_directory=True, files=files, algorithm=_TREE_DIGEST,
                   digest=_tree_digest(files))

    @property
    def ref(self) -> str:
        """``algorithm:hex``, the form digests take in references and messages."""
        return f"{self.algorithm}:{self.digest}"

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def resources(self) -> list[dict[str, Any]]:
        return [f.to_json() for f in self.files]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": "directory" if self.is_directory else "file",
            "digest": {"algorithm": self.algorithm, "value": self.digest},
            "size": self.total_size,
            "resources": self.resources(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        """Rebuild a manifest from its JSON and check that its root digest matches its files."""
        try:
            files = tuple(
                FileEntry(str(r["name"]), int(r["size"]), str(r["digest"]))
                for r in data["resources"]
            )
            algorithm = str(data["digest"]["algorithm"])
            digest = str(data["digest"]["value"])
            is_directory = data["type"] == "directory"
            name = str(data["name"])
        except (KeyError, TypeError, ValueError) as exc:
            raise VerificationError(
                f"recorded manifest is malformed (field {exc})", rule="manifest.malformed"
            ) from None
        manifest = (cls.for_directory(name, list(files)) if is_directory
                    else cls.for_file(name, files[0]) if len(files) == 1 else None)
        if manifest is None or (manifest.algorithm, manifest.digest) != (algorithm, digest):
            raise VerificationError(
                "recorded manifest does not match its own root digest",
                rule="manifest.inconsistent",
            )
        return manifest


def _tree_digest(files: tuple[FileEntry, ...]) -> str:
    h = hashlib.sha256(_TREE_PREFIX)
    for f in files:
        h.update(f"{f.relpath}\x00{f.size}\x00{f.sha256}\x00".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class ManifestDiff:
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]
    renamed: tuple[tuple[str, str], ...]  # (old, new) with identical content
    content: tuple[str, str] | None = None  # single files: (recorded, actual) sha256

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.renamed)

    def describe(self, limit: int = 5) -> str:
        if self.content is not None:
            old, new = self.content
            return f"content changed (sha256 recorded {old[:16]}…, now {new[:16]}…)"
        parts: list[str] = []
        for label, items in (
            ("changed", self.changed),
            ("added", self.added),
            ("removed", self.removed),
            ("renamed", tuple(f"{a} → {b}" for a, b in self.renamed)),
        ):
            if items:
                shown = ", ".join(items[:limit]) + (" …" if len(items) > limit else "")
                parts.append(f"{label}: {shown}")
        return "; ".join(parts) or "no difference"


def diff_manifests(recorded: Manifest, actual: Manifest) -> ManifestDiff:
    """What changed from ``recorded`` to ``actual``, file by file."""
    old = {f.relpath: f for f in recorded.files}
    new = {f.relpath: f for f in actual.files}
    changed = tuple(p for p in sorted(old.keys() & new.keys()) if old[p] != new[p])
    removed = sorted(old.keys() - new.keys())
    added = sorted(new.keys() - old.keys())
    renamed: list[tuple[str, str]] = []
    by_digest = {(new[p].sha256, new[p].size): p for p in added}
    for path in list(removed):
        key = (old[path].sha256, old[path].size)
        if key in by_digest:
            target = by_digest.pop(key)
            renamed.append((path, target))
            removed.remove(path)
            added.remove(target)
    if not recorded.is_directory and not actual.is_directory:
        # A single file is compared by content; its name is not part of its digest.
        content = (recorded.digest, actual.digest) if recorded.digest != actual.digest else None
        return ManifestDiff((), (), (), (), content)
    return ManifestDiff(tuple(added), tuple(removed), changed, tuple(renamed))
