"""Distribution drift between two profiles, as effect sizes with tolerances (never p-values).

Numeric columns: PSI on ten baseline-quantile bins (plus below-min/above-max bins) and the
Wasserstein-1 distance divided by the baseline's spread, both computed from the quantile sketches.
Categorical columns: Jensen-Shannon divergence (base 2) and PSI over the value tables.
Every column: null-rate change. Label: the label marginal. Time-like columns (temporal types or
values that never decrease in file order) are expected to move forward: only a move backwards
is reported. A statistic must also clear its sampling-noise floor, so tiny inputs stay quiet.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from custody.validators.dataset.profile import (
    CATEGORICAL,
    NUMERIC,
    TEMPORAL,
    ColumnProfile,
    DatasetProfile,
)
from custody.validators.findings import Finding, Severity

_PSI_BINS = 10
_W_TRIM = 0.01  # quantile levels below and above are left out of the Wasserstein distance
_EPS = 1e-4


@dataclass(frozen=True)
class Tolerances:
    psi_low: float = 0.1
    psi_medium: float = 0.25
    wasserstein_low: float = 0.15
    wasserstein_medium: float = 0.5
    js_low: float = 0.02
    js_medium: float = 0.08
    null_low: float = 0.02
    null_medium: float = 0.1
    label_low: float = 0.03  # absolute change of a class's share
    label_medium: float = 0.1
    noise_factor: float = 4.0


def _cdf(quantiles: Sequence[float], x: np.ndarray) -> np.ndarray:
    q = np.asarray(quantiles, dtype=np.float64)
    p = np.linspace(0.0, 1.0, len(q))
    if len(q) > 1 and np.all(np.diff(q) > 0):
        return np.asarray(np.interp(x, q, p, left=0.0, right=1.0), dtype=np.float64)
    steps = np.clip(np.searchsorted(q, x, side="right") - 1, 0, None) / max(len(q) - 1, 1)
    return np.asarray(steps, dtype=np.float64)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    e = np.clip(expected, _EPS, None)
    a = np.clip(actual, _EPS, None)
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    p = p / p.sum() if p.sum() else p
    q = q / q.sum() if q.sum() else q
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return 0.5 * kl(p) + 0.5 * kl(q)


def _numeric_bins(b: ColumnProfile, s: ColumnProfile) -> tuple[np.ndarray, np.ndarray]:
    """Proportions of baseline and snapshot over the baseline's decile bins (+ outer bins)."""
    qb = b.quantiles
    edges = np.unique(np.quantile(np.asarray(qb), np.linspace(0, 1, _PSI_BINS + 1)))
    cb, cs = _cdf(qb, edges), _cdf(s.quantiles, edges)
    # bins: (-inf, e0), [e0, e1) ... [e_k, inf) using right-continuous CDFs at the edges
    pb = np.diff(np.concatenate([[0.0], cb, [1.0]]))
    ps = np.diff(np.concatenate([[0.0], cs, [1.0]]))
    return np.clip(pb, 0, None), np.clip(ps, 0, None)


def _wasserstein_normalised(b: ColumnProfile, s: ColumnProfile) -> float:
    """Wasserstein-1 between the central 98% of the two distributions (quantile levels 1% to
    99%: a handful of extreme values in a heavy tail must not decide it; PSI's outer bins see
    the tails), divided by the baseline's robust spread (the larger of the trimmed standard
    deviation and IQR / 1.349)."""
    qb, qs = np.asarray(b.quantiles), np.asarray(s.quantiles)
    if len(qb) != len(qs):
        grid = np.linspace(0, 1, 257)
        qb, qs = np.quantile(qb, grid), np.quantile(qs, grid)
    cut = round(_W_TRIM * (len(qb) - 1))
    core_b, core_s = (qb[cut:len(qb) - cut], qs[cut:len(qs) - cut]) if len(qb) > 2 * cut + 1 \
        else (qb, qs)
    w = float(np.mean(np.abs(core_b - core_s)))
    iqr = float(np.quantile(qb, 0.75) - np.quantile(qb, 0.25)) / 1.349
    scale = max(float(np.std(core_b)), iqr)
    if scale <= 0:
        scale = max(abs(b.mean or 0.0), 1.0)
    return w / scale


