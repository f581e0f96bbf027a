"""Property tests for provenance.merkle against the RFC 6962 definitions (MTH, PATH, PROOF) written
out naively here: for random trees every proof generated verifies and equals the RFC's, and any
one-bit change to a proof hash, a root or a leaf is refused."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from custody.provenance.log.merkle import (
    EMPTY_ROOT,
    CompactRange,
    MerkleProofError,
    NodeID,
    build_nodes,
    consistency_plan,
    consistency_proof,
    frontier_nodes,
    inclusion_plan,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_store,
    root_of,
    verify_consistency,
    verify_inclusion,
)

MAX_LEAVES = 700
LEAVES = [leaf_hash(i.to_bytes(4, "big")) for i in range(MAX_LEAVES)]
NODES = build_nodes(LEAVES)

settings.register_profile("merkle", deadline=None, max_examples=150)
MERKLE = settings.get_profile("merkle")


# --- RFC 6962 §2.1, literally ----------------------------------------------------------------


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves: Sequence[bytes]) -> bytes:
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    if len(leaves) <= 1:
        return []
    k = _split(len(leaves))
    if m < k:
        return [*path(m, leaves[:k]), mth(leaves[k:])]
    return [*path(m - k, leaves[k:]), mth(leaves[:k])]


def subproof(m: int, leaves: Sequence[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [mth(leaves)]
    k = _split(n)
    if m <= k:
        return [*subproof(m, leaves[:k], complete), mth(leaves[k:])]
    return [*subproof(m - k, leaves[k:], False), mth(leaves[:k])]


def store(size: int) -> Callable[[int, int], bytes]:
    """The shared node store, seen as a tree of ``size`` leaves: asking for a node that is not a
    complete subtree of that tree is a bug in the proof code."""

    def get_node(level: int, index: int) -> bytes:
        assert (index + 1) << level <= size, f"node {(level, index)} is not in a tree of {size}"
        return NODES[level, index]

    return get_node


def flip(value: bytes, bit: int) -> bytes:
    bit %= len(value) * 8
    out = bytearray(value)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


sizes = st.integers(min_value=1, max_value=MAX_LEAVES)


@st.composite
def leaf_in_tree(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(sizes)
    return draw(st.integers(0, size - 1)), size


@st.composite
def two_sizes(draw: st.DrawFn, min_size1: int = 1) -> tuple[int, int]:
    size2 = draw(sizes)
    return draw(st.integers(min(min_size1, size2), size2)), size2


# --- roots and compact ranges -----------------------------------------------------------------


@MERKLE
@given(st.integers(0, MAX_LEAVES))
def test_roots_match_the_rfc_definition(size: int) -> None:
    want = mth(LEAVES[:size])
    assert root_of(LEAVES[:size]) == want
    assert root_from_store(size, store(size)) == want
    assert len(frontier_nodes(size)) == size.bit_count()


@MERKLE
@given(st.integers(0, 300), st.integers(0, 300))
def test_compact_range_persists_and_resumes(first: int, more: int) -> None:
    frontier = CompactRange()
    finished = frontier.extend(LEAVES[:first])
    saved = (frontier.size, frontier.hashes)
    resumed = CompactRange(*saved)
    finished += resumed.extend(LEAVES[first : first + more])
    size = min(first + more, MAX_LEAVES)
    assert resumed.size == size
    assert resumed.root() == mth(LEAVES[:size])
    assert resumed.hashes == CompactRange.from_store(size, store(size)).hashes
    # append reports every complete subtree exactly once, with its true hash
    assert {(n.level, n.index): n.hash for n in finished} == {
        k: v for k, v in NODES.items() if (k.index + 1) << k.level <= size
    }
    assert len(finished) == len({(n.level, n.index) for n in finished})


def test_compact_range_rejects_a_wrong_number_of_hashes() -> None:
    with pytest.raises(ValueError, match="frontier hashes"):
        CompactRange(3, [LEAVES[0]])


# --- inclusion --------------------------------------------------------------------------------


@MERKLE
@given(leaf_in_tree())
def test_inclusion_proofs_verify_and_match_the_rfc(case: tuple[int, int]) -> None:
    index, size = case
    proof = inclusion_proof(index, size, store(size))
    assert proof == path(index, LEAVES[:size])
    verify_inclusion(LEAVES[index], index, size, proof, mth(LEAVES[:size]))


@MERKLE
@given(leaf_in_tree(), st.integers(0, 10**6), st.integers(0, 10**6))
def test_any_bit_flip_in_an_inclusion_proof_is_refused(
    case: tuple[int, int], which: int, bit: int
) -> None:
    index, size = case
    proof = inclusion_proof(index, size, store(size))
    root = mth(LEAVES[:size])
    if proof:
        bad = list(proof)
        bad[which % len(bad)] = flip(bad[which % len(bad)], bit)
        with pytest.raises(MerkleProofError):
            verify_inclusion(LEAVES[index], index, size, bad, root)
    with pytest.raises(MerkleProofError):
        verify_inclusion(LEAVES[index], index, size, proof, flip(root, bit))
    with pytest.raises(MerkleProofError):
        verify_inclusion(flip(LEAVES[index], bit), index, size, proof, root)


@MERKLE
@given(leaf_in_tree(), st.integers(0, MAX_LEAVES))
def test_an_inclusion_proof_is_refused_for_another_index_or_size(
    case: tuple[int, int], other: int
) -> None:
    index, size = case
    proof = inclusion_proof(index, size, store(size))
    root = mth(LEAVES[:size])
    if other != index:
        with pytest.raises(MerkleProofError):
            verify_inclusion(LEAVES[index], other, size, proof, root)
    # the size is bound to the root by the checkpoint: pair each size with its own root
    if index < other != size and inclusion_proof(index, other, store(other)) != proof:
        with pytest.raises(MerkleProofError):
            verify_inclusion(LEAVES[index], index, other, proof, mth(LEAVES[:other]))
    with pytest.raises(MerkleProofError):
        verify_inclusion(LEAVES[index], index, size, [*proof, LEAVES[0]], root)


# --- consistency ------------------------------------------------------------------------------


@MERKLE
@given(two_sizes(min_size1=0))
def test_consistency_proofs_verify_and_match_the_rfc(case: tuple[int, int]) -> None:
    size1, size2 = case
    proof = consistency_proof(size1, size2, store(size2))
    want = subproof(size1, LEAVES[:size2], True) if 0 < size1 < size2 else []
    assert proof == want
    verify_consistency(size1, size2, proof, mth(LEAVES[:size1]), mth(LEAVES[:size2]))


@MERKLE
@given(two_sizes(), st.integers(0, 10**6), st.integers(0, 10**6))
def test_any_bit_flip_in_a_consistency_proof_is_refused(
    case: tuple[int, int], which: int, bit: int
) -> None:
    size1, size2 = case
    proof = consistency_proof(size1, size2, store(size2))
    root1, root2 = mth(LEAVES[:size1]), mth(LEAVES[:size2])
    if proof:
        bad = list(proof)
        bad[which % len(bad)] = flip(bad[which % len(bad)], bit)
        with pytest.raises(MerkleProofError):
            verify_consistency(size1, size2, bad, root1, root2)
    with pytest.raises(MerkleProofError):
        verify_consistency(size1, size2, proof, flip(root1, bit), root2)
    with pytest.raises(MerkleProofError):
        verify_consistency(size1, size2, proof, root1, flip(root2, bit))


@MERKLE
@given(two_sizes(), st.integers(1, MAX_LEAVES))
def test_a_consistency_proof_is_refused_for_other_sizes(case: tuple[int, int], other: int) -> None:
    size1, size2 = case
    proof = consistency_proof(size1, size2, store(size2))
    root1, root2 = mth(LEAVES[:size1]), mth(LEAVES[:size2])
    # a size is bound to its root by the checkpoint: pair each size with its own root
    if other != size1 and other <= size2 and consistency_proof(other, size2, store(size2)) != proof:
        with pytest.raises(MerkleProofError):
            verify_consistency(other, size2, proof, mth(LEAVES[:other]), root2)
    if other != size2 and other >= size1 and consistency_proof(size1, other, store(other)) != proof:
        with pytest.raises(MerkleProofError):
            verify_consistency(size1, other, proof, root1, mth(LEAVES[:other]))
    with pytest.raises(MerkleProofError):
        verify_consistency(size1, size2, [*proof, LEAVES[0]], root1, root2)


def test_every_tree_extends_the_empty_tree_but_only_with_the_empty_root() -> None:
    verify_consistency(0, 5, [], EMPTY_ROOT, mth(LEAVES[:5]))
    with pytest.raises(MerkleProofError):
        verify_consistency(0, 5, [], LEAVES[0], mth(LEAVES[:5]))
    with pytest.raises(MerkleProofError, match="forked"):
        verify_consistency(5, 5, [], mth(LEAVES[:5]), mth(LEAVES[:4]))


def test_generation_rejects_impossible_requests() -> None:
    with pytest.raises(ValueError, match="outside"):
        inclusion_plan(5, 5)
    with pytest.raises(ValueError, match="fewer"):
        consistency_plan(6, 5)


# --- huge trees: O(log n) node lookups --------------------------------------------------------
# A tree whose leaves are all equal has one hash per level, so any size is cheap to serve, and
# the RFC root of n leaves depends on n alone: an independent reference at sizes up to 2**48.


_SAME_LEAF = leaf_hash(b"same")


@functools.cache
def _level_hash(level: int) -> bytes:
    return _SAME_LEAF if level == 0 else node_hash(_level_hash(level - 1), _level_hash(level - 1))


@functools.cache
def _uniform_mth(n: int) -> bytes:
    if n == 1:
        return _SAME_LEAF
    k = _split(n)
    return node_hash(_uniform_mth(k), _uniform_mth(n - k))


huge = st.integers(min_value=1, max_value=2**48)


@MERKLE
@given(huge, st.data())
def test_huge_trees_need_logarithmic_lookups(size: int, data: st.DataObject) -> None:
    calls: list[NodeID] = []

    def get_node(level: int, index: int) -> bytes:
        assert (index + 1) << level <= size
        calls.append(NodeID(level, index))
        return _level_hash(level)

    depth = (size - 1).bit_length()
    index = data.draw(st.integers(0, size - 1))
    proof = inclusion_proof(index, size, get_node)
    assert len(calls) <= 2 * depth + 1
    verify_inclusion(_SAME_LEAF, index, size, proof, _uniform_mth(size))

    calls.clear()
    size1 = data.draw(st.integers(1, size))
    proof = consistency_proof(size1, size, get_node)
    assert len(calls) <= 2 * depth + 2
    verify_consistency(size1, size, proof, _uniform_mth(size1), _uniform_mth(size))


def test_a_million_leaves_in_few_lookups() -> None:
    plan = inclusion_plan(999_999 - 2**15, 1_000_000)
    assert sum(len(group) for group in plan) <= 40
    plan = consistency_plan(654_321, 1_000_000)
    assert sum(len(group) for group in plan) <= 42


def test_leaf_and_node_hashes_are_rfc_6962() -> None:
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert (
        node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    )
