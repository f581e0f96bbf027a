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
from custody.validators.dataset.reader import DataSource, open_source, schema_of
from custody.validators.dataset.reference import Reference, build_reference, read_reference
from custody.validators.dataset.rows import (
    Clock,
    Side,
    poison_findings,
    prior_shift,
    read_side,
)
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
    reference: bytes | None = None  # the snapshot's own reference (``make_reference``)
    checks: dict[str, str] = field(default_factory=dict)  # poisoning rule -> ran / skipped why
    # per reported row: the baseline model's view (see evidence.write_rows)
    details: dict[str, np.ndarray] = field(default_factory=dict)
    label_names: list[Any] = field(default_factory=list)  # label code -> value

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
    baseline_reference: bytes | Reference | None = None,
    make_reference: bool = False,
) -> DatasetComparison:
    """Compare ``snapshot`` with ``baseline`` (a path) or ``baseline_profile`` (stored JSON),
    with ``baseline_reference`` (the stored reference of ``reference.py``) for the poisoning
    rules when the baseline's rows are not at hand.

    ``label`` and ``id_column`` are auto-detected from common names when not given.
    ``make_reference`` also builds the snapshot's own reference (``result.reference``).
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
    if isinstance(baseline_profile, dict):
        baseline_profile = DatasetProfile.from_json(baseline_profile)
    try:
        if isinstance(baseline_reference, bytes | bytearray):
            baseline_reference = read_reference(bytes(baseline_reference))
    except DatasetReadError as exc:
        return DatasetComparison(_error_report(display, "dataset.baseline_unreadable",
                                               f"cannot read the baseline's reference: {exc}",
                                               threshold), None)
    typing = bsrc.schema if bsrc else (
        schema_of(baseline_profile.schema) if baseline_profile else None)
    try:
        ssrc = open_source(Path(snapshot), typing)
    except (DatasetReadError, OSError, pa.ArrowException) as exc:
        return DatasetComparison(_error_report(display, "dataset.unreadable",
                                               f"cannot read the snapshot: {exc}", threshold),
                                 None)
    snames = ssrc.schema.names
    bnames = bsrc.schema.names if bsrc else [c["name"] for c in (
        baseline_profile.schema if baseline_profile else [])]
    label = _pick(snames, label, _LABEL_NAMES)
    if label is not None and label not in snames and label not in bnames:
        raise ValueError(f"label column {label!r} is in neither the snapshot nor the baseline")
    # with no baseline the id is still found: the snapshot's own reference keeps id keys
    id_column = _pick([n for n in snames if n in bnames] if bnames else snames, id_column,
                      _ID_NAMES)
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
                          threshold, tolerances or Tolerances(), max_evidence_rows, ticker, start,
                          baseline_reference if bsrc is None else None, make_reference)
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
             start: float, ref: Reference | None = None, make_reference: bool = False
             ) -> DatasetComparison:
    codes = LabelCodes()
    findings: list[Finding] = []
    rows: dict[str, np.ndarray] = {}
    candidates: dict[str, np.ndarray] = {}
    details: dict[str, np.ndarray] = {}
    checks: dict[str, str] = {}
    clock = Clock()
    snames = ssrc.schema.names
    own_cols = [n for n in snames if n not in (label, id_col)
                and not pa.types.is_temporal(ssrc.schema.field(n).type)]
    b: Side | None = None
    if bsrc is not None:
        common = [n for n in snames if n in bsrc.schema.names and n not in (label, id_col)]
        hash_cols = [n for n in common if not pa.types.is_temporal(ssrc.schema.field(n).type)]
        b = read_side(bsrc, Profiler(bsrc.schema, label, expected_rows=bsrc.num_rows), hash_cols,
                      both_label, id_col if id_col in bsrc.schema.names else None, codes, None,
                      ticker)
        bprof = b.profile
        clock.lap("read_baseline")
    elif ref is not None and bprof is not None and both_label == ref.label:
        b, hash_cols = _reference_side(ref, bprof, snames, id_col, codes, checks)
    else:
        hash_cols = []
    plan = _plan(b, ssrc, hash_cols if bsrc is not None else None, ref)
    want_ids = b is not None and (b.ids is not None or b.id_keys is not None)
    s_label = both_label if not make_reference else (label if label in snames else None)
    s_ids = id_col if (want_ids or (make_reference and id_col in snames)) else None
    s = read_side(ssrc, Profiler(ssrc.schema, label, expected_rows=ssrc.num_rows), hash_cols,
                  s_label, s_ids, codes, plan, ticker,
                  own_cols if make_reference and own_cols != hash_cols else None)
    clock.lap("read_snapshot")
    reference = _own_reference(s, own_cols, hash_cols, label, id_col, codes) \
        if make_reference else None
    if not want_ids:
        s.ids = None  # read for the snapshot's own reference only
    findings += _profile_findings(bprof, s, ssrc.is_csv, label, id_col, display, tol)
    clock.lap("schema_drift")
    if b is None and bprof is not None:
        findings.append(_skipped(ref, both_label, display))
    if b is not None and plan is not None and both_label is not None:
        classes = len(codes.codes)
        if b.labels is not None and 2 <= classes <= MAX_CLASSES:
            findings.extend(poison_findings(b, s, plan, codes, classes, display, cap, rows, clock,
                                            candidates, details))
            checks.update(_ran(b, ref if bsrc is None else None, plan, checks))
        elif classes > MAX_CLASSES:
            findings.append(Finding("dataset.poison_skipped", Severity.INFO, display,
                                    f"label {both_label!r} has {classes} values; poisoning "
                                    "rules need a categorical label"))
    findings = prior_shift(findings, s, b, codes, display, cap, rows, tol)
    if checks:
        findings.append(_checks_finding(checks, display))
    report = ScanReport(display, tuple(findings), errored=False, threshold=threshold,
                        scanners=(_SCANNER,))
    clock.lap("report")
    return DatasetComparison(report, s.profile, bprof, rows, candidates, label, id_col,
                             time.perf_counter() - start, clock.stages, reference=reference,
                             checks=checks, details=details, label_names=codes.names)


def _plan(b: Side | None, ssrc: DataSource, cols: list[str] | None, ref: Reference | None
          ) -> FeaturePlan | None:
    """The baseline's feature plan over the columns both sides can encode alike (with a
    stored reference: those its sample holds, which it then stands in for)."""
    if b is None:
        return None
    names = ssrc.schema.names
    pool = cols if cols is not None else [n for n in (ref.features if ref else []) if n in names]
    usable = [n for n in pool
              if n in b.profile.columns and b.profile.columns[n].kind not in (OTHER, TEMPORAL)
              and column_kind(ssrc.schema.field(n).type) == b.profile.columns[n].kind
              and not is_time_like(b.profile.columns[n])]
    plan = build_plan(b.profile, usable)
    if cols is None and ref is not None:
        b.z_sample = ref.sample_matrix(plan)
    return plan


def _profile_findings(bprof: DatasetProfile | None, s: Side, csv: bool, label: str | None,
                      id_col: str | None, display: str, tol: Tolerances) -> list[Finding]:
    """Schema and drift findings (the two profiles only)."""
    if bprof is None:
        return [Finding("dataset.no_baseline", Severity.INFO, display,
                        "no baseline: profile and schema fingerprint recorded only")]
    skip = frozenset(c for c in (id_col,) if c)
    return [*diff_schemas(bprof, s.profile, display, csv=csv, ignore=skip),
            *compare_profiles(bprof, s.profile, display, label=label, skip=skip, tol=tol)]


def _skipped(ref: Reference | None, label: str | None, display: str) -> Finding:
    why = (f"the baseline's reference is for label {ref.label!r}, not {label!r}: row-level "
           "poisoning rules were skipped" if ref is not None else
           "baseline given as a profile without a reference: row-level poisoning rules need "
           "the baseline's rows or its stored reference and were skipped")
    return Finding("dataset.poison_skipped", Severity.INFO, display, why)


def _reference_side(ref: Reference, bprof: DatasetProfile, snames: list[str],
                    id_col: str | None, codes: LabelCodes, checks: dict[str, str]
                    ) -> tuple[Side, list[str]]:
    """The baseline side of a comparison with a stored reference (see ``reference.py``)."""
    exact = all(c in snames for c in ref.hash_columns)
    hash_cols = ref.hash_columns if exact else []
    keys = ref.arrays["row_hash"] if exact else np.zeros(0, dtype=np.uint64)
    labels = ref.labels("row_label", codes) if exact else np.zeros(0, dtype=np.int32)
    side = Side(bprof, pa.Table.from_batches([], schema=pa.schema([])), keys, labels, None,
                sample_labels=ref.labels("sample_label", codes))
    if not exact:
        gone = [c for c in ref.hash_columns if c not in snames]
        why = f"skipped: the previous version's columns {gone} are gone, rows cannot be matched"
        checks["poison.conflicting_duplicate"] = checks["poison.label_changed"] = why
    elif ref.id_column is not None and ref.id_column == id_col and "id_hash" in ref.arrays:
        side.id_keys = (ref.arrays["id_hash"], ref.arrays["id_row_hash"],
                        ref.labels("id_label", codes))
    elif "poison.label_changed" not in checks:
        checks["poison.label_changed"] = "skipped: no id column in both versions"
    return side, hash_cols


def _own_reference(s: Side, own_cols: list[str], hash_cols: list[str], label: str | None,
                   id_col: str | None, codes: LabelCodes) -> bytes | None:
    """The snapshot's own reference (None without a categorical label)."""
    if label is None or s.labels is None or s.sample_labels is None:
        return None
    if not 2 <= len(codes.codes) <= MAX_CLASSES:
        return None
    hashes = s.own_hashes if s.own_hashes is not None else s.hashes
    if own_cols != hash_cols and s.own_hashes is None:
        return None
    usable = [n for n in own_cols
              if s.profile.columns[n].kind not in (OTHER, TEMPORAL)
              and not is_time_like(s.profile.columns[n])]
    plan = build_plan(s.profile, usable)
    return build_reference(rows=len(s.labels), hashes=hashes, labels=s.labels, ids=s.ids,
                           sample=plan.encode_table(s.sample), sample_labels=s.sample_labels,
                           plan=plan, codes=codes, label=label, id_column=id_col,
                           hash_columns=own_cols)