def _categorical_proportions(b: ColumnProfile, s: ColumnProfile) -> tuple[np.ndarray, np.ndarray]:
    bc, sc = b.value_counts, s.value_counts
    keys = list(dict.fromkeys([*bc, *sc]))
    pb = np.array([bc.get(k, 0) for k in keys], dtype=np.float64)
    ps = np.array([sc.get(k, 0) for k in keys], dtype=np.float64)
    return pb / max(pb.sum(), 1.0), ps / max(ps.sum(), 1.0)


def column_distance(b: ColumnProfile, s: ColumnProfile) -> float:
    """A scale-free distance between two columns' distributions (0 = identical)."""
    if b.kind in (NUMERIC, TEMPORAL) and b.quantiles and s.quantiles:
        pb, ps = _numeric_bins(b, s)
        return max(psi(pb, ps), _wasserstein_normalised(b, s))
    if b.values is not None and s.values is not None:
        pb, ps = _categorical_proportions(b, s)
        return jensen_shannon(pb, ps)
    return float("inf")


def _effective(n: int, sample: int) -> int:
    return max(min(n, sample) if sample else n, 1)


def _severity(value: float, low: float, medium: float) -> Severity | None:
    if value >= medium:
        return Severity.MEDIUM
    if value >= low:
        return Severity.LOW
    return None


def _finding(rule: str, sev: Severity, path: str, column: str, statistic: str, value: float,
             tolerance: float, message: str, **extra: object) -> Finding:
    evidence: dict[str, object] = {"column": column, "statistic": statistic,
                                   "value": round(value, 6), "tolerance": tolerance}
    evidence.update(extra)
    return Finding(rule, sev, path, message, location=f"column {column}", evidence=evidence)


def is_time_like(b: ColumnProfile) -> bool:
    return b.kind == TEMPORAL or (b.kind == NUMERIC and b.monotonic)


def _drift_numeric(b: ColumnProfile, s: ColumnProfile, path: str, tol: Tolerances) -> list[Finding]:
    if not b.quantiles or not s.quantiles:
        return []
    nb, ns = _effective(b.count - b.nulls, b.sample_size), _effective(s.count - s.nulls,
                                                                      s.sample_size)
    pb, ps = _numeric_bins(b, s)
    p = psi(pb, ps)
    w = _wasserstein_normalised(b, s)
    psi_floor = tol.noise_factor * (len(pb) - 1) * (1 / nb + 1 / ns)
    w_floor = tol.noise_factor * math.sqrt(1 / nb + 1 / ns)
    sev_p = _severity(p, max(tol.psi_low, psi_floor), max(tol.psi_medium, psi_floor))
    sev_w = _severity(w, max(tol.wasserstein_low, w_floor), max(tol.wasserstein_medium, w_floor))
    if sev_p is None and sev_w is None:
        return []
    use_psi = (sev_p or -1) >= (sev_w or -1)
    stat, value, t = ("psi", p, tol.psi_low) if use_psi else ("wasserstein_normalised", w,
                                                               tol.wasserstein_low)
    sev = max(s_ for s_ in (sev_p, sev_w) if s_ is not None)
    return [_finding(
        "drift.distribution", sev, path, b.name, stat, value, t,
        f"column {b.name!r} distribution moved: PSI {p:.3f}, normalised Wasserstein {w:.3f}",
        psi=round(p, 6), wasserstein_normalised=round(w, 6),
        baseline_mean=b.mean, snapshot_mean=s.mean, baseline_std=b.std, snapshot_std=s.std,
    )]


def _drift_categorical(b: ColumnProfile, s: ColumnProfile, path: str, tol: Tolerances
                      ) -> list[Finding]:
    if b.values is None or s.values is None:
        return []
    pb, ps = _categorical_proportions(b, s)
    js = jensen_shannon(pb, ps)
    p = psi(pb, ps)
    nb, ns = max(b.count - b.nulls, 1), max(s.count - s.nulls, 1)
    floor = tol.noise_factor * (len(pb) - 1) * (1 / nb + 1 / ns) / (8 * math.log(2))
    sev = _severity(js, max(tol.js_low, floor), max(tol.js_medium, floor))
    if sev is None:
        return []
    keys = [str(k) for k in dict.fromkeys([*b.value_counts, *s.value_counts])]
    top = sorted(zip(keys, pb, ps, strict=True), key=lambda t: -abs(t[2] - t[1]))[:10]
    return [_finding(
        "drift.distribution", sev, path, b.name, "jensen_shannon", js, tol.js_low,
        f"column {b.name!r} frequencies moved: Jensen-Shannon {js:.4f}, PSI {p:.3f}",
        psi=round(p, 6),
        proportions={k: [round(float(x), 6), round(float(y), 6)] for k, x, y in top},
    )]


