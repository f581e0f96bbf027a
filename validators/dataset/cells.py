"""Cell tests: regions of feature space whose rows favour one label far more than the baseline.

A *view* cuts the feature space into cells; per cell and label the snapshot's row count is set
against what the baseline's row sample predicts (scaled to the snapshot's size).

- Trigger views (``poison.trigger_pattern``): one feature (fine quantile bins, values of a
  category, beyond-range bins) and pairs of features (coarse bins). A cell/label is flagged when
  the snapshot has an excess of rows with label ``c`` (count and z-score), the cell is nearly pure
  in ``c`` in the snapshot, and far less so in the baseline and under the baseline's own
  naive-Bayes prediction for those rows: new trigger values, tight value combinations, targeted
  relabelling of a region.
- Grid views (``poison.injected_cluster``): every feature on a fine grid (0.1 robust-sd cells:
  near-duplicate clusters) and a coarse grid (1 robust-sd cells where the baseline has almost no
  rows: dense outlier clusters). Flagged on excess density carrying one label.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

from custody.validators.dataset.encode import FeaturePlan, mix64

_FINE_GRID = 0.1
_COARSE_GRID = 1.0
_MAX_PAIR_FEATURES = 10
_Z_MIN = 5.0
_MIN_CELL_ROWS = 10  # no rule looks at a cell with fewer snapshot rows
_GRID_CHUNK = 1 << 20
_ALPHA = 2.0


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

    def to_json(self, label_names: list[Any]) -> dict[str, Any]:
        return {"view": self.view, "pattern": self.description,
                "label": label_names[self.label], "rows": len(self.rows),
                "snapshot_rows_in_cell": self.snapshot_rows,
                "expected_from_baseline": round(self.expected_rows, 2),
                "purity": round(self.purity, 4), "baseline_share": round(self.baseline_share, 4)}


@dataclass
class CellContext:
    plan: FeaturePlan
    z_s: np.ndarray
    y_s: np.ndarray
    eligible: np.ndarray  # rows that may be reported (not plain copies of baseline rows)
    z_b: np.ndarray  # baseline row sample, encoded
    y_b: np.ndarray
    scale: float  # snapshot rows per baseline sample row
    classes: int
    proba_s: np.ndarray | None  # naive-Bayes p(label | features) from the baseline
    fine_s: np.ndarray  # bin codes (rows x features), see FeaturePlan.bin_matrix
    fine_b: np.ndarray
    coarse_s: np.ndarray
    coarse_b: np.ndarray


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


def _count(keys_s: np.ndarray, keys_b: np.ndarray, ctx: CellContext,
           valid: tuple[np.ndarray, np.ndarray] | None = None,
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cells holding at least _MIN_CELL_ROWS snapshot rows, the snapshot rows' index into them
    (-1: elsewhere), and (cells x classes) label counts of snapshot and baseline sample."""
    top = max(int(keys_s.max(initial=0)), int(keys_b.max(initial=0))) \
        if keys_s.dtype.kind == "i" else -1
    if 0 <= top < 1 << 20 and min(keys_s.min(initial=0), keys_b.min(initial=0)) >= 0:
        # small codes (bins, pairs of bins): index directly, no sort
        cells = np.flatnonzero(np.bincount(keys_s, minlength=top + 1) >= _MIN_CELL_ROWS)
        remap = np.full(top + 1, -1, dtype=np.int32)
        remap[cells] = np.arange(len(cells))
        inv_s, inv_b = remap[keys_s], remap[keys_b]
    else:
        uniq, counts = np.unique(keys_s, return_counts=True)
        cells = uniq[counts >= _MIN_CELL_ROWS]

        def index(keys: np.ndarray) -> np.ndarray:
            if len(cells) == 0:
                return np.full(len(keys), -1, dtype=np.int32)
            pos = np.minimum(np.searchsorted(cells, keys), len(cells) - 1).astype(np.int32)
            pos[cells[pos] != keys] = -1
            return pos

        inv_s, inv_b = index(keys_s), index(keys_b)
    if valid is not None:  # rows that have no place in this view
        inv_s[~valid[0]] = -1
        inv_b[~valid[1]] = -1
    c = ctx.classes
    ok_s, ok_b = (ctx.y_s >= 0) & (inv_s >= 0), (ctx.y_b >= 0) & (inv_b >= 0)
    n_s = np.bincount(inv_s[ok_s].astype(np.int64) * c + ctx.y_s[ok_s],
                      minlength=len(cells) * c)
    n_b = np.bincount(inv_b[ok_b].astype(np.int64) * c + ctx.y_b[ok_b],
                      minlength=len(cells) * c)
    return cells, inv_s, n_s.reshape(-1, c).astype(np.float64), n_b.reshape(-1, c).astype(
        np.float64)


