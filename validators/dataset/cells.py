"""Cell tests: regions of feature space whose rows carry one label far more often than the
baseline predicts, and dense clusters the baseline does not have.

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
- ``poison.injected_cluster``: a fine grid (0.1 robust sd per feature) for near-duplicates and a
  coarse grid (1 robust sd) for dense outlier clusters: a cell whose snapshot count is far
  beyond the baseline sample's density there (binomial likelihood-ratio test), that is an
  isolated peak (``_ISOLATION`` times any neighbouring cell: natural shifts move a smooth
  density) and carries one label.

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
from typing import Any

import numpy as np

from custody.validators.dataset.encode import FeaturePlan, mix64
from custody.validators.dataset.poison import ModelView

_FINE_GRID = 0.1
_COARSE_GRID = 1.0
_MAX_PAIR_FEATURES = 6
_SCREEN_Z = 4.0  # a feature whose cells lean this much is paired with the others
_Z_MIN = 5.5
_DEFICIT = 0.5
_TAU = 0.35  # prior sd of the model's logit error in a cell the held-out rows do not cover
_TAU_SCATTERED = 0.15
_MARGIN = 2.0  # model-error sds E is moved towards O before the test
_MIN_CELL_ROWS = 10  # no rule looks at a cell with fewer snapshot rows
_BAND_EDGES = np.array([0.05, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 0.95], dtype=np.float32)
_BAND_MID = (3, 7)  # bands 0.2-0.8
_BAND_EFFECT = 0.004  # the reliability curve must move at least this share of the rows
_DRILL_CELLS = 8  # leaning one-feature cells split further by every other feature
_GRID_CHUNK = 1 << 18
_PURE = 0.9  # a cluster carries one label on at least this share of its rows
_ISOLATION = 4.0  # a cluster's cell holds this many times the rows of any cell next to it
_SCALE_ALONE = 10.0
_SPLIT_CELLS = 2  # a cluster may spill into at most this many dense neighbouring cells
_POSTERIOR = 0.5


@dataclass
class CellHit:
    rule: str
    view: str
    label: int
    rows: np.ndarray
    snapshot_rows: int
    expected_rows: float
    purity: float
    baseline_share: float
    description: str
    observed: int = 0
    z: float = 0.0
    candidates: bool = False
    cell_rows: np.ndarray | None = None  # every row of the cell with the label

    def explained_by(self, flagged: np.ndarray, minimum: float) -> bool:
        """Whether rows already flagged (e.g. an injected cluster inside the cell) account
        for the excess."""
        rows = self.rows if self.cell_rows is None else self.cell_rows
        inside = int(np.isin(rows, flagged, assume_unique=True).sum())
        return self.observed - inside - self.expected_rows < minimum

    def to_json(self, label_names: list[Any]) -> dict[str, Any]:
        return {"view": self.view, "pattern": self.description,
                "label": label_names[self.label], "rows": len(self.rows),
                "rows_are_candidates": self.candidates,
                "snapshot_rows_in_cell": self.snapshot_rows, "observed": self.observed,
                "expected_from_baseline": round(self.expected_rows, 2),
                "purity": round(self.purity, 4), "baseline_share": round(self.baseline_share, 4),
                "z": round(self.z, 2)}


@dataclass
class CellContext:
    plan: FeaturePlan
    view: ModelView
    z_s: np.ndarray
    y_s: np.ndarray
    eligible: np.ndarray  # rows that may be reported (not plain copies of baseline rows)
    # bin codes (rows x features, see FeaturePlan.bin_matrix); None for large inputs: each
    # feature's codes are then computed when a view needs them (see ``fine``)
    fine_s: np.ndarray | None
    coarse_s: None  # derived per feature from the fine codes (see ``coarse``): saves memory
    fine_h: np.ndarray  # the same for the held-out baseline rows
    coarse_h: np.ndarray
    z_b: np.ndarray  # the whole baseline row sample, encoded (density)
    y_b: np.ndarray
    fine_b: np.ndarray
    scale: float  # snapshot rows per baseline sample row
    classes: int

    def fine(self, j: int, rows: np.ndarray | None = None) -> np.ndarray:
        """The snapshot's fine bin codes of feature ``j`` (of ``rows``)."""
        if self.fine_s is not None:
            return self.fine_s[:, j] if rows is None else self.fine_s[rows, j]
        z = self.z_s[:, j] if rows is None else self.z_s[rows, j]
        return np.asarray(np.minimum(self.plan.features[j].bins(z, fine=True),
                                     np.iinfo(np.int16).max), dtype=np.int16)

    def coarse(self, j: int, rows: np.ndarray | None = None) -> np.ndarray:
        """The snapshot's coarse bin codes of feature ``j`` (of ``rows``), as int64."""
        fine = self.fine(j, rows)
        f = self.plan.features[j]
        if f.kind != "numeric":
            return fine.astype(np.int64)
        return np.asarray(f.coarse_lut().astype(np.int64)[fine])

    @property
    def m_min(self) -> float:
        """The least excess a label test reports: max(10, 0.02% of rows)."""
        return max(10.0, 2e-4 * len(self.y_s))

    @property
    def cluster_min(self) -> float:
        """The least cluster: max(10, 0.002% of rows) (a pile of near-identical rows is
        evidence at any size; its density and isolation tests do the rest)."""
        return max(float(_MIN_CELL_ROWS), 2e-5 * len(self.y_s))


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


