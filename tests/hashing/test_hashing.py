"""Hashing and manifests: streamed digests, deterministic manifests, names bound into roots."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from custody.errors import VerificationError
from custody.provenance.hashing.files import hash_path, sha256_file
from custody.provenance.hashing.manifest import Manifest, diff_manifests


def test_file_digest_is_plain_sha256(tmp_path: Path) -> None:
    data = bytes(range(256)) * 40_000  # larger than one block
    f = tmp_path / "w.bin"
    f.write_bytes(data)
    assert sha256_file(f) == (len(data), hashlib.sha256(data).hexdigest())
    manifest = hash_path(f)
    assert manifest.algorithm == "sha256"
    assert manifest.digest == hashlib.sha256(data).hexdigest()
    assert manifest.resources() == [{"name": "w.bin", "size": len(data), "algorithm": "sha256",
                                     "digest": hashlib.sha256(data).hexdigest()}]


def _tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def test_directory_manifest_is_sorted_and_deterministic(tmp_path: Path) -> None:
    files = {f"d{i % 3}/f{i:03d}.bin": bytes([i]) * (i + 1) for i in range(50)}
    a = hash_path(_tree(tmp_path / "a", files), workers=1)
    b = hash_path(_tree(tmp_path / "b", dict(reversed(files.items()))), workers=8)
    assert [f.relpath for f in a.files] == sorted(files)
    assert a.digest == b.digest and a.files == b.files
    assert a.algorithm == "sha256-manifest-v1"
    for entry in a.files:
        assert entry.sha256 == hashlib.sha256(files[entry.relpath]).hexdigest()


def test_rename_changes_root_and_is_reported(tmp_path: Path) -> None:
    root = _tree(tmp_path / "m", {"a.bin": b"A", "b.bin": b"B"})
    before = hash_path(root)
    (root / "a.bin").rename(root / "c.bin")
    after = hash_path(root)
    assert before.digest != after.digest
    diff = diff_manifests(before, after)
    assert diff.renamed == (("a.bin", "c.bin"),)
    assert not diff.added and not diff.removed and not diff.changed


def test_manifest_json_round_trip_checks_its_root(tmp_path: Path) -> None:
    manifest = hash_path(_tree(tmp_path / "m", {"x": b"1", "y/z": b"2"}))
    assert Manifest.from_json(manifest.to_json()) == manifest
    forged = manifest.to_json()
    forged["resources"][0]["digest"] = "00" * 32
    with pytest.raises(VerificationError):
        Manifest.from_json(forged)


def test_empty_directory_is_an_error(tmp_path: Path) -> None:
    from custody.errors import ArtifactError

    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="empty directory"):
        hash_path(tmp_path / "empty")