def _test_view(ctx: CellContext, view: str, keys_s: np.ndarray, keys_b: np.ndarray,
               mode: str, valid: tuple[np.ndarray, np.ndarray] | None = None,
               ) -> list[tuple[int, int, np.ndarray, dict[str, float]]]:
    cells, inv_s, n_s, n_b = _count(keys_s, keys_b, ctx, valid)
    e = n_b * ctx.scale
    tot_s, tot_b, tot_e = n_s.sum(axis=1), n_b.sum(axis=1), e.sum(axis=1)
    known = ctx.y_b[ctx.y_b >= 0]
    prior = np.bincount(known, minlength=ctx.classes) / max(len(known), 1)
    p_s = n_s / np.maximum(tot_s, 1.0)[:, None]
    p_b = (n_b + _ALPHA * prior) / (tot_b + _ALPHA)[:, None]
    excess = n_s - e
    z = excess / np.sqrt(e + ctx.scale * e + 1.0)
    total = len(ctx.y_s)
    if mode == "trigger":
        m_min = max(10.0, 2e-4 * total)
        cand = (excess >= m_min) & (z >= _Z_MIN) & (p_s >= 0.85) & (p_s - p_b >= 0.35)
    else:
        # What the baseline sample could have missed: a cell it saw n_b times may hold up to
        # (n_b + 2) * scale snapshot rows by chance alone when the sample is much smaller.
        tot_up = (tot_b + 2.0) * ctx.scale
        if mode == "fine":
            cand = ((n_s >= 10) & (excess >= 10) & (z >= _Z_MIN) & (p_s >= 0.9)
                    & (tot_s >= np.maximum(4 * tot_e + 8, tot_up))[:, None])
        else:  # coarse: dense cells where the baseline has (almost) nothing
            cand = ((n_s >= 20) & (p_s >= 0.95) & (tot_e <= 1.0)[:, None]
                    & (tot_s >= np.maximum(10 * (tot_e + 1), 3 * tot_up))[:, None])
    out: list[tuple[int, int, np.ndarray, dict[str, float]]] = []
    flagged = np.nonzero(cand)
    if len(flagged[0]) == 0:
        return out
    # rows of the candidate cells, grouped by cell (one pass, not one per flagged cell)
    members = np.flatnonzero((inv_s >= 0) & ctx.eligible)
    members = members[np.argsort(inv_s[members], kind="stable")]
    bounds = np.searchsorted(inv_s[members], np.arange(len(cells) + 1))
    for cell, label in zip(*flagged, strict=True):
        block = members[bounds[cell]:bounds[cell + 1]]
        rows = block[ctx.y_s[block] == label]
        if len(rows) == 0:
            continue
        stats = {"n": float(tot_s[cell]), "e": float(e[cell, label]),
                 "purity": float(p_s[cell, label]), "base": float(p_b[cell, label]),
                 "predicted": 0.0}
        if mode != "fine" and ctx.proba_s is not None:
            stats["predicted"] = float(ctx.proba_s[rows, label].mean())
        out.append((int(cells[cell]), int(label), rows, stats))
    return out


def _unexpected(ctx: CellContext, rows: np.ndarray, label: int, st: dict[str, float]
                ) -> np.ndarray:
    """Of a relabelled region's rows, those the baseline's model would not have labelled so
    (the region's natural rows of that label stay out of the evidence)."""
    if ctx.proba_s is None:
        return rows
    keep = rows[ctx.proba_s[rows, label] < 0.5]
    return keep if len(keep) >= 0.5 * (st["n"] * st["purity"] - st["e"]) else rows


