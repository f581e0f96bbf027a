"""Merkle proof generation at 1,000,000 leaves: Custody's node-store proofs against pymerkle.

Custody serves proofs from stored complete subtrees through ``get_node(level, index)``; here the
store is an in-memory dict, so the figures are the proof logic itself (a database adds one query
for the O(log n) nodes a plan names). The peer is pymerkle's ``InmemoryTree`` (RFC 9162), measured
in the same run when it is installed (``pip install pymerkle``). Target (issue 6): under 5 ms per
inclusion and per consistency proof at 1,000,000 leaves.

    python benchmarks/bench_merkle.py [--leaves N] [--runs R] [--queries Q] [--no-peer]

Prints a markdown table: per-operation medians over R runs of Q random queries each, and p99 of
the single-operation timings.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from custody.provenance.log.merkle import (
    build_nodes,
    consistency_plan,
    consistency_proof,
    inclusion_plan,
    inclusion_proof,
    leaf_hash,
    root_from_store,
    verify_consistency,
    verify_inclusion,
)

Op = Callable[[int, int], Any]


def measure(op: Op, queries: list[tuple[int, int]], runs: int) -> tuple[float, float]:
    """(median over runs of the mean µs per call, p99 µs of all single calls)."""
    means, singles = [], []
    for _ in range(runs):
        times = []
        for a, b in queries:
            start = time.perf_counter_ns()
            op(a, b)
            times.append(time.perf_counter_ns() - start)
        means.append(statistics.fmean(times) / 1000)
        singles.extend(t / 1000 for t in times)
    singles.sort()
    return statistics.median(means), singles[int(len(singles) * 0.99) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--no-peer", action="store_true", help="skip pymerkle")
    args = parser.parse_args()
    n, rng = args.leaves, random.Random(6962)
    entries = [i.to_bytes(8, "big") for i in range(n)]

    start = time.perf_counter()
    nodes = build_nodes(leaf_hash(e) for e in entries)
    build_s = time.perf_counter() - start

    def get_node(level: int, index: int) -> bytes:
        return nodes[level, index]

    root = root_from_store(n, get_node)
    leaves = [(rng.randrange(n), n) for _ in range(args.queries)]
    pairs = [(rng.randrange(1, n), n) for _ in range(args.queries)]
    old_roots = {s1: root_from_store(s1, get_node) for s1, _ in pairs}
    incl = {i: inclusion_proof(i, n, get_node) for i, _ in leaves}
    cons = {s1: consistency_proof(s1, n, get_node) for s1, _ in pairs}
    lookups_i = [sum(map(len, inclusion_plan(i, s))) for i, s in leaves]
    lookups_c = [sum(map(len, consistency_plan(s1, s2))) for s1, s2 in pairs]

    rows: list[tuple[str, str, float, float, str]] = []

    def row(impl: str, what: str, op: Op, queries: list[tuple[int, int]], note: str) -> None:
        median, p99 = measure(op, queries, args.runs)
        rows.append((impl, what, median, p99, note))

    store = f"dict node store, {len(nodes):,} nodes, built in {build_s:.1f} s"
    row(
        "custody",
        "inclusion proof",
        lambda i, s: inclusion_proof(i, s, get_node),
        leaves,
        f"{statistics.fmean(lookups_i):.1f} lookups avg, {max(lookups_i)} max; {store}",
    )
    row(
        "custody",
        "consistency proof",
        lambda a, b: consistency_proof(a, b, get_node),
        pairs,
        f"{statistics.fmean(lookups_c):.1f} lookups avg, {max(lookups_c)} max",
    )
    row(
        "custody",
        "verify inclusion",
        lambda i, s: verify_inclusion(leaf_hash(entries[i]), i, s, incl[i], root),
        leaves,
        "",
    )
    row(
        "custody",
        "verify consistency",
        lambda a, b: verify_consistency(a, b, cons[a], old_roots[a], root),
        pairs,
        "",
    )

    if not args.no_peer:
        try:
            from pymerkle import InmemoryTree
        except ImportError:
            rows.append(("pymerkle", "(not installed)", float("nan"), float("nan"), ""))
        else:
            start = time.perf_counter()
            tree = InmemoryTree(algorithm="sha256")
            for e in entries:
                tree.append_entry(e)
            peer_build = time.perf_counter() - start
            assert tree.get_root(n) == root, "pymerkle disagrees on the RFC 6962 root"
            # pymerkle counts leaves from one
            row(
                "pymerkle",
                "inclusion proof",
                lambda i, s: tree.prove_inclusion(i + 1, s),
                leaves,
                f"InmemoryTree, built in {peer_build:.1f} s",
            )
            row("pymerkle", "consistency proof", tree.prove_consistency, pairs, "")

    print(f"Merkle proofs at {n:,} leaves ({args.runs} runs x {args.queries} random queries)\n")
    print("| implementation | operation | median µs/op | p99 µs/op | notes |")
    print("| --- | --- | ---: | ---: | --- |")
    for impl, what, median, p99, note in rows:
        print(f"| {impl} | {what} | {median:.1f} | {p99:.1f} | {note} |")
    worst = max(m for impl, what, m, _, _ in rows if impl == "custody" and "proof" in what)
    print(f"\nTarget: proof generation < 5000 µs; worst Custody median {worst:.1f} µs.")


if __name__ == "__main__":
    main()
