"""Schema description, fingerprint and schema diff between a baseline and a snapshot."""

from __future__ import annotations

import math
from typing import Any

from custody.validators.dataset.drift import column_distance
from custody.validators.dataset.profile import (
    CATEGORICAL,
    NUMERIC,
    ColumnProfile,
    DatasetProfile,
)
from custody.validators.findings import Finding, Severity

_NEW_CATEGORY_MAX_DISTINCT = 50  # "low-cardinality": at most this many values in the baseline
_RENAME_TOLERANCE = 0.02  # profile distance under which a removed+added pair is a rename
_NEW_VALUE_SHARE = 0.005  # new values in an open vocabulary must reach this share of rows

_INT_BITS = {"int8": 8, "int16": 16, "int32": 32, "int64": 64,
             "uint8": 8, "uint16": 16, "uint32": 32, "uint64": 64}
_FLOAT_BITS = {"halffloat": 16, "float": 32, "double": 64}


def type_change(old: str, new: str) -> str:
    """``same``, ``widened`` (every old value fits the new type) or ``changed``."""
    if old == new:
        return "same"
    if old in _INT_BITS and new in _INT_BITS:
        signed_old, signed_new = not old.startswith("u"), not new.startswith("u")
        if signed_old == signed_new and _INT_BITS[new] > _INT_BITS[old]:
            return "widened"
        if not signed_old and signed_new and _INT_BITS[new] > _INT_BITS[old]:
            return "widened"
        return "changed"
    if old in _INT_BITS and new in _FLOAT_BITS:
        return "widened" if _FLOAT_BITS[new] == 64 or _INT_BITS[old] <= 16 else "changed"
    if old in _FLOAT_BITS and new in _FLOAT_BITS:
        return "widened" if _FLOAT_BITS[new] > _FLOAT_BITS[old] else "changed"
    if old.startswith("timestamp") and new.startswith("timestamp"):
        order = "smun"
        unit_old, unit_new = old[len("timestamp[")], new[len("timestamp[")]
        same_tz = old.split(",", 1)[1:] == new.split(",", 1)[1:]
        if same_tz and order.index(unit_new) > order.index(unit_old):
            return "widened"
    if old.startswith("date") and new.startswith("timestamp"):
        return "widened"
    return "changed"


def _rename_tolerance(a: ColumnProfile, b: ColumnProfile) -> float:
    """_RENAME_TOLERANCE, loosened to the sampling noise of small columns."""
    na = max(min(a.count - a.nulls, a.sample_size or a.count), 1)
    nb = max(min(b.count - b.nulls, b.sample_size or b.count), 1)
    return max(_RENAME_TOLERANCE, 3.0 * math.sqrt(1 / na + 1 / nb))


def _profile_distance(a: ColumnProfile, b: ColumnProfile) -> float:
    """A small number when two columns hold the same data (for rename detection)."""
    if a.kind != b.kind or abs(a.null_rate - b.null_rate) > _RENAME_TOLERANCE:
        return float("inf")
    return column_distance(a, b)


def diff_schemas(
    base: DatasetProfile, snap: DatasetProfile, path: str, *, csv: bool = False,
    ignore: frozenset[str] = frozenset(),
) -> list[Finding]:
    """Schema findings: added/removed/renamed/reordered columns, type, nullability, categories."""
    findings: list[Finding] = []
    bcols = {c["name"]: c for c in base.schema}
    scols = {c["name"]: c for c in snap.schema}
    removed = [n for n in bcols if n not in scols]
    added = [n for n in scols if n not in bcols]
    renamed: dict[str, str] = {}
    for old in removed:
        best = min(
            ((n, _profile_distance(base.columns[old], snap.columns[n])) for n in added
             if n not in renamed.values()),
            key=lambda t: t[1], default=None,
        )
        if best is not None and best[1] <= _rename_tolerance(base.columns[old],
                                                             snap.columns[best[0]]):
            renamed[old] = best[0]
    for old, new in renamed.items():
        findings.append(Finding(
            "schema.column_renamed", Severity.MEDIUM, path,
            f"column {old!r} appears renamed to {new!r} (same type and same data)",
            location=f"column {new}", evidence={"column": new, "old_name": old},
        ))
    for name in removed:
        if name not in renamed:
            findings.append(Finding(
                "schema.column_removed", Severity.HIGH, path,
                f"column {name!r} of the baseline is missing",
                location=f"column {name}", evidence={"column": name, "type": bcols[name]["type"]},
            ))
    for name in added:
        if name not in renamed.values():
            findings.append(Finding(
                "schema.column_added", Severity.MEDIUM, path,
                f"new column {name!r} ({scols[name]['type']})",
                location=f"column {name}", evidence={"column": name, "type": scols[name]["type"]},
            ))
    findings.extend(_reorder(base, snap, renamed, path))
    for name in (n for n in bcols if n in scols):
        findings.extend(_column_changes(bcols[name], scols[name], base, snap, path, csv, ignore))
    return findings


