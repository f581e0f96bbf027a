"""Balanced shards: items split into groups of nearly equal total size (greedy by bytes).

The largest item goes first to the lightest shard (longest-processing-time first), so no shard
holds more than the average plus the largest single item. Each shard keeps its items in their
original order, and the split depends only on the sizes: the same listing gives the same shards.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence


def shard_count(items: int, workers: int, *, per_worker: int = 4) -> int:
    """How many shards for ``items`` on ``workers``: a few per worker (a lost worker costs
    little to redo, a slow one is balanced by the others), never more than the items."""
    return max(1, min(items, workers * per_worker))


def balance(sizes: Sequence[int], shards: int) -> list[list[int]]:
    """Indices of ``sizes`` split into at most ``shards`` non-empty groups of balanced bytes.

    Empty files weigh one byte, so many of them still spread over the shards.
    """
    count = max(1, min(shards, len(sizes)))
    heap = [(0, n) for n in range(count)]
    groups: list[list[int]] = [[] for _ in range(count)]
    for index in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        load, shard = heapq.heappop(heap)
        groups[shard].append(index)
        heapq.heappush(heap, (load + max(1, sizes[index]), shard))
    return [sorted(group) for group in groups if group]
