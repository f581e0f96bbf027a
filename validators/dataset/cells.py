"""Cell tests: regions of feature space whose rows carry one label far more often than the
baseline predicts (the dense clusters the baseline does not have: ``clusters.py``; the hit and
context types: ``cell_context.py``).

A *view* cuts the feature space into cells. For each cell ``g`` and label ``c`` the snapshot's
count ``O`` is set against what the baseline expects for *those* rows:
``E = sum_i p(c | x_i)`` from the calibrated baseline model (``model.py``),
corrected by the model's own error in that cell on the held-out baseline rows (a logit offset,
shrunk towards 0 with a prior sd ``_TAU``). Because the expectation follows the snapshot's rows,
a covariate shift (rows moving into a region) moves ``E`` with them. A natural prior shift
multiplies the odds of a label everywhere alike; up to a factor of two it cannot halve the
other labels of any cell, so the deficit test below leaves it to ``drift.label_marginal``.

A cell/label is flagged when the excess ``O - E`` is at least ``max(10, 0.02% of rows)``, at
least half of the other labels the baseline expects there are missing (``deficit <= 0.5``), and
the signed-root likelihood-ratio statistic of a binomial count, computed after moving ``E``
two model-error sds towards ``O``, is ``>= _Z_MIN``.

- ``poison.trigger_pattern`` views: one feature (fine quantile bins, beyond-range and null
  bins, each value of a category, each never-seen value), exact numeric values repeated far
  more often than in the baseline sample, and pairs of features (coarse bins) among the most
  informative ones.
- ``poison.boundary_relabel``: bands of the baseline model's probability of each label: labels
  moved near the decision boundary, where each change looks like noise.

Rows: for a never-seen value or a repeated value the baseline does not have, every row of the
cell with the flagged label; for a relabelled region, the rows whose estimated chance of having
been changed is at least one half (``rho (1 - p) / (rho (1 - p) + p)`` with ``rho`` the share
of the other labels that moved and ``p`` the baseline's probability of the label at the row).
When no row reaches that, the finding names the cell's rows as *candidates*: the change is
certain, the rows are not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from custody.validators.dataset.cell_context import (
    MIN_CELL_ROWS,
    Z_MIN,
    CellContext,
    CellHit,
    index_cells,
    lr_z,
)

_MAX_PAIR_FEATURES = 6
_SCREEN_Z = 4.0  # a feature whose cells lean this much is paired with the others
_DEFICIT = 0.5
_TAU = 0.35  # prior sd of the model's logit error in a cell the held-out rows do not cover
_TAU_SCATTERED = 0.15
_MARGIN = 2.0  # model-error sds E is moved towards O before the test
_BAND_EDGES = np.array([0.05, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 0.95], dtype=np.float32)
_BAND_MID = (3, 7)  # bands 0.2-0.8
_BAND_EFFECT = 0.004  # the reliability curve must move at least this share of the rows
_DRILL_CELLS = 8  # leaning one-feature cells split further by every other feature
_POSTERIOR = 0.5


def _interval(ctx: CellContext, j: int, code: int, fine: bool) -> str:
    f = ctx.plan.features[j]
    if f.kind == "categorical":
        inverse = {v: k for k, v in f.vocab.items()}
        if code == 0:
            return f"{f.name} is null"
        value = inverse.get(code - 1, "?")
        return f"{f.name} = {value!r}" + ("" if code - 1 < f.known else " (new value)")
    edges = (f.fine_edges if fine else f.coarse_edges).astype(np.float64) * f.scale + f.center
    if code > len(edges):
        return f"{f.name} is null"
    if code == 0:
        return f"{f.name} < {edges[0]:.6g} (below baseline range)"
    if code == len(edges):
        return f"{f.name} >= {edges[-1]:.6g} (above baseline range)"
    return f"{f.name} in [{edges[code - 1]:.6g}, {edges[code]:.6g})"


def _cells(keys: np.ndarray, use: np.ndarray, minimum: float) -> tuple[np.ndarray, bool]:
    """Codes of the cells holding at least ``minimum`` used rows; whether codes are small."""
    k = keys[use]
    dense = k.dtype.kind == "i" and int(k.min(initial=0)) >= 0 and int(k.max(initial=0)) < 1 << 22
    if dense:
        counts = np.bincount(k, minlength=1)
        return np.flatnonzero(counts >= minimum), True
    uniq, counts = np.unique(k, return_counts=True)
    return uniq[counts >= minimum], False


@dataclass
class _Flag:
    cell: int  # the cell's code
    label: int
    rows: np.ndarray  # the snapshot rows of the cell with that label
    n: float
    observed: float
    expected: float
    z: float
    share: float  # the baseline's share of the label in the cell (held-out rows)
    rho: float  # the share of the other labels that moved to this one
    calibration: float  # E / the model's raw sum for the cell


@dataclass
class _Test:
    """How one view is tested: which rows (indices; None = all), the thresholds, and an
    optional replacement of the model's probabilities for the snapshot rows."""

    rows_s: np.ndarray | None = None
    rows_h: np.ndarray | None = None
    deficit: float = _DEFICIT  # at most this share of the other labels may remain
    lift: float = 1.0  # O / E at least this
    proba_s: np.ndarray | None = None
    leans: list[tuple[float, int, int]] | None = None  # (z, cell, label) of leaning cells
    # prior sd of the model's logit error per cell; cells whose rows share only a stamped or
    # new value (not a region) average the model's local errors out: _TAU_SCATTERED
    tau: float = _TAU


