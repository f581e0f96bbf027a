"""Balanced shards: every item once, loads within the greedy bound, the same split each time."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from custody.provenance.execution.shards import balance, shard_count


@given(st.lists(st.integers(0, 10**9), min_size=1, max_size=300), st.integers(1, 40))
def test_every_item_lands_in_exactly_one_shard_within_the_greedy_bound(
        sizes: list[int], shards: int) -> None:
    groups = balance(sizes, shards)
    assert sorted(i for g in groups for i in g) == list(range(len(sizes)))
    assert all(g == sorted(g) and g for g in groups)
    assert len(groups) == min(shards, len(sizes))
    weights = [max(1, s) for s in sizes]
    loads = [sum(weights[i] for i in g) for g in groups]
    assert max(loads) <= sum(weights) / len(groups) + max(weights)
    assert balance(sizes, shards) == groups


def test_one_huge_file_gets_a_shard_of_its_own() -> None:
    groups = balance([5, 1000, 5, 5, 5], 2)
    assert [1] in groups


def test_shard_count_is_a_few_per_worker_and_never_more_than_the_items() -> None:
    assert shard_count(1000, 2) == 8
    assert shard_count(3, 2) == 3
    assert shard_count(0, 2) == 1
