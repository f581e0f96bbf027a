"""Compare a dataset snapshot with its baseline: schema, drift and poisoning in one pass each.

``compare_datasets(snapshot, baseline)`` streams the baseline once (profile, row sample, row
hashes, labels, ids) and the snapshot once (the same, plus an encoded feature matrix), then
runs the schema diff and drift rules on the two profiles and the poisoning rules on the rows.
The baseline may also be given as a stored profile (``baseline_profile``): schema and drift rules
then run as usual, the row-level poisoning rules are skipped (and say so).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from custody.errors import DatasetReadError
from custody.validators.dataset.drift import (
    Tolerances,
    compare_profiles,
    is_time_like,
)
from custody.validators.dataset.encode import (
    MAX_CLASSES,
    FeaturePlan,
    LabelCodes,
    build_plan,
)
from custody.validators.dataset.profile import (
    OTHER,
    TEMPORAL,
    DatasetProfile,
    Profiler,
    column_kind,
)
from custody.validators.dataset.reader import DataSource, open_source
from custody.validators.dataset.rows import Clock, Side, poison_findings, prior_shift, read_side
from custody.validators.dataset.schema import diff_schemas
from custody.validators.findings import Finding, ScanReport, Severity

_LABEL_NAMES = ("label", "labels", "target", "class", "y", "outcome", "ground_truth")
_ID_NAMES = ("id", "row_id", "record_id", "sample_id", "uid", "uuid", "key")
_MAX_EVIDENCE_ROWS = 1000
_SCANNER = "dataset"

Progress = Callable[[int, int | None], None]


@dataclass
class DatasetComparison:
    """The report plus what a caller may store or inspect further."""

    report: ScanReport
    profile: DatasetProfile | None
    baseline_profile: DatasetProfile | None = None
    rows: dict[str, np.ndarray] = field(default_factory=dict)  # every suspicious row, per rule
    # rows of a finding that proves a change but cannot single rows out (per rule)
    candidates: dict[str, np.ndarray] = field(default_factory=dict)
    label: str | None = None
    id_column: str | None = None
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)  # wall seconds per stage

    @property
    def fingerprint(self) -> str | None:
        return self.profile.fingerprint if self.profile else None


def _pick(names: list[str], wanted: str | None, candidates: tuple[str, ...]) -> str | None:
    if wanted is not None:
        return wanted
    lower = {n.lower(): n for n in names}
    return next((lower[c] for c in candidates if c in lower), None)


def _error_report(path: str, rule: str, message: str, threshold: Severity) -> ScanReport:
    return ScanReport(path, (Finding(rule, Severity.HIGH, path, message),), errored=True,
                      threshold=threshold, scanners=(_SCANNER,))


def compare_datasets(
    snapshot: Path,
    baseline: Path | None = None,
    *,
    label: str | None = None,
    id_column: str | None = None,
    baseline_profile: DatasetProfile | dict[str, Any] | None = None,
    progress: Progress | None = None,
    threshold: Severity = Severity.MEDIUM,
    tolerances: Tolerances | None = None,
    max_evidence_rows: int = _MAX_EVIDENCE_ROWS,
    expectation_suite: Path | dict[str, Any] | None = None,
) -> DatasetComparison:
    """Compare ``snapshot`` with ``baseline`` (a path) or ``baseline_profile`` (stored JSON).

    ``label`` and ``id_column`` are auto-detected from common names when not given.
    ``expectation_suite`` (a great-expectations suite, JSON path or dict) is also run on the
    snapshot and its failures are added to the report. Raises ``ValueError`` for a label or id
    column that does not exist; unreadable inputs become an errored report instead."""
    start = time.perf_counter()
    display = str(snapshot)
    bsrc: DataSource | None = None
    try:
        if baseline is not None:
            bsrc = open_source(Path(baseline))
    except (DatasetReadError, OSError, pa.ArrowException) as exc:
        return DatasetComparison(_error_report(display, "dataset.baseline_unreadable",
                                               f"cannot read the baseline: {exc}", threshold),
                                 None)
    try:
        ssrc = open_source(Path(snapshot), bsrc.schema if bsrc else None)
    except (DatasetReadError, OSError, pa.ArrowException) as exc:
        return DatasetComparison(_error_report(display, "dataset.unreadable",
                                               f"cannot read the snapshot: {exc}", threshold),
                                 None)
    if isinstance(baseline_profile, dict):
        baseline_profile = DatasetProfile.from_json(baseline_profile)
    snames = ssrc.schema.names
    bnames = bsrc.schema.names if bsrc else [c["name"] for c in (
        baseline_profile.schema if baseline_profile else [])]
    label = _pick(snames, label, _LABEL_NAMES)
    if label is not None and label not in snames and label not in bnames:
        raise ValueError(f"label column {label!r} is in neither the snapshot nor the baseline")
    id_column = _pick([n for n in snames if n in bnames], id_column, _ID_NAMES)
    if id_column is not None and id_column not in snames:
        raise ValueError(f"id column {id_column!r} is not in the snapshot")
    both_label = label if (label in snames and label in bnames) else None
    total = (ssrc.num_rows or 0) + ((bsrc.num_rows or 0) if bsrc else 0)
    done = [0]

    def ticker(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(done[0], total or None)

    try:
        result = _compare(ssrc, bsrc, baseline_profile, label, both_label, id_column, display,
                          threshold, tolerances or Tolerances(), max_evidence_rows, ticker, start)
        if expectation_suite is not None:
            from custody.validators.dataset.expectations import run_suite

            extra = run_suite(Path(snapshot), expectation_suite, path=display,
                              max_rows=max_evidence_rows)
            rep = result.report
            result.report = ScanReport(rep.path, rep.findings + tuple(extra), rep.errored,
                                       rep.threshold, (*rep.scanners, "great-expectations"))
        return result
    except (OSError, pa.ArrowException) as exc:
        return DatasetComparison(_error_report(display, "dataset.unreadable",
                                               f"reading failed part-way: {exc}", threshold),
                                 None)


def _compare(ssrc: DataSource, bsrc: DataSource | None, bprof: DatasetProfile | None,
             label: str | None, both_label: str | None, id_col: str | None, display: str,
             threshold: Severity, tol: Tolerances, cap: int, ticker: Callable[[int], None],
             start: float) -> DatasetComparison:
    codes = LabelCodes()
    findings: list[Finding] = []
    rows: dict[str, np.ndarray] = {}
    candidates: dict[str, np.ndarray] = {}
    clock = Clock()
    common = [n for n in ssrc.schema.names
              if (bsrc is not None and n in bsrc.schema.names) and n not in (label, id_col)]
    hash_cols = [n for n in common if not pa.types.is_temporal(ssrc.schema.field(n).type)]
    b: Side | None = None
    if bsrc is not None:
        b = read_side(bsrc, Profiler(bsrc.schema, label, expected_rows=bsrc.num_rows), hash_cols,
                  both_label, id_col if id_col in bsrc.schema.names else None, codes, None,
                  ticker)
        bprof = b.profile
        clock.lap("read_baseline")
    plan: FeaturePlan | None = None
    if b is not None:
        usable = [n for n in hash_cols
                  if b.profile.columns[n].kind not in (OTHER, TEMPORAL)
                  and column_kind(ssrc.schema.field(n).type) == b.profile.columns[n].kind
                  and not is_time_like(b.profile.columns[n])]
        plan = build_plan(b.profile, usable)
    s = read_side(ssrc, Profiler(ssrc.schema, label, expected_rows=ssrc.num_rows), hash_cols,
              both_label,
              id_col if (b is not None and b.ids is not None) else None, codes, plan, ticker)
    clock.lap("read_snapshot")
    if bprof is None:
        findings.append(Finding("dataset.no_baseline", Severity.INFO, display,
                                "no baseline: profile and schema fingerprint recorded only"))
    else:
        skip = frozenset(c for c in (id_col,) if c)
        findings.extend(diff_schemas(bprof, s.profile, display, csv=ssrc.is_csv, ignore=skip))
        findings.extend(compare_profiles(bprof, s.profile, display, label=label, skip=skip,
                                         tol=tol))
    clock.lap("schema_drift")
    if b is None and bprof is not None:
        findings.append(Finding("dataset.poison_skipped", Severity.INFO, display,
                                "baseline given as a profile: row-level poisoning rules need "
                                "the baseline's rows and were skipped"))
    if b is not None and plan is not None and both_label is not None:
        classes = len(codes.codes)
        if b.labels is not None and 2 <= classes <= MAX_CLASSES:
            findings.extend(poison_findings(b, s, plan, codes, classes, display, cap, rows, clock,
                                            candidates))
        elif classes > MAX_CLASSES:
            findings.append(Finding("dataset.poison_skipped", Severity.INFO, display,
                                    f"label {both_label!r} has {classes} values; poisoning "
                                    "rules need a categorical label"))
    findings = prior_shift(findings, s, b, codes, display, cap, rows, tol)
    report = ScanReport(display, tuple(findings), errored=False, threshold=threshold,
                        scanners=(_SCANNER,))
    clock.lap("report")
    return DatasetComparison(report, s.profile, bprof, rows, candidates, label, id_col,
                             time.perf_counter() - start, clock.stages)


def scan_dataset(snapshot: Path, baseline: Path | None = None, **kwargs: Any) -> ScanReport:
    """:func:`compare_datasets` returning the report only."""
    return compare_datasets(snapshot, baseline, **kwargs).report