def _label_test(ctx: CellContext, keys_s: np.ndarray, keys_h: np.ndarray,
                test: _Test | None = None) -> list[_Flag]:
    """Cells of one view whose snapshot rows carry a label far more often than expected.

    ``keys_s`` / ``keys_h`` hold a cell code per row of ``test.rows_s`` / ``test.rows_h``
    (every row when None); negative codes are no cell. ``test.leans`` collects the cells
    whose excess is large (z >= _SCREEN_Z) whether or not they pass the other tests."""
    t = test or _Test()
    v = ctx.view
    c = ctx.classes
    y_s = ctx.y_s if t.rows_s is None else ctx.y_s[t.rows_s]
    elig = ctx.eligible if t.rows_s is None else ctx.eligible[t.rows_s]
    y_h = v.y_hold if t.rows_h is None else v.y_hold[t.rows_h]
    use_s = elig & (y_s >= 0) & (keys_s >= 0)
    cells, dense = _cells(keys_s, use_s, max(MIN_CELL_ROWS, ctx.m_min))
    if len(cells) == 0:
        return []
    m = len(cells)
    # every row gets a cell index, rows outside any tested cell the overflow index m
    g_s = index_cells(keys_s, cells, dense).astype(np.int64)
    g_s[~use_s | (g_s < 0)] = m
    g_h = index_cells(keys_h, cells, dense).astype(np.int64)
    g_h[(y_h < 0) | (keys_h < 0) | (g_h < 0)] = m
    observed = _counts(g_s, y_s, m, c)
    n = observed.sum(axis=1)
    # only a label holding at least (1 - deficit) of a cell can pass the deficit test
    need = np.maximum((1 - t.deficit) * n[:, None], ctx.m_min)
    possible = (observed >= need).any(axis=1)
    if not possible.any() and t.leans is None:
        return []
    raw, expected, sd_e, share = _expectation(ctx, t, g_s, g_h, y_h, m, n)
    gap = observed - expected
    moved = expected + np.sign(gap) * np.minimum(np.abs(gap), _MARGIN * sd_e)
    z = lr_z(observed, moved, n[:, None])
    if t.leans is not None:  # a screen only: without the model-error margin
        z_raw = lr_z(observed, expected, n[:, None])
        for g, k in zip(*np.nonzero((gap >= ctx.m_min) & (z_raw >= _SCREEN_Z)), strict=True):
            t.leans.append((float(z_raw[g, k]), int(cells[g]), int(k)))
    others_left = (n[:, None] - observed) / np.maximum(n[:, None] - expected, 1e-9)
    flag = ((gap >= ctx.m_min) & (z >= Z_MIN) & (others_left <= t.deficit)
            & (observed >= t.lift * expected) & possible[:, None])
    out: list[_Flag] = []
    for g, k in zip(*np.nonzero(flag), strict=True):
        rows = np.flatnonzero((g_s == g) & (y_s == k))
        if t.rows_s is not None:
            rows = t.rows_s[rows]
        rest = max(float(n[g] - expected[g, k]), 1e-9)
        out.append(_Flag(int(cells[g]), int(k), rows, float(n[g]), float(observed[g, k]),
                         float(expected[g, k]), float(z[g, k]), float(share[g, k]),
                         min(float(gap[g, k]) / rest, 1.0),
                         float(expected[g, k] / max(raw[g, k], 1e-9))))
    return out


def _counts(g: np.ndarray, y: np.ndarray, m: int, c: int) -> np.ndarray:
    """(cells x labels) row counts; rows with cell index m (or no label) are left out."""
    flat = np.bincount(g * c + np.maximum(y, 0), minlength=(m + 1) * c)
    return flat[: m * c].reshape(m, c).astype(np.float64)


