"""RFC 6962 / RFC 9162 Merkle tree math: hashes, compact ranges, proofs and their verification.

Pure functions, no database. A leaf hash is ``SHA-256(0x00 || entry)`` and an interior node
``SHA-256(0x01 || left || right)``; the tree over ``n`` leaves splits at the largest power of two
below ``n`` (RFC 6962 §2.1), so it is made of *complete* subtrees: ``(level, index)`` names the
perfect subtree of ``2**level`` leaves starting at leaf ``index * 2**level``.

- :class:`CompactRange` is the frontier of a log: the roots of the complete subtrees that make up
  ``[0, size)``, one per set bit of ``size``. Appending a leaf costs O(log n) worst case, O(1)
  amortised, and returns every complete subtree it finished, so a store can keep them.
- Proofs are generated from such a store through ``get_node(level, index) -> bytes``
  (:func:`build_nodes` makes an in-memory one).
  :func:`inclusion_plan` and :func:`consistency_plan` say which nodes a proof needs (O(log n) of
  them; a store can fetch them in one query), :func:`inclusion_proof` and
  :func:`consistency_proof` build the proofs. Proof layout is RFC 9162 §2.1.3 and §2.1.4.
- :func:`verify_inclusion` and :func:`verify_consistency` follow RFC 9162 §2.1.3.2 and §2.1.4.2
  and raise :class:`MerkleProofError` on any mismatch; they never return a flag.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from custody.errors import MerkleProofError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
"""The root of the empty tree (RFC 6962: the hash of the empty string)."""

NodeGetter = Callable[[int, int], bytes]
"""``get_node(level, index)``: the hash of the complete subtree ``(level, index)``."""

_HINT_INCLUSION = (
    "the entry, the proof or the checkpoint was altered: fetch a fresh proof "
    "(`custody audit prove REF`) and run `custody audit verify` on the ledger"
)
_HINT_CONSISTENCY = (
    "the log no longer extends the checkpoint you hold: it was rewritten or forked; keep the old "
    "checkpoint as evidence and run `custody audit verify`"
)


class NodeID(NamedTuple):
    """The complete subtree of ``2**level`` leaves starting at leaf ``index * 2**level``.

    A tuple, so ``nodes[level, index]`` finds it in a dict keyed by NodeID."""

    level: int
    index: int  # type: ignore[assignment]  # shadows tuple.index, on purpose


@dataclass(frozen=True, slots=True)
class Node:
    """A complete subtree and its hash."""

    level: int
    index: int
    hash: bytes


ProofPlan = list[tuple[NodeID, ...]]
"""One tuple per proof hash: the complete subtrees whose right-to-left fold is that hash."""


# --- hashing ----------------------------------------------------------------------------------


def leaf_hash(entry: bytes) -> bytes:
    """RFC 6962 leaf hash: ``SHA-256(0x00 || entry)``."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def fold(hashes: Sequence[bytes]) -> bytes:
    """Hash adjacent complete subtrees (left to right, largest first) into their RFC 6962 root."""
    if not hashes:
        return EMPTY_ROOT
    root = hashes[-1]
    for h in reversed(hashes[:-1]):
        root = node_hash(h, root)
    return root


def root_of(leaf_hashes: Iterable[bytes]) -> bytes:
    """The root over ``leaf_hashes`` (full recomputation, O(n) time, O(log n) memory)."""
    frontier = CompactRange()
    for h in leaf_hashes:
        frontier.append(h)
    return frontier.root()


# --- compact ranges ---------------------------------------------------------------------------


def _range_nodes(begin: int, end: int) -> list[NodeID]:
    """The complete subtrees, left to right, that tile ``[begin, end)``.

    ``begin`` must be a multiple of the largest power of two not above ``end - begin`` (true for
    ``begin == 0``, the frontier of a log, and for the right part of any RFC 6962 split).
    """
    nodes: list[NodeID] = []
    pos, span = begin, end - begin
    for level in range(span.bit_length() - 1, -1, -1):
        if span >> level & 1:
            nodes.append(NodeID(level, pos >> level))
            pos += 1 << level
    return nodes


def frontier_nodes(size: int) -> list[NodeID]:
    """The complete subtrees making up a tree of ``size`` leaves (one per set bit of ``size``)."""
    _check_size(size)
    return _range_nodes(0, size)