def _explained_by_baseline(st: dict[str, float]) -> bool:
    """The baseline's own model predicts these labels: covariate shift, not a trigger."""
    return st["purity"] - st["predicted"] < 0.35


def _value_triggers(ctx: CellContext, j: int, bins_s: np.ndarray, bins_b: np.ndarray,
                    m_min: float) -> list[CellHit]:
    """Exact values repeated far more often than in the baseline and carrying one label
    (a numeric trigger value, clean- or dirty-label). Only bins with excess density are
    searched, so the cost stays linear."""
    f = ctx.plan.features[j]
    size = int(max(bins_s.max(initial=0), bins_b.max(initial=0))) + 1
    cs = np.bincount(bins_s, minlength=size).astype(np.float64)
    cb = np.bincount(bins_b, minlength=size) * ctx.scale
    dense = np.flatnonzero((cs - cb >= m_min) & ((cs - cb) / np.sqrt(cb * (1 + ctx.scale) + 1)
                                                 >= _Z_MIN))
    if len(dense) == 0:
        return []
    rows = np.flatnonzero(np.isin(bins_s, dense) & ctx.eligible & (ctx.y_s >= 0))
    vals = ctx.z_s[rows, j]
    uniq, inv, counts = np.unique(vals, return_inverse=True, return_counts=True)
    prior = np.bincount(ctx.y_b[ctx.y_b >= 0], minlength=ctx.classes) / max(
        int((ctx.y_b >= 0).sum()), 1)
    hits: list[CellHit] = []
    for k in np.flatnonzero(counts >= m_min):
        members = rows[inv == k]
        in_base = float(np.sum(ctx.z_b[:, j] == uniq[k])) * ctx.scale
        if in_base >= 0.2 * len(members):
            continue
        per_label = np.bincount(ctx.y_s[members], minlength=ctx.classes)
        c = int(np.argmax(per_label))
        purity = per_label[c] / len(members)
        if purity < 0.85 or purity - prior[c] < 0.35:
            continue
        value = float(uniq[k]) * f.scale + f.center
        hits.append(CellHit("poison.trigger_pattern", f"value:{f.name}", c,
                            members[ctx.y_s[members] == c], len(members), in_base, purity,
                            float(prior[c]), f"{f.name} == {value:.6g} (repeated value)"))
    return hits