def _sums(g: np.ndarray, proba: np.ndarray, rows: np.ndarray | None, m: int) -> np.ndarray:
    """(cells x labels) sums of the model's probabilities over the rows of each cell."""
    out = np.empty((m, proba.shape[1]))
    for k in range(proba.shape[1]):
        weights = proba[:, k] if rows is None else proba[rows, k]
        out[:, k] = np.bincount(g, weights=weights, minlength=m + 1)[:m]
    return out


def _expectation(ctx: CellContext, t: _Test, g_s: np.ndarray, g_h: np.ndarray,
                 y_h: np.ndarray, m: int, n: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per cell and label: the model's raw expectation for the snapshot rows, the expectation
    corrected by the model's error in the cell on the held-out rows, that correction's sd,
    and the held-out share of the label (smoothed)."""
    v = ctx.view
    c = ctx.classes
    raw = _sums(g_s, v.p_s if t.proba_s is None else t.proba_s, t.rows_s, m)
    o_h = _counts(g_h, y_h, m, c)
    e_h = _sums(g_h, v.p_hold, t.rows_h, m)
    n_h = o_h.sum(axis=1, keepdims=True)
    # the model's error in the cell as a logit offset, shrunk to 0 (Fisher information of the
    # held-out rows ~ e(1 - e/n)); the binomial variance bounds sum p(1-p) from above
    info_h = e_h * (1 - e_h / np.maximum(n_h, 1.0))
    prec = info_h + 1.0 / t.tau ** 2
    delta = (o_h - e_h) / prec
    var_raw = raw * (1 - raw / np.maximum(n[:, None], 1.0))
    expected = np.clip(raw + delta * var_raw, 0.0, n[:, None])
    return raw, expected, var_raw / np.sqrt(prec), (o_h + 1.0) / (n_h + c)


def _likely(ctx: CellContext, f: _Flag) -> np.ndarray:
    """Of a relabelled region's rows, those more likely changed than not, least likely label
    first, at most as many as the excess."""
    p = np.clip(ctx.view.p_s[f.rows, f.label].astype(np.float64) * f.calibration, 1e-9, 1.0)
    post = f.rho * (1 - p) / (f.rho * (1 - p) + p)
    order = np.argsort(p, kind="stable")
    order = order[post[order] >= _POSTERIOR][: math.ceil(f.observed - f.expected)]
    return np.sort(f.rows[order])


def _hit(ctx: CellContext, rule: str, view: str, f: _Flag, description: str,
         whole: bool = False) -> CellHit:
    rows = f.rows if whole else _likely(ctx, f)
    candidates = len(rows) == 0
    if candidates:
        rows = f.rows
    return CellHit(rule, view, f.label, rows, int(f.n), f.expected, f.observed / f.n, f.share,
                   description, int(f.observed), f.z, candidates, f.rows)


def _value_cells(ctx: CellContext, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact numeric values repeated far more often than in the baseline sample: a key per
    snapshot and held-out row (-1 elsewhere) and the values."""
    m_min = ctx.m_min / 2
    bins_s, bins_b = ctx.fine(j), ctx.fine_b[:, j]
    size = int(max(bins_s.max(initial=0), bins_b.max(initial=0))) + 1
    cs = np.bincount(bins_s, minlength=size).astype(np.float64)
    cb = np.bincount(bins_b, minlength=size) * ctx.scale
    dense = np.flatnonzero((cs - cb >= m_min)
                           & ((cs - cb) / np.sqrt(cb * (1 + ctx.scale) + 1) >= Z_MIN))
    none = np.full(len(ctx.y_s), -1, dtype=np.int64), np.full(len(ctx.view.y_hold), -1,
                                                                dtype=np.int64)
    if len(dense) == 0:
        return none[0], none[1], np.zeros(0)
    rows = np.flatnonzero(np.isin(bins_s, dense) & ctx.eligible & (ctx.y_s >= 0))
    uniq, inv, counts = np.unique(ctx.z_s[rows, j], return_inverse=True, return_counts=True)
    picked = []
    for k in np.flatnonzero(counts >= m_min):
        in_base = float(np.sum(ctx.z_b[:, j] == uniq[k])) * ctx.scale
        if in_base < 0.2 * counts[k]:
            picked.append(k)
    if not picked:
        return none[0], none[1], np.zeros(0)
    values = uniq[np.asarray(picked)]
    lut = np.full(len(uniq), -1, dtype=np.int64)
    lut[np.asarray(picked)] = np.arange(len(picked))
    keys_s = none[0].copy()
    keys_s[rows] = lut[inv]
    col_h = ctx.view.z_hold[:, j]
    pos = np.clip(np.searchsorted(values, col_h), 0, len(values) - 1)
    keys_h = np.where(values[pos] == col_h, pos, -1).astype(np.int64)
    return keys_s, keys_h, values


def trigger_hits(ctx: CellContext) -> list[CellHit]:
    hits: list[CellHit] = []
    feats = ctx.plan.features
    leaning: list[tuple[float, int, int, int]] = []  # (z, feature, cell, label)
    for j, f in enumerate(feats):
        view = f"feature:{f.name}"
        test = _Test(leans=[])
        keys_s = ctx.fine(j).astype(np.int64)
        keys_h = ctx.fine_h[:, j].astype(np.int64)
        if f.kind == "categorical":  # never-seen values: scattered rows, tested apart
            fresh = keys_s - 1 >= f.known
            for flag in _label_test(ctx, np.where(fresh, keys_s, -1), keys_h,
                                    _Test(tau=_TAU_SCATTERED)):
                hits.append(_hit(ctx, "poison.trigger_pattern", view, flag,
                                 _interval(ctx, j, flag.cell, True), whole=True))
            keys_s = np.where(fresh, -1, keys_s)
        for flag in _label_test(ctx, keys_s, keys_h, test):
            hits.append(_hit(ctx, "poison.trigger_pattern", view, flag,
                             _interval(ctx, j, flag.cell, True)))
        leaning += [(z, j, cell, k) for z, cell, k in test.leans or []]
        if f.kind == "numeric":
            keys_s, keys_h, values = _value_cells(ctx, j)
            if len(values):
                for flag in _label_test(ctx, keys_s, keys_h, _Test(tau=_TAU_SCATTERED)):
                    value = float(values[flag.cell]) * f.scale + f.center
                    hits.append(_hit(ctx, "poison.trigger_pattern", f"value:{f.name}", flag,
                                     f"{f.name} == {value:.6g} (repeated value)", whole=True))
    hits += _drill_down(ctx, sorted(leaning, reverse=True)[:_DRILL_CELLS])
    informative = [int(j) for j in np.argsort(-ctx.view.relevance)]
    chosen = sorted(informative[:_MAX_PAIR_FEATURES])
    for a, b in combinations(chosen, 2):
        coarse_b = ctx.coarse(b)
        width = int(max(coarse_b.max(initial=0), ctx.coarse_h[:, b].max(initial=0))) + 1
        ks = ctx.coarse(a) * width + coarse_b
        del coarse_b
        kh = ctx.coarse_h[:, a].astype(np.int64) * width + ctx.coarse_h[:, b]
        view = f"pair:{feats[a].name},{feats[b].name}"
        for flag in _label_test(ctx, ks, kh):
            desc = (_interval(ctx, a, flag.cell // width, False) + " and "
                    + _interval(ctx, b, flag.cell % width, False))
            hits.append(_hit(ctx, "poison.trigger_pattern", view, flag, desc))
    return _dedupe(hits)


def _drill_down(ctx: CellContext, leaning: list[tuple[float, int, int, int]]
                ) -> list[CellHit]:
    """A subgroup defined by two features leans, diluted, in the cells of each: split each
    strongly leaning one-feature cell by every other feature's coarse bins."""
    hits: list[CellHit] = []
    feats = ctx.plan.features
    for _, j, cell, label in leaning:
        rows_s = np.flatnonzero(ctx.fine(j) == cell)
        rows_h = np.flatnonzero(ctx.fine_h[:, j] == cell)
        for j2, f2 in enumerate(feats):
            if j2 == j:
                continue
            test = _Test(rows_s=rows_s, rows_h=rows_h)
            for flag in _label_test(ctx, ctx.coarse(j2, rows_s),
                                    ctx.coarse_h[rows_h, j2].astype(np.int64), test):
                if flag.label != label:
                    continue
                desc = (_interval(ctx, j, cell, True) + " and "
                        + _interval(ctx, j2, flag.cell, False))
                hits.append(_hit(ctx, "poison.trigger_pattern",
                                 f"pair:{feats[j].name},{f2.name}", flag, desc))
    return hits


def band_hits(ctx: CellContext, use_rows: np.ndarray | None = None,
              log_w: np.ndarray | None = None) -> list[CellHit]:
    """Labels moved near the decision boundary (``poison.boundary_relabel``).

    The snapshot's rows are cut into bands of the baseline model's probability of a label
    (after the snapshot's label-shift weights, so a natural prior shift is absorbed); per band
    the rows of the label are counted against the model's expectation, corrected by the
    model's error in that band on the held-out rows (a reliability curve, Hosmer-Lemeshow
    style). Flagged when the curve departs from the baseline's (chi-square over the bands
    with p < 1e-7), the departure moves at least ``_BAND_EFFECT`` of the rows, and the label
    grew in the unsure bands (probability 0.2-0.8) more than where the model found it
    unlikely (random flips grow it there: ``poison.knn_disagreement``). Each changed row is
    plausible on its own: the rows are candidates."""
    v = ctx.view
    hits: list[CellHit] = []
    use = (ctx.eligible if use_rows is None else use_rows) & (ctx.y_s >= 0)
    if use.sum() < 10 * ctx.m_min:
        return hits
    w = np.exp(v.log_w if log_w is None else log_w).astype(np.float32)
    p_w = v.p_s * w
    p_w /= p_w.sum(axis=1, keepdims=True)
    use_h = v.y_hold >= 0
    total = float(use.sum())
    for k in range(ctx.classes) if ctx.classes > 2 else range(2):
        band = np.searchsorted(_BAND_EDGES, p_w[:, k])
        band_h = np.searchsorted(_BAND_EDGES, v.p_hold[:, k])
        size = len(_BAND_EDGES) + 1
        n = np.bincount(band[use], minlength=size).astype(np.float64)
        o = np.bincount(band[use], weights=(ctx.y_s[use] == k), minlength=size)
        raw = np.bincount(band[use], weights=p_w[use, k].astype(np.float64), minlength=size)
        o_h = np.bincount(band_h[use_h], weights=(v.y_hold[use_h] == k), minlength=size)
        e_h = np.bincount(band_h[use_h], weights=v.p_hold[use_h, k].astype(np.float64),
                          minlength=size)
        n_h = np.bincount(band_h[use_h], minlength=size).astype(np.float64)
        # the band's calibration error on the held-out rows, as a logit offset (see
        # _label_test): symmetric in the labels
        prec = e_h * (1 - e_h / np.maximum(n_h, 1.0)) + 1.0 / _TAU ** 2
        spread = raw * (1 - raw / np.maximum(n, 1.0))
        e = np.clip(raw + (o_h - e_h) / prec * spread, 0.0, n)
        var = spread + spread ** 2 / prec + 1.0
        chi2 = float(np.sum((o - e) ** 2 / var))
        dof = max(int(np.count_nonzero(n)) - 1, 1)
        effect = float(np.sum(np.abs(o - e))) / (2 * total)
        mid = (np.arange(size) >= _BAND_MID[0]) & (np.arange(size) < _BAND_MID[1])
        low = np.arange(size) < _BAND_MID[0]
        grown_mid = float(np.sum((o - e)[mid]))
        grown_low = float(np.sum(np.maximum(o - e, 0)[low]))
        if chi2 < _chi2_limit(dof) or effect < _BAND_EFFECT or grown_mid < ctx.m_min \
                or grown_mid <= grown_low:
            continue
        in_mid = mid[band]
        rows = np.flatnonzero(use & in_mid & (ctx.y_s == k))
        e_mid, o_mid = float(e[mid].sum()), float(o[mid].sum())
        hits.append(CellHit(
            "poison.boundary_relabel", f"bands:{k}", k, rows, int(n[mid].sum()), e_mid,
            o_mid / max(float(n[mid].sum()), 1.0), e_mid / max(float(n[mid].sum()), 1.0),
            f"rows the baseline model finds 20-80% likely to carry the label: {o_mid:.0f} "
            f"where it expects {e_mid:.0f} (reliability chi-square {chi2:.0f} over {dof + 1} "
            f"bands, {effect:.1%} of rows moved)", int(o_mid), math.sqrt(chi2),
            candidates=True))
    return hits


def _chi2_limit(dof: int) -> float:
    """The chi-square value with upper tail about 1e-7 (Wilson-Hilferty)."""
    z = 5.2
    return float(dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3)


def _dedupe(hits: list[CellHit]) -> list[CellHit]:
    """One hit per row set and label (a pair cell repeating a one-feature cell adds nothing)."""
    seen: set[tuple[int, int, int]] = set()
    out = []
    for h in sorted(hits, key=lambda h: -h.z):
        key = (h.label, len(h.rows), int(h.rows[:1].sum()) if len(h.rows) else -1)
        if key in seen:
            continue
        seen.add(key)
        out.append(h)
    return out