class CompactRange:
    """The frontier of an append-only log: the roots of its complete subtrees, largest first.

    Persist it as ``(size, hashes)`` (``popcount(size)`` hashes, at most 64) and rebuild it with
    ``CompactRange(size, hashes)`` or :meth:`from_store`.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        _check_size(size)
        if len(hashes) != size.bit_count():
            raise ValueError(
                f"a tree of {size} leaves has {size.bit_count()} frontier hashes, got {len(hashes)}"
            )
        for h in hashes:
            _require_hash_arg(h, "frontier hash")
        self._size = size
        self._hashes = list(hashes)

    @classmethod
    def from_store(cls, size: int, get_node: NodeGetter) -> CompactRange:
        """Rebuild the frontier of a tree of ``size`` leaves with O(log n) node lookups."""
        return cls(size, [get_node(*n) for n in frontier_nodes(size)])

    @property
    def size(self) -> int:
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        return tuple(self._hashes)

    def append(self, leaf: bytes) -> list[Node]:
        """Add a leaf hash; return every complete subtree it finished, the leaf itself first."""
        _require_hash_arg(leaf, "leaf hash")
        index, level, current = self._size, 0, leaf
        finished = [Node(0, index, leaf)]
        while index & 1:
            current = node_hash(self._hashes.pop(), current)
            index >>= 1
            level += 1
            finished.append(Node(level, index, current))
        self._hashes.append(current)
        self._size += 1
        return finished

    def extend(self, leaves: Iterable[bytes]) -> list[Node]:
        """Append several leaf hashes; return all the complete subtrees they finished."""
        finished: list[Node] = []
        for leaf in leaves:
            finished.extend(self.append(leaf))
        return finished

    def root(self) -> bytes:
        """The RFC 6962 root of the tree (:data:`EMPTY_ROOT` when empty)."""
        return fold(self._hashes)


# --- proof generation -------------------------------------------------------------------------


def _path_plan(level: int, index: int, size: int) -> ProofPlan:
    """Inclusion path of the complete node ``(level, index)`` in a tree of ``size`` leaves."""
    last = (size - 1) >> level  # the node at ``level`` holding the tree's last leaf
    inner = (index ^ last).bit_length()  # below this, the path runs inside complete subtrees
    plan: ProofPlan = []
    for i in range(inner):
        lvl, sibling = level + i, (index >> i) ^ 1
        if (sibling + 1) << lvl <= size:
            plan.append((NodeID(lvl, sibling),))
        else:  # the right sibling is partial: its hash is the fold of its complete subtrees
            plan.append(tuple(_range_nodes(sibling << lvl, size)))
    node, lvl = index >> inner, level + inner
    while node:  # on the right border only left siblings exist
        if node & 1:
            plan.append((NodeID(lvl, node - 1),))
        node >>= 1
        lvl += 1
    return plan


def inclusion_plan(index: int, size: int) -> ProofPlan:
    """The nodes the inclusion proof of leaf ``index`` in a tree of ``size`` leaves needs."""
    _check_size(size)
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of {size} leaves")
    return _path_plan(0, index, size)


def consistency_plan(size1: int, size2: int) -> ProofPlan:
    """The nodes the RFC 9162 consistency proof from ``size1`` to ``size2`` leaves needs."""
    _check_size(size1)
    _check_size(size2)
    if size1 > size2:
        raise ValueError(f"cannot prove consistency from {size1} leaves to fewer ({size2})")
    if size1 in (0, size2):
        return []
    level = (size1 & -size1).bit_length() - 1  # the last complete subtree of the old tree
    index = (size1 - 1) >> level
    plan = _path_plan(level, index, size2)
    if index:  # unless size1 is a power of two, which the verifier knows as its old root
        plan.insert(0, (NodeID(level, index),))
    return plan


def build_proof(plan: ProofPlan, get_node: NodeGetter) -> list[bytes]:
    """Turn a plan into proof hashes, calling ``get_node`` once per node in the plan."""
    return [fold([get_node(n.level, n.index) for n in group]) for group in plan]


def inclusion_proof(index: int, size: int, get_node: NodeGetter) -> list[bytes]:
    """RFC 9162 inclusion proof (leaf's sibling first) with at most ~2·log2(size) node lookups."""
    return build_proof(inclusion_plan(index, size), get_node)


def consistency_proof(size1: int, size2: int, get_node: NodeGetter) -> list[bytes]:
    """RFC 9162 consistency proof from ``size1`` to ``size2`` with O(log n) node lookups."""
    return build_proof(consistency_plan(size1, size2), get_node)


def root_from_store(size: int, get_node: NodeGetter) -> bytes:
    """The root of the tree of ``size`` leaves from its ``popcount(size)`` frontier nodes."""
    return CompactRange.from_store(size, get_node).root()


def build_nodes(leaves: Iterable[bytes]) -> dict[NodeID, bytes]:
    """Every complete subtree over ``leaves``, keyed by position: an in-memory node store (for
    tests, benchmarks, and audits that recompute the stored nodes). Serve it to the proof
    functions as ``lambda level, index: nodes[level, index]``."""
    frontier = CompactRange()
    nodes: dict[NodeID, bytes] = {}
    for leaf in leaves:
        for node in frontier.append(leaf):
            nodes[NodeID(node.level, node.index)] = node.hash
    return nodes


# --- verification -----------------------------------------------------------------------------


def verify_inclusion(
    leaf: bytes,
    index: int,
    size: int,
    proof: Sequence[bytes],
    root: bytes,
    *,
    subject: str | None = None,
) -> None:
    """Check that ``leaf`` (a leaf hash) is leaf ``index`` of the tree of ``size`` with ``root``.

    Raises :class:`MerkleProofError` on any failure.
    """

    def refuse(message: str, rule: str = "merkle.inclusion_invalid") -> MerkleProofError:
        return MerkleProofError(message, rule=rule, hint=_HINT_INCLUSION, subject=subject)

    if size < 0 or not 0 <= index < size:
        raise refuse(f"leaf index {index} is outside a tree of {size} leaves")
    _require_hash(leaf, "the leaf hash", refuse)
    _require_hash(root, "the root hash", refuse)
    for i, p in enumerate(proof):
        _require_hash(p, f"proof hash #{i}", refuse)
    inner = (index ^ (size - 1)).bit_length()
    expected = inner + (index >> inner).bit_count()
    if len(proof) != expected:
        raise refuse(
            f"the inclusion proof for leaf {index} in a tree of {size} leaves must have "
            f"{expected} hashes, this one has {len(proof)}",
            rule="merkle.proof_malformed",
        )
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise refuse("the inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0 or not hmac.compare_digest(r, root):
        raise refuse(
            f"the inclusion proof for leaf {index} does not lead to the root of the tree of "
            f"{size} leaves: the entry is not in this tree as claimed"
        )


def verify_consistency(
    size1: int,
    size2: int,
    proof: Sequence[bytes],
    root1: bytes,
    root2: bytes,
    *,
    subject: str | None = None,
) -> None:
    """Check that the tree of ``size2`` leaves and ``root2`` extends that of ``size1``, ``root1``.

    Raises :class:`MerkleProofError` on any failure.
    """

    def refuse(message: str, rule: str = "merkle.consistency_invalid") -> MerkleProofError:
        return MerkleProofError(message, rule=rule, hint=_HINT_CONSISTENCY, subject=subject)

    if size1 < 0 or size2 < size1:
        raise refuse(f"a tree of {size2} leaves cannot extend one of {size1} leaves")
    if size1 == size2:
        if proof:
            raise refuse(
                "trees of equal size need an empty consistency proof", rule="merkle.proof_malformed"
            )
        if size1 == 0 and not hmac.compare_digest(root1, EMPTY_ROOT):
            raise refuse("the root of an empty tree must be SHA-256 of the empty string")
        if not hmac.compare_digest(root1, root2):
            raise refuse(f"two different roots for the same tree size {size1}: the log forked")
        return
    _require_hash(root2, "the new root hash", refuse)
    if size1 == 0:
        if not hmac.compare_digest(root1, EMPTY_ROOT):
            raise refuse("the root of an empty tree must be SHA-256 of the empty string")
        if proof:
            raise refuse(
                "any tree extends the empty tree: the proof must be empty",
                rule="merkle.proof_malformed",
            )
        return
    _require_hash(root1, "the old root hash", refuse)
    for i, p in enumerate(proof):
        _require_hash(p, f"proof hash #{i}", refuse)
    expected = len(consistency_plan(size1, size2))
    if len(proof) != expected:
        raise refuse(
            f"the consistency proof from {size1} to {size2} leaves must have {expected} hashes, "
            f"this one has {len(proof)}",
            rule="merkle.proof_malformed",
        )
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # a power of two: the old root is the first node of the path
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise refuse("the consistency proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or not hmac.compare_digest(fr, root1):
        raise refuse(
            f"the consistency proof does not reproduce the old root of {size1} leaves: the log "
            "was rewritten since that checkpoint"
        )
    if not hmac.compare_digest(sr, root2):
        raise refuse(
            f"the consistency proof does not reproduce the new root of {size2} leaves: the new "
            f"tree does not extend the old one"
        )


# --- helpers ----------------------------------------------------------------------------------


def _check_size(size: int) -> None:
    if size < 0:
        raise ValueError(f"tree size must not be negative, got {size}")


def _require_hash_arg(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ValueError(f"{what} must be {HASH_SIZE} bytes, got {len(value)}")


def _require_hash(value: bytes, what: str, refuse: Callable[[str, str], MerkleProofError]) -> None:
    if len(value) != HASH_SIZE:
        raise refuse(
            f"{what} is {len(value)} bytes, not a {HASH_SIZE}-byte SHA-256 hash",
            "merkle.proof_malformed",
        )