def _index(keys: np.ndarray, cells: np.ndarray, dense: bool) -> np.ndarray:
    if dense:
        remap = np.full(int(cells.max(initial=0)) + 2, -1, dtype=np.int32)
        remap[cells] = np.arange(len(cells))
        last = len(remap) - 1  # holds -1: negative keys and keys beyond every cell
        return np.asarray(remap[np.where((keys < 0) | (keys > last), last, keys)],
                          dtype=np.int32)
    out = np.full(len(keys), -1, dtype=np.int32)
    if len(cells) == 0:
        return out
    for start in range(0, len(keys), _GRID_CHUNK):  # in chunks: no full-length temporaries
        part = keys[start:start + _GRID_CHUNK]
        pos = np.minimum(np.searchsorted(cells, part), len(cells) - 1)
        out[start:start + len(part)] = np.where(cells[pos] == part, pos, -1)
    return out


def _cells(keys: np.ndarray, use: np.ndarray, minimum: float) -> tuple[np.ndarray, bool]:
    """Codes of the cells holding at least ``minimum`` used rows; whether codes are small."""
    k = keys[use]
    dense = k.dtype.kind == "i" and int(k.min(initial=0)) >= 0 and int(k.max(initial=0)) < 1 << 22
    if dense:
        counts = np.bincount(k, minlength=1)
        return np.flatnonzero(counts >= minimum), True
    uniq, counts = np.unique(k, return_counts=True)
    return uniq[counts >= minimum], False