def _drift_label(b: ColumnProfile, s: ColumnProfile, path: str, tol: Tolerances) -> list[Finding]:
    """Label marginal: the largest absolute change of a class's share (JS and PSI as context)."""
    if b.values is None or s.values is None:
        return []
    pb, ps = _categorical_proportions(b, s)
    delta = np.abs(ps - pb)
    k = int(np.argmax(delta)) if len(delta) else 0
    value = float(delta[k]) if len(delta) else 0.0
    nb, ns = max(b.count - b.nulls, 1), max(s.count - s.nulls, 1)
    p = float(pb[k]) if len(pb) else 0.0
    floor = tol.noise_factor * math.sqrt(max(p * (1 - p), 0.25 / nb) * (1 / nb + 1 / ns))
    sev = _severity(value, max(tol.label_low, floor), max(tol.label_medium, floor))
    if sev is None:
        return []
    keys = [str(k_) for k_ in dict.fromkeys([*b.value_counts, *s.value_counts])]
    return [_finding(
        "drift.label_marginal", sev, path, b.name, "max_share_change", value, tol.label_low,
        f"label marginal moved: class {keys[k]!r} share {pb[k]:.2%} -> {ps[k]:.2%}",
        jensen_shannon=round(jensen_shannon(pb, ps), 6), psi=round(psi(pb, ps), 6),
        proportions={key: [round(float(x), 6), round(float(y), 6)]
                     for key, x, y in zip(keys, pb, ps, strict=True)},
    )]


def _drift_nulls(b: ColumnProfile, s: ColumnProfile, path: str, tol: Tolerances) -> list[Finding]:
    rb, rs = b.null_rate, s.null_rate
    delta = abs(rs - rb)
    pooled = (b.nulls + s.nulls) / max(b.count + s.count, 1)
    floor = tol.noise_factor * math.sqrt(pooled * (1 - pooled) * (1 / max(b.count, 1)
                                                                  + 1 / max(s.count, 1)))
    sev = _severity(delta, max(tol.null_low, floor), max(tol.null_medium, floor))
    if sev is None:
        return []
    return [_finding(
        "drift.null_rate", sev, path, b.name, "null_rate_change", rs - rb, tol.null_low,
        f"column {b.name!r} null rate {rb:.2%} -> {rs:.2%}",
        baseline_null_rate=round(rb, 6), snapshot_null_rate=round(rs, 6),
    )]


def _drift_time(b: ColumnProfile, s: ColumnProfile, path: str) -> list[Finding]:
    """Time-like columns should move forward; report only a move backwards."""
    if not b.quantiles or not s.quantiles or b.max is None or s.max is None:
        return []
    mid = len(b.quantiles) // 2
    if s.quantiles[mid] < b.quantiles[mid] and s.max < b.max:
        return [_finding(
            "drift.time_backwards", Severity.LOW, path, b.name, "median", s.quantiles[mid],
            b.quantiles[mid],
            f"time-like column {b.name!r} moved backwards (snapshot is older than baseline)",
            baseline_median=b.quantiles[mid], baseline_max=b.max, snapshot_max=s.max,
        )]
    return []


def compare_profiles(base: DatasetProfile, snap: DatasetProfile, path: str, *,
                     label: str | None, skip: frozenset[str] = frozenset(),
                     tol: Tolerances | None = None) -> list[Finding]:
    """Drift findings for every column present in both profiles (and the label marginal)."""
    tol = tol or Tolerances()
    out: list[Finding] = []
    for name, b in base.columns.items():
        s = snap.columns.get(name)
        if s is None or name in skip or s.kind != b.kind:
            continue
        out.extend(_drift_nulls(b, s, path, tol))
        if name == label:
            out.extend(_drift_label(b, s, path, tol))
        elif is_time_like(b):
            out.extend(_drift_time(b, s, path))
        elif b.kind == NUMERIC and b.values is not None and len(b.values) <= 20:
            out.extend(_drift_categorical(b, s, path, tol))
        elif b.kind in (NUMERIC, TEMPORAL):
            out.extend(_drift_numeric(b, s, path, tol))
        elif b.kind == CATEGORICAL:
            out.extend(_drift_categorical(b, s, path, tol))
    return out
