"""Row-level state of one dataset pass and the poisoning findings built from it.

``read_side`` streams a dataset once: profile (on a worker thread), row hashes, label codes,
ids and, for the snapshot, the encoded feature matrix. ``poison_findings`` runs the poisoning
rules (``poison.py``, ``cells.py``) on a baseline side and a snapshot side and turns their hits
into findings with row evidence; ``prior_shift`` re-reads a label-marginal drift finding in the
light of those rows.
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
from custody.validators.dataset.drift import Tolerances
from custody.validators.dataset.encode import FeaturePlan, LabelCodes, column_hash, row_hashes
from custody.validators.dataset.fingerprint import describe_schema, fingerprint_of
from custody.validators.dataset.profile import DatasetProfile, Profiler
from custody.validators.dataset.reader import DataSource
from custody.validators.findings import Finding, Severity

_PARALLEL_RULES_MAX_ROWS = 2_000_000


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


def read_side(source: DataSource, profiler: Profiler, hash_cols: list[str], label: str | None,
              id_col: str | None, codes: LabelCodes, plan: FeaturePlan | None,
              ticker: Callable[[int], None]) -> Side:
    """One streamed pass over ``source`` (see the module docstring)."""
    hashes: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    ids: list[np.ndarray] = []
    zs: list[np.ndarray] = []
    # The profile of a batch is computed on a worker thread while this thread hashes and
    # encodes it (numpy and Arrow kernels release the GIL).
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending: Future[None] | None = None
        for batch in source.batches():
            if pending is not None:
                pending.result()
            pending = pool.submit(profiler.update, batch)
            hashes.append(row_hashes(batch, hash_cols))
            if label is not None:
                labels.append(codes.encode(batch.column(label)))
            if id_col is not None:
                ids.append(column_hash(batch.column(id_col)))
            if plan is not None:
                zs.append(plan.encode(batch))
            ticker(batch.num_rows)
        if pending is not None:
            pending.result()
    desc = describe_schema(source.schema)
    prof = profiler.finish(fingerprint_of(desc), desc)
    pa.default_memory_pool().release_unused()  # decoded batches are gone: give pages back

    def cat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

    z = None
    if plan is not None:
        # column-major: every rule reads whole feature columns
        z = np.empty((sum(len(part) for part in zs), len(plan.features)), dtype=np.float32,
                     order="F")
        for j in range(len(plan.features)):
            if zs:
                np.concatenate([part[:, j] for part in zs], out=z[:, j])
        del zs
    sample_labels = None
    if label is not None:
        sample_labels = codes.encode(profiler.sample.column(label).combine_chunks())
    return Side(prof, profiler.sample, cat(hashes, np.uint64),
                 cat(labels, np.int32) if label is not None else None,
                 cat(ids, np.uint64) if id_col is not None else None, z, sample_labels)


def _rows_evidence(rows: np.ndarray, cap: int) -> dict[str, Any]:
    rows = np.unique(rows)
    return {"rows": [int(r) for r in rows[:cap]], "row_count": len(rows),
            "rows_truncated": bool(len(rows) > cap)}


def poison_findings(b: Side, s: Side, plan: FeaturePlan, codes: LabelCodes, classes: int,
                    path: str, cap: int, rows: dict[str, np.ndarray], clock: Clock
                    ) -> list[Finding]:
    """Every poisoning rule; suspicious rows go to ``rows`` (uncapped) and the findings."""
    if b.labels is None or s.labels is None or s.z is None or b.sample_labels is None:
        return []
    names = codes.names
    out: list[Finding] = []
    n = len(s.labels)
    changed = np.zeros(n, dtype=bool)
    if b.ids is not None and s.ids is not None:
        hit, changed = poison.label_changes(b.ids, b.labels, b.hashes, s.ids, s.labels,
                                            s.hashes)
        if len(hit.rows):
            rows["poison.label_changed"] = hit.rows
            out.append(Finding(
                "poison.label_changed", Severity.HIGH, path,
                f"{len(hit.rows)} row(s) keep their id but changed label since the baseline",
                evidence={**_rows_evidence(hit.rows, cap), **hit.evidence,
                          "transitions": {}}))
    dup, same = poison.conflicting_duplicates(b.hashes, b.labels, s.hashes, s.labels, changed)
    transitions = _transitions(rows.get("poison.label_changed"), s, b, names)
    s.hashes, s.ids = np.zeros(0, dtype=np.uint64), None  # no longer needed: free the memory
    if dup is not None:
        rows["poison.conflicting_duplicate"] = dup.rows
        out.append(Finding(
            "poison.conflicting_duplicate", Severity.HIGH, path,
            f"{len(dup.rows)} row(s) repeat a baseline row exactly but with another label",
            evidence={**_rows_evidence(dup.rows, cap), **dup.evidence}))
    for f in out:
        if f.rule_id == "poison.label_changed":
            f.evidence["transitions"] = transitions
    eligible = ~same & ~changed
    del same, changed
    clock.lap("poison_rows")
    z_b = plan.encode_table(b.sample)
    y_b = b.sample_labels
    z_s, y_s = s.z, s.labels
    fine_s, fine_b = plan.bin_matrix(s.z, True), plan.bin_matrix(z_b, True)
    coarse_s, coarse_b = plan.coarse_from_fine(fine_s), plan.coarse_from_fine(fine_b)
    nb, proba, relevance = poison.fit_screen(z_b, y_b, coarse_b, coarse_s, classes)
    ctx = cellrules.CellContext(plan, s.z, s.labels, eligible, z_b, y_b,
                                len(s.labels) / max(len(y_b), 1), classes, proba,
                                fine_s, fine_b, coarse_s, coarse_b)
    clock.lap("poison_encode")
    jobs: list[tuple[str, Callable[[], Any]]] = [
        ("poison_knn", lambda: poison.knn_disagreement(plan, z_b, y_b, coarse_b, z_s, y_s,
                                                       eligible, classes, nb, proba,
                                                       relevance)),
        ("poison_triggers", lambda: cellrules.trigger_hits(ctx, relevance)),
        ("poison_clusters", lambda: cellrules.cluster_hits(ctx)),
    ]
    if n <= _PARALLEL_RULES_MAX_ROWS:
        # independent rule families; numpy and scipy release the GIL
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = [pool.submit(job) for _, job in jobs]
            knn, triggers, clusters = (f.result() for f in futures)
        clock.lap("poison_rules")
    else:  # one at a time keeps the peak memory of large inputs down
        results = []
        for name, job in jobs:
            results.append(job())
            clock.lap(name)
        knn, triggers, clusters = results
    if knn is not None:
        rows["poison.knn_disagreement"] = knn.rows
        out.append(Finding(
            "poison.knn_disagreement", Severity.HIGH, path,
            f"{len(knn.rows)} row(s) carry a label that all of their nearest baseline "
            f"neighbours contradict; about {knn.evidence['expected_natural']:.0f} would be "
            "expected from the baseline's own noise",
            evidence={**_rows_evidence(knn.rows, cap), **knn.evidence}))
    for rule, hits, what in (
        ("poison.trigger_pattern", triggers,
         "feature value(s) or value combination(s) predict one label far more strongly than "
         "in the baseline (backdoor trigger or targeted relabelling)"),
        ("poison.injected_cluster", clusters,
         "dense cluster(s) of rows carrying one label where the baseline has few rows "
         "(injected near-duplicates or outliers)"),
    ):
        if not hits:
            continue
        flagged = np.unique(np.concatenate([h.rows for h in hits]))
        rows[rule] = flagged
        hits.sort(key=lambda h: -len(h.rows))
        out.append(Finding(
            rule, Severity.HIGH, path, f"{len(flagged)} row(s): {len(hits)} {what}; "
            f"first: {hits[0].description} -> label {names[hits[0].label]!r}",
            evidence={**_rows_evidence(flagged, cap),
                      "patterns": [h.to_json(names) for h in hits[:20]],
                      "pattern_count": len(hits)}))
    return out


def _transitions(changed: np.ndarray | None, s: Side, b: Side, names: list[Any]
                 ) -> dict[str, int]:
    """How many rows moved from which label to which (by id), e.g. ``{"1->0": 12}``."""
    if changed is None or s.ids is None or b.ids is None or s.labels is None \
            or b.labels is None:
        return {}
    order = np.argsort(b.ids, kind="stable")
    idx = np.clip(np.searchsorted(b.ids[order], s.ids[changed]), 0, len(order) - 1)
    old = b.labels[order][idx]
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