def _lr_z(o: np.ndarray, e: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Signed root of the binomial likelihood-ratio statistic of o successes in n against an
    expected e."""
    p0 = np.clip(e / np.maximum(n, 1.0), 1e-12, 1 - 1e-12)
    ph = np.clip(o / np.maximum(n, 1.0), 1e-12, 1 - 1e-12)
    ll = o * np.log(ph / p0) + (n - o) * np.log((1 - ph) / (1 - p0))
    return np.asarray(np.sign(o - e) * np.sqrt(2 * np.maximum(ll, 0.0)))


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
    cells, dense = _cells(keys_s, use_s, max(_MIN_CELL_ROWS, ctx.m_min))
    if len(cells) == 0:
        return []
    m = len(cells)
    # every row gets a cell index, rows outside any tested cell the overflow index m
    g_s = _index(keys_s, cells, dense).astype(np.int64)
    g_s[~use_s | (g_s < 0)] = m
    g_h = _index(keys_h, cells, dense).astype(np.int64)
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
    z = _lr_z(observed, moved, n[:, None])
    if t.leans is not None:  # a screen only: without the model-error margin
        z_raw = _lr_z(observed, expected, n[:, None])
        for g, k in zip(*np.nonzero((gap >= ctx.m_min) & (z_raw >= _SCREEN_Z)), strict=True):
            t.leans.append((float(z_raw[g, k]), int(cells[g]), int(k)))
    others_left = (n[:, None] - observed) / np.maximum(n[:, None] - expected, 1e-9)
    flag = ((gap >= ctx.m_min) & (z >= _Z_MIN) & (others_left <= t.deficit)
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
                           & ((cs - cb) / np.sqrt(cb * (1 + ctx.scale) + 1) >= _Z_MIN))
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


# --- density clusters -------------------------------------------------------------------------


def _complete(z: np.ndarray, cols: list[int]) -> np.ndarray:
    """Rows with no null among ``cols`` (column by column: no copy of the matrix)."""
    ok = np.ones(len(z), dtype=bool)
    for j in cols:
        ok &= ~np.isnan(z[:, j])
    return ok


def _grid_coords(ctx: CellContext, z: np.ndarray, width: float, offset: float,
                 cols: list[int]) -> np.ndarray:
    """Integer grid coordinates (rows x cols): numbers in cells of ``width`` robust sds,
    categories by code, nulls at a sentinel."""
    out = np.empty((len(z), len(cols)), dtype=np.int64)
    for k, j in enumerate(cols):
        col = z[:, j].astype(np.float64)
        if ctx.plan.features[j].kind == "numeric":
            col = np.floor(np.clip(col, -1e6, 1e6) / width + offset)
        out[:, k] = np.where(np.isnan(col), -(2**40), col).astype(np.int64)
    return out


def _hash_coords(coords: np.ndarray, cols: list[int]) -> np.ndarray:
    h = np.full(len(coords), np.uint64(0x243F6A8885A308D3), dtype=np.uint64)
    for k, j in enumerate(cols):
        h = mix64(h ^ (coords[:, k].view(np.uint64) + np.uint64((j + 1) * 0x9E3779B1)))
    return h


def _grid_keys(ctx: CellContext, z: np.ndarray, width: float, offset: float,
               cols: list[int]) -> np.ndarray:
    """Cell hash per row, computed in chunks so that temporaries stay small."""
    out = np.empty(len(z), dtype=np.uint64)
    for start in range(0, len(z), _GRID_CHUNK):
        part = z[start:start + _GRID_CHUNK]
        out[start:start + len(part)] = _hash_coords(
            _grid_coords(ctx, part, width, offset, cols), cols)
    return out


def _neighbour_peak(ctx: CellContext, row: int, width: float, offset: float, cols: list[int],
                    counter: _KeyCounts, dense: np.ndarray) -> tuple[int, int]:
    """The largest snapshot count among the cells next to row's cell (one step along each
    numeric axis), leaving out ``dense`` cells (a cluster split by a cell edge), and how many
    neighbours were dense."""
    base = _grid_coords(ctx, ctx.z_s[row:row + 1], width, offset, cols)
    numeric = [k for k, j in enumerate(cols) if ctx.plan.features[j].kind == "numeric"]
    if not numeric:
        return 0, 0
    near = np.repeat(base, 2 * len(numeric), axis=0)
    for i, k in enumerate(numeric):
        near[2 * i, k] -= 1
        near[2 * i + 1, k] += 1
    keys = _hash_coords(near, cols)
    split = np.isin(keys, dense)
    keys = keys[~split]
    if len(keys) == 0:
        return 0, int(split.sum())
    return int(counter.count(keys).max(initial=0)), int(split.sum())


class _KeyCounts:
    """Row counts of grid keys (64-bit hashes) without sorting every row: a histogram of the
    keys' top bits picks the few buckets that can hold a dense cell; only their rows are
    sorted. ``count`` is exact in those buckets and an upper bound (the bucket's count)
    elsewhere, which can only make a cluster look less isolated."""

    _BITS = 22

    def __init__(self, keys: np.ndarray, valid: np.ndarray, minimum: float) -> None:
        self.keys, self.valid = keys, valid
        bucket = (keys >> np.uint64(64 - self._BITS)).astype(np.int32)
        self.hist = np.bincount(bucket[valid], minlength=1 << self._BITS)
        self.minimum = minimum
        busy = np.flatnonzero(self.hist >= minimum)
        rows = np.flatnonzero(np.isin(bucket, busy) & valid) if len(busy) else \
            np.zeros(0, dtype=np.int64)
        self.uniq, self.counts = np.unique(keys[rows], return_counts=True)

    def cells(self) -> np.ndarray:
        return np.asarray(self.uniq[self.counts >= self.minimum])

    def count(self, keys: np.ndarray) -> np.ndarray:
        bound = self.hist[(keys >> np.uint64(64 - self._BITS)).astype(np.int64)]
        if len(self.uniq) == 0:
            return np.asarray(bound)
        pos = np.clip(np.searchsorted(self.uniq, keys), 0, len(self.uniq) - 1)
        exact = np.where(self.uniq[pos] == keys, self.counts[pos], 0)
        busy = bound >= self.minimum  # those buckets' rows were all counted
        return np.where(busy, exact, bound)


def _density(ctx: CellContext, keys_s: np.ndarray, keys_b: np.ndarray,
             valid: tuple[np.ndarray, np.ndarray], cells: np.ndarray
             ) -> list[tuple[int, np.ndarray, int, dict[str, float]]]:
    """Grid cells holding far more snapshot rows than the baseline sample's density predicts
    and carrying one label: (a member row, the label's reportable rows, label, stats).

    Given a cell's rows of both samples, the snapshot's count is binomial with the snapshot's
    share of all rows under the null; the signed-root likelihood-ratio statistic is used."""
    use_s = valid[0] & (ctx.y_s >= 0)
    dense = False  # grid keys are hashes: ``cells`` are sorted unique ones
    if len(cells) == 0:
        return []
    inv_s = _index(keys_s, cells, dense)
    inv_s[~use_s] = -1
    inv_b = _index(keys_b, cells, dense)
    inv_b[~(valid[1] & (ctx.y_b >= 0))] = -1
    c = ctx.classes
    m = len(cells)
    ok_s, ok_b = inv_s >= 0, inv_b >= 0
    flat = inv_s[ok_s].astype(np.int64)
    flat *= c
    flat += ctx.y_s[ok_s]
    n_s = np.bincount(flat, minlength=m * c).reshape(m, c).astype(np.float64)
    del flat
    tot_b = np.bincount(inv_b[ok_b].astype(np.int64), minlength=m).astype(np.float64)
    tot_s = n_s.sum(axis=1)
    share = float(use_s.sum()) / max(float(use_s.sum() + (valid[1] & (ctx.y_b >= 0)).sum()), 1)
    z = _lr_z(tot_s, share * (tot_s + tot_b), tot_s + tot_b)
    purity = n_s / np.maximum(tot_s, 1.0)[:, None]
    # a snapshot with >= _SCALE_ALONE rows per baseline sample row leaves the test no power (a
    # cell the sample saw n_b times may hold up to (n_b + 2) x scale rows by chance): there,
    # half as many again is dense
    dense_enough = z >= _Z_MIN
    if ctx.scale >= _SCALE_ALONE:
        dense_enough |= tot_s >= 1.5 * (tot_b + 2) * ctx.scale
    cand = dense_enough[:, None] & (purity >= _PURE) & (n_s >= ctx.cluster_min)
    out: list[tuple[int, np.ndarray, int, dict[str, float]]] = []
    if not cand.any():
        return out
    members = np.flatnonzero(inv_s >= 0)
    members = members[np.argsort(inv_s[members], kind="stable")]
    bounds = np.searchsorted(inv_s[members], np.arange(m + 1))
    for cell, label in zip(*np.nonzero(cand), strict=True):
        block = members[bounds[cell]:bounds[cell + 1]]
        rows = block[(ctx.y_s[block] == label) & ctx.eligible[block]]
        if len(rows) < _MIN_CELL_ROWS:
            continue
        stats = {"n": float(tot_s[cell]), "e": float(tot_b[cell] * ctx.scale),
                 "purity": float(purity[cell, label]), "z": float(z[cell])}
        out.append((int(block[0]), rows, int(label), stats))
    return out


def _core(ctx: CellContext, rows: np.ndarray, cols: list[int], natural: float) -> np.ndarray:
    """A cluster cell's rows beyond what the baseline's density puts there (its upper bound),
    those nearest the cluster's centre first (injected rows pile up at one point, natural rows
    spread over the cell)."""
    keep = len(rows) - math.ceil(natural + 2 * math.sqrt(natural) + 1) if natural > 0 \
        else len(rows)
    if keep >= len(rows):
        return rows
    numeric = [j for j in cols if ctx.plan.features[j].kind == "numeric"]
    if not numeric or keep <= 0:
        return rows[:0] if keep <= 0 else rows
    z = ctx.z_s[np.ix_(rows, np.asarray(numeric, dtype=np.int64))].astype(np.float64)
    centre = np.nanmedian(z, axis=0)
    far = np.nanmax(np.abs(np.nan_to_num(z - centre, nan=0.0)), axis=1)
    return np.sort(rows[np.argsort(far, kind="stable")[:keep]])


def cluster_hits(ctx: CellContext) -> list[CellHit]:
    """Dense, isolated clusters carrying one label (near-duplicates on the fine grid, outlier
    clusters on the coarse one): a cell far denser than the baseline's density there, at
    least ``_ISOLATION`` times denser than any cell next to it (a natural shift moves a smooth
    density, an injection piles rows up), and at least ``_PURE`` one label."""
    hits: list[CellHit] = []
    if not ctx.plan.features:
        return hits
    every = list(range(len(ctx.plan.features)))
    cont = [j for j, f in enumerate(ctx.plan.features) if f.kind == "numeric" and f.continuous]
    grids = [(_FINE_GRID, 0.0, "fine", every), (_FINE_GRID, 0.5, "fine", every)]
    if len(cont) >= 2 and len(cont) < len(every):
        # injected rows may vary the discrete fields: also look at the continuous ones alone
        grids += [(_FINE_GRID, 0.0, "fine", cont), (_FINE_GRID, 0.5, "fine", cont)]
    grids += [(_COARSE_GRID, 0.0, "coarse", cont if cont else every),
              (_COARSE_GRID, 0.5, "coarse", cont if cont else every)]
    for width, offset, mode, cols in grids:
        ks = _grid_keys(ctx, ctx.z_s, width, offset, cols)
        kb = _grid_keys(ctx, ctx.z_b, width, offset, cols)
        if mode == "fine" and cols is every:
            # near-duplicates of a row with nulls: nulls sit at a coordinate of their own
            valid = (np.ones(len(ks), dtype=bool), np.ones(len(kb), dtype=bool))
        else:  # a row with a null number has no position (a null-rate change is drift)
            numeric = [j for j in cols if ctx.plan.features[j].kind == "numeric"]
            valid = (_complete(ctx.z_s, numeric), _complete(ctx.z_b, numeric))
        counter = _KeyCounts(ks, valid[0], ctx.cluster_min)
        found = _density(ctx, ks, kb, valid, counter.cells())
        if not found:
            continue
        dense = np.unique(ks[[member for member, _, _, _ in found]])
        name = "near-duplicate cluster" if mode == "fine" else "dense outlier cluster"
        for member, cell_rows, label, st in found:
            rows = cell_rows
            peak, split = _neighbour_peak(ctx, member, width, offset, cols, counter, dense)
            if st["n"] < _ISOLATION * max(peak, 1) or split > _SPLIT_CELLS:
                continue
            rows = _core(ctx, rows, cols, st["e"])
            if len(rows) < _MIN_CELL_ROWS:
                continue
            parts = []
            for j, f in enumerate(ctx.plan.features):
                col = ctx.z_s[rows, j].astype(np.float64)
                centre = float(np.median(col[np.isfinite(col)])) if np.isfinite(col).any() \
                    else math.nan
                if f.kind == "numeric" and math.isfinite(centre):
                    parts.append(f"{f.name}~{centre * f.scale + f.center:.4g}")
            desc = f"{name} of {len(rows)} rows near " + ", ".join(parts[:8])
            hits.append(CellHit("poison.injected_cluster", f"grid:{width:g}", label, rows,
                                int(st["n"]), st["e"], st["purity"], 0.0, desc,
                                len(rows), st["z"]))
    return hits
