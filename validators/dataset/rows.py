"""Row-level state of one dataset pass and the poisoning findings built from it.

``read_side`` streams a dataset once: profile (on a worker thread), row hashes, label codes,
ids and, for the snapshot, the encoded feature matrix. ``poison_findings`` runs the poisoning
rules (``poison.py``, ``cells.py``, ``clusters.py``) on a baseline side and a snapshot
side and turns their hits into findings with row evidence; ``prior_shift`` re-reads a
label-marginal drift finding in the light of those rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from custody.validators.dataset import cells as cellrules
from custody.validators.dataset import poison
from custody.validators.dataset.cell_context import CellContext, CellHit
from custody.validators.dataset.clusters import cluster_hits
from custody.validators.dataset.drift import Tolerances
from custody.validators.dataset.encode import FeaturePlan, LabelCodes, column_hash, row_hashes
from custody.validators.dataset.fingerprint import describe_schema, fingerprint_of
from custody.validators.dataset.model import BinnedModel, bin_sizes, label_shift
from custody.validators.dataset.profile import DatasetProfile, Profiler
from custody.validators.dataset.reader import DataSource
from custody.validators.findings import Finding, Severity

_PARALLEL_RULES_MAX_ROWS = 2_000_000
_RELEASE_ROWS = 1 << 20


class Clock:
    """Wall time per stage (for benchmarks and ``--verbose`` output)."""

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.stages[name] = round(self.stages.get(name, 0.0) + now - self.last, 4)
        self.last = now


@dataclass
class Side:
    """What one pass keeps of a dataset: its profile and row sample, and per row the feature
    hash, label code, id hash and (snapshot only) the encoded feature matrix."""

    profile: DatasetProfile
    sample: pa.Table
    hashes: np.ndarray
    labels: np.ndarray | None
    ids: np.ndarray | None
    z: np.ndarray | None = None
    sample_labels: np.ndarray | None = None
    z_sample: np.ndarray | None = None  # the sample already encoded (a stored reference)
    # a stored reference keeps id keys apart from row keys: (id hash, row hash, label)
    id_keys: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    own_hashes: np.ndarray | None = None  # hashes over the version's own columns (reference)


def read_side(source: DataSource, profiler: Profiler, hash_cols: list[str], label: str | None,
              id_col: str | None, codes: LabelCodes, plan: FeaturePlan | None,
              ticker: Callable[[int], None], own_cols: list[str] | None = None) -> Side:
    """One streamed pass over ``source`` (see the module docstring); ``own_cols``: also hash
    the rows over these columns (the version's own reference)."""
    total = source.num_rows  # known for Parquet: the arrays are filled in place
    own = _Column(total, np.uint64) if own_cols is not None else None
    hashes = _Column(total, np.uint64)
    labels = _Column(total, np.int32) if label is not None else None
    ids = _Column(total, np.uint64) if id_col is not None else None
    z = _Column(total, np.float32, len(plan.features)) if plan is not None else None
    # The profile of a batch is computed on a worker thread while this thread hashes and
    # encodes it (numpy and Arrow kernels release the GIL).
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending: Future[None] | None = None
        for batch in source.batches():
            if pending is not None:
                pending.result()
            pending = pool.submit(profiler.update, batch)
            hashes.add(row_hashes(batch, hash_cols))
            if own is not None and own_cols is not None:
                own.add(row_hashes(batch, own_cols))
            if labels is not None and label is not None:
                labels.add(codes.encode(batch.column(label)))
            if ids is not None and id_col is not None:
                ids.add(column_hash(batch.column(id_col)))
            if z is not None and plan is not None:
                z.add(plan.encode(batch))
            ticker(batch.num_rows)
            if hashes.at % _RELEASE_ROWS < batch.num_rows:  # give decoded pages back as we go
                pa.default_memory_pool().release_unused()
        if pending is not None:
            pending.result()
    desc = describe_schema(source.schema)
    prof = profiler.finish(fingerprint_of(desc), desc)
    pa.default_memory_pool().release_unused()  # decoded batches are gone: give pages back
    sample_labels = None
    if label is not None:
        sample_labels = codes.encode(profiler.sample.column(label).combine_chunks())
    return Side(prof, profiler.sample, hashes.done(),
                labels.done() if labels is not None else None,
                ids.done() if ids is not None else None,
                z.done() if z is not None else None, sample_labels,
                own_hashes=own.done() if own is not None else None)


class _Column:
    """Per-row values of one pass: filled in place when the row count is known (no second
    copy at the end), else collected per batch. Matrices are column-major (every rule reads
    whole feature columns)."""

    def __init__(self, total: int | None, dtype: Any, width: int | None = None) -> None:
        self.dtype, self.width, self.at = dtype, width, 0
        self.parts: list[np.ndarray] = []
        self.out: np.ndarray | None = None
        if total is not None:
            shape: tuple[int, ...] = (total,) if width is None else (total, width)
            self.out = np.empty(shape, dtype=dtype, order="F")

    def add(self, part: np.ndarray) -> None:
        if self.out is None:
            self.parts.append(part)
        else:
            self.out[self.at:self.at + len(part)] = part
        self.at += len(part)

    def done(self) -> np.ndarray:
        if self.out is not None:
            return self.out[: self.at]
        if self.width is None:
            return np.concatenate(self.parts) if self.parts else np.zeros(0, dtype=self.dtype)
        out = np.empty((self.at, self.width), dtype=self.dtype, order="F")
        for j in range(self.width):
            if self.parts:
                np.concatenate([p[:, j] for p in self.parts], out=out[:, j])
        self.parts = []
        return out


def _rows_evidence(rows: np.ndarray, cap: int) -> dict[str, Any]:
    rows = np.unique(rows)
    return {"rows": [int(r) for r in rows[:cap]], "row_count": len(rows),
            "rows_truncated": bool(len(rows) > cap)}


def poison_findings(b: Side, s: Side, plan: FeaturePlan, codes: LabelCodes, classes: int,
                    path: str, cap: int, rows: dict[str, np.ndarray], clock: Clock,
                    candidates: dict[str, np.ndarray] | None = None,
                    details: dict[str, np.ndarray] | None = None) -> list[Finding]:
    """Every poisoning rule; suspicious rows go to ``rows`` (uncapped), rows a finding can
    prove changed but not single out to ``candidates``, and the findings."""
    if b.labels is None or s.labels is None or s.z is None or b.sample_labels is None:
        return []
    candidates = {} if candidates is None else candidates
    # the exact rules (sorting hashes) and the baseline model (binning, fitting) are
    # independent: one on a worker thread while the other runs here
    if len(s.labels) <= _PARALLEL_RULES_MAX_ROWS:
        with ThreadPoolExecutor(max_workers=1) as pool:
            exact = pool.submit(_exact_findings, b, s, codes.names, path, cap, rows)
            view, ctx = _model_view(b, s, plan, classes)
            out, eligible = exact.result()
    else:  # one after the other keeps the peak memory of large inputs down
        out, eligible = _exact_findings(b, s, codes.names, path, cap, rows)
        view, ctx = _model_view(b, s, plan, classes)
    ctx.eligible = eligible
    view.log_w = _shift(view, s.labels, eligible)
    clock.lap("poison_encode")
    z_s, y_s = s.z, s.labels
    jobs: list[tuple[str, Callable[[], Any]]] = [
        ("poison_knn", lambda: poison.knn_disagreement(view, z_s, y_s, eligible)),
        ("poison_triggers", lambda: cellrules.trigger_hits(ctx)),
        ("poison_clusters", lambda: cluster_hits(ctx)),
    ]
    if len(y_s) <= _PARALLEL_RULES_MAX_ROWS:
        # independent rule families; numpy and scipy release the GIL
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = [pool.submit(job) for _, job in jobs]
            knn_result, triggers, clusters = (f.result() for f in futures)
        clock.lap("poison_rules")
    else:  # one at a time keeps the peak memory of large inputs down
        results = []
        for name, job in jobs:
            results.append(job())
            clock.lap(name)
        knn_result, triggers, clusters = results
    if clusters:  # a cell whose excess is an injected cluster adds nothing
        inside = np.unique(np.concatenate([h.rows for h in clusters]))
        triggers = [h for h in triggers if not h.explained_by(inside, ctx.m_min)]
    named = [r for r in rows.values() if len(r)]
    named += [h.rows for h in triggers + clusters if not h.candidates]
    taken = np.unique(np.concatenate(named)) if named else np.zeros(0, dtype=np.int64)
    knn = None
    if knn_result is not None:  # rows the other rules name are not label noise
        p_own = view.p_s[np.arange(len(y_s)), np.maximum(y_s, 0)]
        knn = knn_result.test(p_own, taken)
    bands: list[CellHit] = []
    if knn is None or not len(knn.rows):
        # what the other rules did not explain: their rows set aside, the label shift
        # measured again without them
        rest = eligible.copy()
        rest[taken] = False
        bands = cellrules.band_hits(ctx, rest, _shift(view, y_s, rest))
    if knn is not None:
        _knn_finding(knn, out, rows, candidates, path, cap)
    clock.lap("poison_report")
    out += _cell_findings(triggers, bands, clusters, codes.names, path, cap, rows, candidates)
    if details is not None:
        details.update(_row_details(view, y_s, [*rows.values(), *candidates.values()]))
    return out


def _row_details(view: poison.ModelView, y_s: np.ndarray, parts: list[np.ndarray]
                 ) -> dict[str, np.ndarray]:
    """For every reported row: the baseline model's probability of its label, and the label
    it finds most likely with that label's probability (the evidence files' columns)."""
    if not parts:
        return {}
    every = np.unique(np.concatenate(parts))
    p = view.p_s[every].astype(np.float64)
    own = p[np.arange(len(every)), np.maximum(y_s[every], 0)]
    top = np.argmax(p, axis=1)
    return {"rows": every, "p_label": own, "predicted": top,
            "p_predicted": p[np.arange(len(every)), top]}


def _shift(view: poison.ModelView, y_s: np.ndarray, use: np.ndarray) -> np.ndarray:
    """The label-shift weights on (at most _SHIFT_ROWS evenly spaced of) the ``use`` rows."""
    sample = np.flatnonzero(use & (y_s >= 0))
    if len(sample) > _SHIFT_ROWS:
        sample = sample[np.linspace(0, len(sample) - 1, _SHIFT_ROWS).astype(np.int64)]
    return label_shift(view.p_s[sample], y_s[sample])


def _knn_finding(knn: poison.RuleHit, out: list[Finding], rows: dict[str, np.ndarray],
                 candidates: dict[str, np.ndarray], path: str, cap: int) -> None:
    ev = knn.evidence
    maybe = ev.pop("candidates")
    if len(knn.rows):
        rows["poison.knn_disagreement"] = knn.rows
    if len(maybe):
        candidates["poison.knn_disagreement"] = maybe
    listed = knn.rows if len(knn.rows) else maybe
    out.append(Finding(
        "poison.knn_disagreement", Severity.HIGH, path,
        f"{ev['disagreeing_rows']} row(s) carry a label that none of their {ev['k']} nearest "
        f"baseline neighbours carry where about {ev['expected_natural']:.0f} would be expected "
        f"from the baseline's own noise; {len(knn.rows)} named (least likely label first, "
        f"in strata with at least 1.5 times the natural number), {len(maybe)} candidate(s)",
        evidence={**_rows_evidence(listed, cap), **ev, "rows_are_candidates": not len(knn.rows),
                  "candidate_row_count": len(maybe)}))


def _exact_findings(b: Side, s: Side, names: list[Any], path: str, cap: int,
                    rows: dict[str, np.ndarray]) -> tuple[list[Finding], np.ndarray]:
    """In-place relabels (by id) and conflicting exact duplicates; the mask of rows the
    model-based rules may report (not a plain copy of a baseline row, not already named)."""
    assert s.labels is not None and b.labels is not None  # noqa: S101 - checked by the caller
    out: list[Finding] = []
    n = len(s.labels)
    changed = np.zeros(n, dtype=bool)
    ids_b, h_id, y_id = b.id_keys if b.id_keys is not None else (b.ids, b.hashes, b.labels)
    if ids_b is not None and s.ids is not None:
        hit, changed = poison.label_changes(ids_b, y_id, h_id, s.ids, s.labels, s.hashes)
        if len(hit.rows):
            rows["poison.label_changed"] = hit.rows
            out.append(Finding(
                "poison.label_changed", Severity.HIGH, path,
                f"{len(hit.rows)} row(s) keep their id but changed label since the baseline",
                evidence={**_rows_evidence(hit.rows, cap), **hit.evidence,
                          "transitions": _transitions(hit.rows, s, ids_b, y_id, names)}))
    dup, same = poison.conflicting_duplicates(b.hashes, b.labels, s.hashes, s.labels, changed)
    s.hashes, s.ids = np.zeros(0, dtype=np.uint64), None  # no longer needed: free the memory
    if dup is not None:
        rows["poison.conflicting_duplicate"] = dup.rows
        out.append(Finding(
            "poison.conflicting_duplicate", Severity.HIGH, path,
            f"{len(dup.rows)} row(s) repeat a baseline row exactly but with another label",
            evidence={**_rows_evidence(dup.rows, cap), **dup.evidence}))
    return out, ~same & ~changed


_CELL_RULES = {
    "poison.trigger_pattern": "feature value(s) or value combination(s) carry one label far "
    "more often than the baseline predicts for those rows (backdoor trigger or targeted "
    "relabelling)",
    "poison.boundary_relabel": "label(s) far more common than the baseline model predicts "
    "among the rows it is unsure about (labels moved near the decision boundary)",
    "poison.injected_cluster": "dense cluster(s) of rows carrying one label where the "
    "baseline has few rows (injected near-duplicates or outliers)",
}


def _cell_findings(triggers: list[CellHit], bands: list[CellHit],
                   clusters: list[CellHit], names: list[Any], path: str, cap: int,
                   rows: dict[str, np.ndarray], candidates: dict[str, np.ndarray]
                   ) -> list[Finding]:
    out: list[Finding] = []
    for rule, hits in (("poison.trigger_pattern", triggers), ("poison.boundary_relabel", bands),
                       ("poison.injected_cluster", clusters)):
        if not hits:
            continue
        named = [h.rows for h in hits if not h.candidates]
        flagged = np.unique(np.concatenate(named)) if named else np.zeros(0, dtype=np.int64)
        maybe = [h.rows for h in hits if h.candidates]
        cand = np.setdiff1d(np.unique(np.concatenate(maybe)), flagged) if maybe \
            else np.zeros(0, dtype=np.int64)
        if len(flagged):
            rows[rule] = flagged
        if len(cand):
            candidates[rule] = cand
        hits.sort(key=lambda h: -h.z)
        top = hits[0]
        listed = flagged if len(flagged) else cand
        out.append(Finding(
            rule, Severity.HIGH, path, f"{len(flagged)} row(s) named"
            + (f", {len(cand)} candidate row(s) that cannot be told apart from natural ones"
               if len(cand) else "")
            + f": {len(hits)} {_CELL_RULES[rule]}; strongest: {top.description} -> label "
            f"{names[top.label]!r} ({top.observed} rows where the baseline expects "
            f"{top.expected_rows:.0f})",
            evidence={**_rows_evidence(listed, cap), "rows_are_candidates": not len(flagged),
                      "candidate_row_count": len(cand),
                      "patterns": [h.to_json(names) for h in hits[:20]],
                      "pattern_count": len(hits)}))
    return out


_SHIFT_ROWS = 65_536  # snapshot rows the label-shift weights are estimated on
_FIT_ROWS = 32_768  # baseline sample rows the model and the kNN reference learn from
_SPLIT_SEED = 0x5A17


def _model_view(b: Side, s: Side, plan: FeaturePlan, classes: int
                ) -> tuple[poison.ModelView, CellContext]:
    """Fit the baseline model on half the baseline sample, calibrate it on the other half,
    and apply it to the snapshot (see ``model.py``)."""
    assert b.sample_labels is not None and s.z is not None and s.labels is not None  # noqa: S101
    z_b = b.z_sample if b.z_sample is not None else plan.encode_table(b.sample)
    y_b = b.sample_labels
    perm = np.random.default_rng(_SPLIT_SEED).permutation(len(y_b))
    half = min(len(y_b) // 2, _FIT_ROWS)
    fit, hold = np.sort(perm[:half]), np.sort(perm[half:half + _FIT_ROWS])
    fine_b = plan.bin_matrix(z_b, True)
    # large inputs: no bin matrix (0.5 GB at 10M rows and 13 features), codes per feature
    fine_s = plan.bin_matrix(s.z, True) if len(s.z) <= _PARALLEL_RULES_MAX_ROWS else None
    sizes = bin_sizes(plan)
    model = BinnedModel.fit(fine_b[fit], y_b[fit], sizes, classes)
    p_hold = model.proba(_calibrated(model, fine_b[hold], y_b[hold]))
    relevance = model.information(fine_b[fit], y_b[fit])
    p_s = model.proba(model.scores(fine_s) if fine_s is not None
                      else model.scores_from(plan, s.z))
    y_s = s.labels
    labelled = y_s >= 0
    own = np.ones(len(y_s), dtype=np.float32)
    own[labelled] = p_s[np.flatnonzero(labelled), y_s[labelled]]
    strata_s = poison.strata(p_s)
    view = poison.ModelView(plan, classes, z_b[fit], y_b[fit], z_b[hold], y_b[hold], p_hold,
                            poison.strata(p_hold), p_s, own, strata_s, np.zeros(classes),
                            relevance)
    coarse_b = plan.coarse_from_fine(fine_b)
    every = np.ones(len(y_s), dtype=bool)  # replaced by the exact rules' eligible rows
    ctx = CellContext(plan, view, s.z, y_s, every, fine_s, None,
                                fine_b[hold], coarse_b[hold], z_b, y_b, fine_b,
                                len(y_s) / max(len(y_b), 1), classes)
    return view, ctx


def _calibrated(model: BinnedModel, bins: np.ndarray, y: np.ndarray) -> np.ndarray:
    scores = model.scores(bins)
    model.calibrate(scores, y)
    return scores


def _transitions(changed: np.ndarray | None, s: Side, ids_b: np.ndarray, y_b: np.ndarray,
                 names: list[Any]) -> dict[str, int]:
    """How many rows moved from which label to which (by id), e.g. ``{"1->0": 12}``."""
    if changed is None or s.ids is None or s.labels is None:
        return {}
    order = np.argsort(ids_b, kind="stable")
    idx = np.clip(np.searchsorted(ids_b[order], s.ids[changed]), 0, len(order) - 1)
    old = y_b[order][idx]
    new = s.labels[changed]
    pairs, counts = np.unique(np.stack([old, new], axis=1), axis=0, return_counts=True)
    return {f"{names[o]}->{names[n]}": int(c) for (o, n), c in zip(pairs, counts, strict=True)}


def _label_counts(labels: np.ndarray, classes: int) -> np.ndarray:
    return np.bincount(labels[labels >= 0], minlength=classes).astype(np.float64)


def prior_shift(findings: list[Finding], s: Side, b: Side | None, codes: LabelCodes,
                 path: str, cap: int, rows: dict[str, np.ndarray],
                 tol: Tolerances) -> list[Finding]:
    """A label-marginal shift that the flagged rows explain is poisoning, not drift."""
    shift = next((f for f in findings if f.rule_id == "drift.label_marginal"), None)
    flagged_rules = [r for r in rows if r != "poison.knn_disagreement"]
    if shift is None or b is None or b.labels is None or s.labels is None or not flagged_rules:
        return findings
    classes = len(codes.codes)
    flagged = np.unique(np.concatenate([rows[r] for r in flagged_rules]))
    keep = np.ones(len(s.labels), dtype=bool)
    keep[flagged] = False
    base = _label_counts(b.labels, classes)
    before = _label_counts(s.labels, classes)
    after = _label_counts(s.labels[keep], classes)
    change_after = float(np.max(np.abs(after / max(after.sum(), 1.0) - base / base.sum())))
    if change_after >= max(tol.label_low, 0.5 * float(shift.evidence["value"])):
        return findings
    grown = np.flatnonzero(before / before.sum() > base / base.sum())
    culprit = flagged[np.isin(s.labels[flagged], grown)]
    rows["poison.prior_shift_injected"] = culprit
    names = codes.names
    finding = Finding(
        "poison.prior_shift_injected", Severity.HIGH, path,
        f"the label marginal moved (largest class-share change {shift.evidence['value']:.3f}) "
        f"and the {len(flagged)} flagged row(s) explain it (without them: {change_after:.3f})",
        evidence={**_rows_evidence(culprit, cap), "statistic": "max_share_change",
                  "value": shift.evidence["value"],
                  "value_without_flagged": round(change_after, 6),
                  "labels_grown": [names[int(c)] for c in grown]})
    return [f for f in findings if f is not shift] + [finding]
