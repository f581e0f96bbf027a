"""Dense clusters the baseline does not have.

``poison.injected_cluster``: a fine grid (0.1 robust sd per feature) for near-duplicates and a
coarse grid (1 robust sd) for dense outlier clusters: a cell whose snapshot count is far
beyond the baseline sample's density there (binomial likelihood-ratio test), that is an
isolated peak (``_ISOLATION`` times any neighbouring cell: natural shifts move a smooth
density) and carries one label.

Rows named: those beyond the baseline's density in the cell (its upper bound), nearest the
cluster's centre first.
"""

from __future__ import annotations

import math

import numpy as np

from custody.validators.dataset.cell_context import (
    GRID_CHUNK,
    MIN_CELL_ROWS,
    Z_MIN,
    CellContext,
    CellHit,
    index_cells,
    lr_z,
)
from custody.validators.dataset.encode import mix64

_FINE_GRID = 0.1
_COARSE_GRID = 1.0
_PURE = 0.9  # a cluster carries one label on at least this share of its rows
_ISOLATION = 4.0  # a cluster's cell holds this many times the rows of any cell next to it
_SCALE_ALONE = 10.0
_SPLIT_CELLS = 2  # a cluster may spill into at most this many dense neighbouring cells



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
    for start in range(0, len(z), GRID_CHUNK):
        part = z[start:start + GRID_CHUNK]
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
    inv_s = index_cells(keys_s, cells, dense)
    inv_s[~use_s] = -1
    inv_b = index_cells(keys_b, cells, dense)
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
    z = lr_z(tot_s, share * (tot_s + tot_b), tot_s + tot_b)
    purity = n_s / np.maximum(tot_s, 1.0)[:, None]
    # a snapshot with >= _SCALE_ALONE rows per baseline sample row leaves the test no power (a
    # cell the sample saw n_b times may hold up to (n_b + 2) x scale rows by chance): there,
    # half as many again is dense
    dense_enough = z >= Z_MIN
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
        if len(rows) < MIN_CELL_ROWS:
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
            if len(rows) < MIN_CELL_ROWS:
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
