"""Row evidence a person can use: every row a poisoning finding names, in a file.

A finding's JSON evidence lists at most ``max_evidence_rows`` rows (1,000 by default; its
``row_count`` is the total and ``rows_truncated`` says whether the list was cut).
``write_rows`` writes all of them, one line per (row, rule), as Parquet or CSV (by the file
name's extension), most suspicious first within a rule:

- ``row``: 0-based position in the snapshot (file order; files of a directory in sorted order);
- ``id``: the row's id column value (empty without an id column);
- ``rule``: the ``poison.*`` rule that named it;
- ``candidate``: true when the finding proves labels were changed in a region but cannot tell
  which rows (``rows_are_candidates``): review them as a group;
- ``label``: the row's label in the snapshot;
- ``score``: how unlikely the baseline finds that label there, 1 - p(label | row) under the
  baseline model (``model.py``);
- ``baseline_label`` and ``baseline_p``: the label the baseline model finds most likely for
  the row (what its neighbourhood says) and that label's probability.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from custody.errors import UsageError

if TYPE_CHECKING:
    from custody.validators.dataset.compare import DatasetComparison

COLUMNS = ("row", "id", "rule", "candidate", "label", "score", "baseline_label", "baseline_p")


def _values(snapshot: Path, columns: list[str], rows: np.ndarray,
            typing: pa.Schema | None) -> dict[str, list[Any]]:
    """The given columns' values at ``rows`` (sorted positions), in one streamed pass."""
    from custody.validators.dataset.reader import open_source

    out: dict[str, list[Any]] = {c: [] for c in columns}
    if not columns or len(rows) == 0:
        return out
    source = open_source(snapshot, typing)
    offset = 0
    for batch in source.batches(columns):
        lo, hi = np.searchsorted(rows, [offset, offset + batch.num_rows])
        if hi > lo:
            from custody.validators.dataset.profile import arrow_indices

            picked = batch.take(arrow_indices(rows[lo:hi] - offset))
            for c in columns:
                out[c] += picked.column(c).to_pylist()
        offset += batch.num_rows
    return out


def _evidence_table(comparison: DatasetComparison, snapshot: Path,
                   typing: pa.Schema | None = None) -> pa.Table:
    """The rows of every poisoning finding as a table (see the module docstring)."""
    details = comparison.details
    parts: list[tuple[str, np.ndarray, bool]] = [
        (rule, rows, False) for rule, rows in comparison.rows.items()]
    parts += [(rule, rows, True) for rule, rows in comparison.candidates.items()]
    every = np.unique(np.concatenate([r for _, r, _ in parts])) if parts \
        else np.zeros(0, dtype=np.int64)
    wanted = [c for c in (comparison.id_column, comparison.label) if c]
    values = _values(snapshot, list(dict.fromkeys(wanted)), every, typing)
    at = {int(r): i for i, r in enumerate(every)}
    known = {int(r): i for i, r in enumerate(details.get("rows", np.zeros(0, dtype=np.int64)))}
    names = comparison.label_names
    cols: dict[str, list[Any]] = {c: [] for c in COLUMNS}
    for rule, rows, candidate in sorted(parts, key=lambda p: (p[0], p[2])):
        order = sorted((int(r) for r in rows),
                       key=lambda r: details["p_label"][known[r]] if r in known else 1.0)
        for r in order:
            i, k = at[r], known.get(r)
            cols["row"].append(r)
            cols["id"].append(None if comparison.id_column is None
                              else _text(values[comparison.id_column][i]))
            cols["rule"].append(rule)
            cols["candidate"].append(candidate)
            cols["label"].append(None if comparison.label is None
                                 else _text(values[comparison.label][i]))
            if k is None:
                cols["score"].append(None)
                cols["baseline_label"].append(None)
                cols["baseline_p"].append(None)
            else:
                cols["score"].append(round(1.0 - float(details["p_label"][k]), 6))
                cols["baseline_label"].append(_text(names[int(details["predicted"][k])]))
                cols["baseline_p"].append(round(float(details["p_predicted"][k]), 6))
    types = {"row": pa.int64(), "id": pa.string(), "rule": pa.string(),
             "candidate": pa.bool_(), "label": pa.string(), "score": pa.float64(),
             "baseline_label": pa.string(), "baseline_p": pa.float64()}
    return pa.table({c: pa.array(cols[c], type=types[c]) for c in COLUMNS})


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def write_rows(comparison: DatasetComparison, snapshot: Path, out: Path,
               typing: pa.Schema | None = None) -> int:
    """Write the evidence table to ``out`` (``.parquet`` or ``.csv``); the number of lines."""
    suffix = out.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise UsageError(f"--rows-out {out}: the file name must end in .parquet or .csv",
                         hint="for example --rows-out suspicious-rows.csv")
    table = _evidence_table(comparison, snapshot, typing)
    tmp = out.with_name(out.name + ".tmp")
    if suffix == ".csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, tmp)
    else:
        import pyarrow.parquet as pq

        pq.write_table(table, tmp)
    tmp.replace(out)
    return int(table.num_rows)
