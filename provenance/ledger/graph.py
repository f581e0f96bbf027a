"""Lineage queries as recursive CTEs that run unchanged on SQLite and PostgreSQL.

``as_of`` is a checkpoint size: only entries with an index below it count, which is the graph as
it was when that checkpoint was signed (time travel).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlmodel import Session

_WALK = """
WITH RECURSIVE walk(input_version_id, output_version_id, activity, depth) AS (
    SELECT e.input_version_id, e.output_version_id, e.activity, 1
    FROM lineage_edges e
    WHERE e.{near} = :root AND e.entry_idx < :as_of
  UNION
    SELECT e.input_version_id, e.output_version_id, e.activity, w.depth + 1
    FROM lineage_edges e JOIN walk w ON e.{near} = w.{far}
    WHERE w.depth < :depth AND e.entry_idx < :as_of
)
SELECT input_version_id, output_version_id, activity, MIN(depth) AS depth
FROM walk GROUP BY input_version_id, output_version_id, activity
ORDER BY depth, input_version_id, output_version_id
"""
# Upstream: from an output to the inputs it was made from; downstream: the other way round.
_UPSTREAM = _WALK.format(near="output_version_id", far="input_version_id")
_DOWNSTREAM = _WALK.format(near="input_version_id", far="output_version_id")

NO_LIMIT = 2**31 - 1  # entry indices are 32-bit integers on every backend


@dataclass(frozen=True)
class EdgeRow:
    input_id: int
    output_id: int
    activity: str
    depth: int


def walk_edges(
    session: Session, root_id: int, *, upstream: bool, depth: int, as_of: int | None = None
) -> list[EdgeRow]:
    """Every edge within ``depth`` hops of ``root_id``, with the hop at which it is first met."""
    rows = session.connection().execute(
        text(_UPSTREAM if upstream else _DOWNSTREAM),
        {"root": root_id, "depth": depth, "as_of": NO_LIMIT if as_of is None else as_of},
    )
    return [EdgeRow(int(r[0]), int(r[1]), str(r[2]), int(r[3])) for r in rows]
