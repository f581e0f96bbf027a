"""Every RFC 6962 / RFC 9162 proof vector in tests/vectors/merkle: valid ones verify, broken
ones are refused with MerkleProofError; the happy paths are also regenerated from their leaves."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from support import vector_paths as _paths

from custody.provenance.log.merkle import (
    MerkleProofError,
    build_nodes,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_from_store,
    verify_consistency,
    verify_inclusion,
)

VECTORS = _paths.vector_folder("merkle")
INCLUSION = sorted((VECTORS / "inclusion").rglob("*.json"))
CONSISTENCY = sorted((VECTORS / "consistency").rglob("*.json"))

# The RFC 6962 reference tree the vectors were made from (certificate-transparency test data).
REFERENCE_LEAVES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]


def _id(path: Path) -> str:
    return str(path.relative_to(VECTORS))


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _b64(value: str) -> bytes:
    return base64.b64decode(value)


def _proof(vector: dict[str, Any]) -> list[bytes]:
    return [_b64(h) for h in vector["proof"] or []]


def test_the_vectors_are_all_there() -> None:
    assert len(INCLUSION) + len(CONSISTENCY) == 196
    happy = [p for p in INCLUSION + CONSISTENCY if not _load(p)["wantErr"]]
    assert len(happy) == 12


@pytest.mark.parametrize("path", INCLUSION, ids=_id)
def test_inclusion_vector(path: Path) -> None:
    v = _load(path)
    args = (_b64(v["leafHash"]), v["leafIdx"], v["treeSize"], _proof(v), _b64(v["root"]))
    if v["wantErr"]:
        with pytest.raises(MerkleProofError) as caught:
            verify_inclusion(*args)
        assert caught.value.rule.startswith("merkle.")
        assert caught.value.exit_code == 1
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", CONSISTENCY, ids=_id)
def test_consistency_vector(path: Path) -> None:
    v = _load(path)
    args = (v["size1"], v["size2"], _proof(v), _b64(v["root1"]), _b64(v["root2"]))
    if v["wantErr"]:
        with pytest.raises(MerkleProofError) as caught:
            verify_consistency(*args)
        assert caught.value.rule.startswith("merkle.")
    else:
        verify_consistency(*args)


HAPPY = [p for p in INCLUSION + CONSISTENCY if p.name == "happy-path.json"]


@pytest.mark.parametrize("path", HAPPY, ids=_id)
def test_generated_proofs_match_the_vectors(path: Path) -> None:
    hashes = [leaf_hash(leaf) for leaf in REFERENCE_LEAVES]
    nodes = build_nodes(hashes)

    def get_node(level: int, index: int) -> bytes:
        return nodes[level, index]

    v = _load(path)
    if "leafIdx" in v:
        assert _b64(v["leafHash"]) == hashes[v["leafIdx"]]
        assert root_from_store(v["treeSize"], get_node) == _b64(v["root"])
        assert inclusion_proof(v["leafIdx"], v["treeSize"], get_node) == _proof(v)
    else:
        assert root_from_store(v["size1"], get_node) == _b64(v["root1"])
        assert root_from_store(v["size2"], get_node) == _b64(v["root2"])
        assert consistency_proof(v["size1"], v["size2"], get_node) == _proof(v)