def _reorder(base: DatasetProfile, snap: DatasetProfile, renamed: dict[str, str],
             path: str) -> list[Finding]:
    snap_names = [c["name"] for c in snap.schema]
    inverse = {v: k for k, v in renamed.items()}
    snap_order = [inverse.get(n, n) for n in snap_names]
    common = [c["name"] for c in base.schema if c["name"] in snap_order]
    seen = [n for n in snap_order if n in common]
    if common == seen:
        return []
    return [Finding(
        "schema.column_reordered", Severity.LOW, path,
        "columns are in a different order than in the baseline",
        evidence={"baseline_order": common, "snapshot_order": seen},
    )]


def _column_changes(
    bc: dict[str, Any], sc: dict[str, Any], base: DatasetProfile, snap: DatasetProfile,
    path: str, csv: bool, ignore: frozenset[str],
) -> list[Finding]:
    name = bc["name"]
    out: list[Finding] = []
    change = type_change(bc["type"], sc["type"])
    if change != "same":
        widened = change == "widened"
        out.append(Finding(
            "schema.type_widened" if widened else "schema.type_changed",
            Severity.LOW if widened else Severity.HIGH, path,
            f"column {name!r} type {bc['type']} -> {sc['type']}"
            + (" (widened: every old value still fits)" if widened else ""),
            location=f"column {name}",
            evidence={"column": name, "baseline_type": bc["type"], "snapshot_type": sc["type"]},
        ))
    if not csv and bc["nullable"] != sc["nullable"]:
        loosened = sc["nullable"]
        out.append(Finding(
            "schema.nullability_changed", Severity.MEDIUM if loosened else Severity.LOW, path,
            f"column {name!r} is {'now nullable' if loosened else 'no longer nullable'}",
            location=f"column {name}",
            evidence={"column": name, "baseline_nullable": bc["nullable"],
                      "snapshot_nullable": sc["nullable"]},
        ))
    if name not in ignore:
        out.extend(_new_categories(base.columns[name], snap.columns[name], path))
    return out


def _new_categories(b: ColumnProfile, s: ColumnProfile, path: str) -> list[Finding]:
    if b.kind not in (CATEGORICAL, NUMERIC) or b.values is None or s.values is None:
        return []
    if b.kind == NUMERIC and (s.kind != NUMERIC or b.distinct_overflow):
        return []
    if len(b.values) > _NEW_CATEGORY_MAX_DISTINCT or b.count - b.nulls < 20 * len(b.values):
        return []
    known = {str(v) for v, _ in b.values}
    new = [[v, n] for v, n in s.values if str(v) not in known]
    if not new:
        return []
    total = sum(n for _, n in new)
    # A vocabulary with a long rare tail (e.g. counts) is not closed: a new value in the tail is
    # expected; report it only when the new values are common.
    rarest = min(n for _, n in b.values)
    # a number's value table is a measurement's range as often as a code list: a reading
    # just past the baseline's range (spo2 91 where it had 92..100) is not a new category
    closed = b.kind != NUMERIC and rarest >= max(5, 0.001 * (b.count - b.nulls))
    if not closed and total < _NEW_VALUE_SHARE * max(s.count - s.nulls, 1):
        return []
    shown = [str(v) for v, _ in new[:20]]
    return [Finding(
        "schema.new_category", Severity.MEDIUM, path,
        f"column {b.name!r} has {len(new)} value(s) never seen in the baseline: "
        + ", ".join(shown) + f" ({total} rows)",
        location=f"column {b.name}",
        evidence={"column": b.name, "new_values": new[:50], "rows_with_new_values": total,
                  "baseline_distinct": len(b.values)},
    )]