def trigger_hits(ctx: CellContext, relevance: np.ndarray | None = None) -> list[CellHit]:
    hits: list[CellHit] = []
    feats = ctx.plan.features
    bins_s = [ctx.fine_s[:, j] for j in range(len(feats))]
    bins_b = [ctx.fine_b[:, j] for j in range(len(feats))]
    m_min = max(10.0, 2e-4 * len(ctx.y_s))
    for j, f in enumerate(feats):
        if f.kind == "numeric":
            hits.extend(_value_triggers(ctx, j, bins_s[j], bins_b[j], m_min / 2))
        for code, label, found, st in _test_view(ctx, f"feature:{f.name}", bins_s[j],
                                                 bins_b[j], "trigger"):
            new_value = f.kind == "categorical" and code - 1 >= f.known
            if not new_value and _explained_by_baseline(st):
                continue
            rows = found if new_value else _unexpected(ctx, found, label, st)
            hits.append(CellHit("poison.trigger_pattern", f"feature:{f.name}", label, rows,
                                int(st["n"]), st["e"], st["purity"], st["base"],
                                _interval(ctx, j, code, True)))
    order = list(range(len(feats)))
    if relevance is not None:
        order = [int(j) for j in np.argsort(-relevance)]
    chosen = sorted(order[:_MAX_PAIR_FEATURES])
    coarse_s = [ctx.coarse_s[:, j] for j in range(len(feats))]
    coarse_b = [ctx.coarse_b[:, j] for j in range(len(feats))]
    for a, b in combinations(chosen, 2):
        width = int(max(coarse_s[b].max(initial=0), coarse_b[b].max(initial=0))) + 1
        ks = coarse_s[a].astype(np.int64) * width + coarse_s[b]
        kb = coarse_b[a].astype(np.int64) * width + coarse_b[b]
        view = f"pair:{feats[a].name},{feats[b].name}"
        for code, label, found, st in _test_view(ctx, view, ks, kb, "trigger"):
            if _explained_by_baseline(st):
                continue
            rows = _unexpected(ctx, found, label, st)
            desc = (_interval(ctx, a, code // width, False) + " and "
                    + _interval(ctx, b, code % width, False))
            hits.append(CellHit("poison.trigger_pattern", view, label, rows, int(st["n"]),
                                st["e"], st["purity"], st["base"], desc))
    return hits


def _grid_keys(ctx: CellContext, z: np.ndarray, width: float, offset: float,
               cols: list[int]) -> np.ndarray:
    """Cell hash per row, computed in chunks so that temporaries stay small."""
    out = np.empty(len(z), dtype=np.uint64)
    for start in range(0, len(z), _GRID_CHUNK):
        part = z[start:start + _GRID_CHUNK]
        h = np.full(len(part), np.uint64(0x243F6A8885A308D3), dtype=np.uint64)
        for j in cols:
            col = part[:, j].astype(np.float64)
            if ctx.plan.features[j].kind == "numeric":
                col = np.floor(np.clip(col, -1e6, 1e6) / width + offset)
            code = np.where(np.isnan(col), -(2**40), col).astype(np.int64).view(np.uint64)
            h = mix64(h ^ (code + np.uint64((j + 1) * 0x9E3779B1)))
        out[start:start + len(part)] = h
    return out


def cluster_hits(ctx: CellContext) -> list[CellHit]:
    hits: list[CellHit] = []
    if not ctx.plan.features:
        return hits
    every = list(range(len(ctx.plan.features)))
    cont = [j for j, f in enumerate(ctx.plan.features) if f.kind == "numeric" and f.continuous]
    grids = [(_FINE_GRID, 0.0, "fine", every), (_FINE_GRID, 0.5, "fine", every)]
    if len(cont) >= 2 and len(cont) < len(every):
        # injected rows may vary the discrete fields: also look at the continuous ones alone
        grids += [(_FINE_GRID, 0.0, "fine", cont), (_FINE_GRID, 0.5, "fine", cont)]
    grids.append((_COARSE_GRID, 0.0, "coarse", cont if cont else every))
    for width, offset, mode, cols in grids:
        ks = _grid_keys(ctx, ctx.z_s, width, offset, cols)
        kb = _grid_keys(ctx, ctx.z_b, width, offset, cols)
        # a row with a null number has no position on the grid (a null-rate change is drift)
        numeric = [j for j in cols if ctx.plan.features[j].kind == "numeric"]
        valid = (~np.isnan(ctx.z_s[:, numeric]).any(axis=1),
                 ~np.isnan(ctx.z_b[:, numeric]).any(axis=1))
        name = "near-duplicate cluster" if mode == "fine" else "dense outlier cluster"
        for _, label, rows, st in _test_view(ctx, f"grid:{width:g}", ks, kb, mode, valid):
            if mode == "coarse" and _explained_by_baseline(st):
                continue  # covariate shift into a region the baseline already labels so
            parts = []
            for j, f in enumerate(ctx.plan.features):
                col = ctx.z_s[rows, j].astype(np.float64)
                centre = float(np.median(col[np.isfinite(col)])) if np.isfinite(col).any() \
                    else math.nan
                if f.kind == "numeric" and math.isfinite(centre):
                    parts.append(f"{f.name}~{centre * f.scale + f.center:.4g}")
            desc = f"{name} of {len(rows)} rows near " + ", ".join(parts[:8])
            hits.append(CellHit("poison.injected_cluster", f"grid:{width:g}", label, rows,
                                int(st["n"]), st["e"], st["purity"], st["base"], desc))
    return hits