_POISON_RULES = ("poison.label_changed", "poison.conflicting_duplicate",
                 "poison.knn_disagreement", "poison.trigger_pattern", "poison.boundary_relabel",
                 "poison.injected_cluster", "poison.prior_shift_injected")


def _ran(b: Side, ref: Reference | None, plan: FeaturePlan, checks: dict[str, str]
         ) -> dict[str, str]:
    out: dict[str, str] = {}
    share = f" on the {ref.key_share:.0%} of rows whose keys the reference keeps" \
        if ref is not None and ref.key_share < 1 else ""
    for rule in _POISON_RULES:
        if rule in checks:
            continue
        if rule == "poison.label_changed" and b.ids is None and b.id_keys is None:
            out[rule] = "skipped: no id column in both versions"
        elif rule in ("poison.label_changed", "poison.conflicting_duplicate"):
            out[rule] = "ran" + share
        else:
            out[rule] = "ran" + (f" ({len(plan.features)} features)" if rule ==
                                 "poison.trigger_pattern" else "")
    return out


def _checks_finding(checks: dict[str, str], path: str) -> Finding:
    ran = [r for r, v in checks.items() if v.startswith("ran")]
    skipped = {r: v for r, v in checks.items() if not v.startswith("ran")}
    text = f"poisoning rules run: {len(ran)} of {len(checks)}"
    if skipped:
        text += "; " + "; ".join(f"{r} {v}" for r, v in skipped.items())
    return Finding("dataset.checks", Severity.INFO, path, text,
                   evidence={"rules": checks})


def scan_dataset(snapshot: Path, baseline: Path | None = None, **kwargs: Any) -> ScanReport:
    """:func:`compare_datasets` returning the report only."""
    return compare_datasets(snapshot, baseline, **kwargs).report
