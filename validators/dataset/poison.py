"""Label-poisoning rules that compare rows with the baseline: each returns suspicious rows.

- ``label_changes``: rows whose id is in the baseline with another label (in-place relabelling).
- ``conflicting_duplicates``: rows identical on every feature to a baseline row (whose label
  is unambiguous) but carrying another label, beyond the conflict rate the baseline itself has.
- ``knn_disagreement``: rows whose label disagrees with all of their k nearest baseline
  neighbours, beyond what the baseline predicts for rows in the same place. The reference set
  is the fit half of the baseline's row sample; the null model is measured on the held-out
  half, queried exactly as snapshot rows are (same screen, same k, same reference), per
  stratum of the baseline model's label-free prediction and reweighted for a label shift; the
  snapshot's strata weight it (so a covariate shift moves the expectation with the rows).

``RuleHit`` carries the rows (0-based positions in file order) and plain-JSON evidence.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from custody.validators.dataset.encode import FeaturePlan

_KNN_K = 10
_KNN_DIMS = 6
_KNN_Z = 5.0
_KNN_Z_STRATUM = 5.5
_KNN_RATIO = 1.25  # disagreeing rows must be at least this many times the expected number
_LIST_RATIO = 1.5  # a stratum names rows when it disagrees this many times the natural rate
_MIN_EXCESS_SHARE = 0.0005  # the kNN rule needs an excess of at least this share of rows
_MIN_STRATUM_ROWS = 50.0  # strata with fewer held-out rows use the pooled rate
_NB_SCREEN = 0.25  # rows whose own label has less model probability are queried
# approximate neighbours (within (1 + eps) of the true k-th distance): the held-out rows are
# queried the same way, so the null model stays exact; about 3x faster
_KNN_EPS = 1.0


@dataclass
class RuleHit:
    rows: np.ndarray
    evidence: dict[str, Any] = field(default_factory=dict)
    detail: str = ""


def _unique_map(keys: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Sorted unique keys, each key's label (-2 when the baseline disagrees with itself), and
    the share of rows in repeated keys whose label differs from the key's first label."""
    if len(keys) == 0:
        return keys, np.zeros(0, dtype=np.int64), 0.0
    order = np.argsort(keys, kind="stable")
    k, y = keys[order], labels[order]
    starts = np.flatnonzero(np.concatenate([[True], k[1:] != k[:-1]]))
    first = y[starts]
    group = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(k))))
    differs = y != first[group]
    ambiguous = np.zeros(len(starts), dtype=bool)
    np.logical_or.at(ambiguous, group, differs)
    sizes = np.diff(np.append(starts, len(k)))
    in_repeats = int(sizes[sizes > 1].sum())
    rate = float(differs.sum()) / in_repeats if in_repeats else 0.0
    return k[starts], np.where(ambiguous, -2, first).astype(np.int64), rate


def _lookup(keys_sorted: np.ndarray, values: np.ndarray, query: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    if len(keys_sorted) == 0:
        return np.zeros(len(query), dtype=bool), np.full(len(query), -3, dtype=np.int64)
    idx = np.clip(np.searchsorted(keys_sorted, query), 0, len(keys_sorted) - 1)
    found = keys_sorted[idx] == query
    return found, np.where(found, values[idx], -3)


def label_changes(ids_b: np.ndarray, y_b: np.ndarray, h_b: np.ndarray, ids_s: np.ndarray,
                  y_s: np.ndarray, h_s: np.ndarray) -> tuple[RuleHit, np.ndarray]:
    """Rows whose id holds another label in the baseline; also the mask of those rows.

    An id is trusted as a record key when most id-matched rows kept their features; then any
    label change is reported. Ids that are mere row numbers (features differ for most matched
    rows) only count when the features are identical."""
    keys, lab, _ = _unique_map(ids_b, y_b)
    found, base_label = _lookup(keys, lab, ids_s)
    hkeys, hvals, _ = _unique_map(ids_b, h_b.view(np.int64))
    _, base_hash = _lookup(hkeys, hvals, ids_s)
    same_feats = found & (base_hash == h_s.view(np.int64))
    stable = found.sum() > 0 and same_feats.sum() >= 0.5 * found.sum()
    changed = found & (base_label >= 0) & (y_s >= 0) & (base_label != y_s)
    if not stable:
        changed &= same_feats
    rows = np.flatnonzero(changed)
    ev = {"matched_ids": int(found.sum()), "features_identical": int(same_feats[rows].sum()),
          "id_is_record_key": bool(stable)}
    return RuleHit(rows, ev), changed


def conflicting_duplicates(h_b: np.ndarray, y_b: np.ndarray, h_s: np.ndarray, y_s: np.ndarray,
                           exclude: np.ndarray) -> tuple[RuleHit | None, np.ndarray]:
    """Rows equal on all features to a baseline row but with another label.

    Returns the hit (None when within the baseline's own conflict rate) and the mask of rows
    that repeat a baseline row with the same label (they need no further suspicion)."""
    keys, lab, base_rate = _unique_map(h_b.view(np.int64), y_b)
    found, base_label = _lookup(keys, lab, h_s.view(np.int64))
    same = found & (base_label == y_s)
    conflict = found & (base_label >= 0) & (y_s >= 0) & (base_label != y_s) & ~exclude
    n = int(conflict.sum())
    matched = int((found & (base_label >= 0)).sum())
    expected = matched * base_rate
    if n < 3 or n <= expected + 4 * math.sqrt(expected + 1):
        return None, same
    ev = {"matched_rows": matched, "expected_natural": round(expected, 2),
          "baseline_conflict_rate": round(base_rate, 6)}
    return RuleHit(np.flatnonzero(conflict), ev), same


# --- kNN label disagreement -----------------------------------------------------------------


@dataclass
class ModelView:
    """What the model-based rules share: the baseline sample's fit and held-out halves
    (encoded), the calibrated model's probabilities for the held-out rows and the snapshot,
    and the snapshot's label-shift weights."""

    plan: FeaturePlan
    classes: int
    z_fit: np.ndarray
    y_fit: np.ndarray
    z_hold: np.ndarray
    y_hold: np.ndarray
    p_hold: np.ndarray  # (held-out rows x classes) calibrated
    strata_hold: np.ndarray
    p_s: np.ndarray  # (snapshot rows x classes) calibrated
    own_s: np.ndarray  # p(own label | row) (the screen)
    strata_s: np.ndarray
    log_w: np.ndarray  # the snapshot's label-shift weights (the kNN null model)
    relevance: np.ndarray


_STRATA_EDGES = np.array([0.5, 0.7, 0.85, 0.95, 0.98, 0.99, 0.995], dtype=np.float32)


def strata(proba: np.ndarray) -> np.ndarray:
    """A label-free stratum per row: the predicted class and how sure the model is."""
    top = np.argmax(proba, axis=1).astype(np.int64)
    sure = np.searchsorted(_STRATA_EDGES, proba.max(axis=1), side="right")
    return np.asarray(top * (len(_STRATA_EDGES) + 1) + sure, dtype=np.int16 if
                      proba.shape[1] * (len(_STRATA_EDGES) + 1) < 1 << 15 else np.int32)


def _knn_space(plan: FeaturePlan, z_ref: np.ndarray, y_ref: np.ndarray, classes: int,
               relevance: np.ndarray) -> tuple[list[int], list[np.ndarray | None]]:
    """Pick the most informative features; categorical ones get a target encoding."""
    chosen = [int(j) for j in np.argsort(-relevance)[:_KNN_DIMS] if relevance[j] > 1e-4]
    encoders: list[np.ndarray | None] = []
    ok = y_ref >= 0
    prior = np.bincount(y_ref[ok], minlength=classes) / max(int(ok.sum()), 1)
    for j in chosen:
        f = plan.features[j]
        if f.kind == "numeric":
            encoders.append(None)
            continue
        codes = np.where(np.isnan(z_ref[:, j]), -1, z_ref[:, j]).astype(np.int64) + 1
        size = f.known + 2
        codes = np.minimum(codes, size - 1)
        counts = np.zeros((size, classes))
        np.add.at(counts, (codes[ok], y_ref[ok]), 1.0)
        share = (counts + 5 * prior) / (counts.sum(axis=1, keepdims=True) + 5)
        # the class whose share varies most across values carries the feature
        top = int(np.argmax((share[codes[ok]] ** 2).mean(axis=0) - share[codes[ok]].mean(
            axis=0) ** 2))
        col = share[:, top]
        centre = float(col[codes].mean())
        spread = float(np.std(col[codes])) or 1.0
        enc = (col - centre) / spread
        enc[size - 1] = 0.0  # never-seen values: no information
        encoders.append(enc)
    return chosen, encoders


def _embed(plan: FeaturePlan, z: np.ndarray, chosen: list[int],
           encoders: list[np.ndarray | None]) -> np.ndarray:
    out = np.empty((len(z), len(chosen)), dtype=np.float64)
    for k, (j, enc) in enumerate(zip(chosen, encoders, strict=True)):
        col = z[:, j]
        if enc is None:
            out[:, k] = plan.features[j].normal_scores(col)
        else:
            codes = np.where(np.isnan(col), -1, col).astype(np.int64) + 1
            out[:, k] = enc[np.minimum(codes, len(enc) - 1)]
    return out


def knn_disagreement(view: ModelView, z_s: np.ndarray, y_s: np.ndarray, eligible: np.ndarray
                     ) -> KnnResult | None:
    """The kNN rule (see the module docstring)."""
    # scipy (a dependency of scikit-learn and great-expectations) ships no type stubs
    ckdtree = importlib.import_module("scipy.spatial").cKDTree

    ok = view.y_fit >= 0
    if ok.sum() < 4 * _KNN_K or not view.plan.features or view.classes < 2 \
            or (view.y_hold >= 0).sum() < 4 * _KNN_K:
        return None
    z_ref, y_ref = view.z_fit[ok], view.y_fit[ok]
    chosen, encoders = _knn_space(view.plan, z_ref, y_ref, view.classes, view.relevance)
    if not chosen:
        return None
    tree = ckdtree(_embed(view.plan, z_ref, chosen, encoders))

    def disagree(z: np.ndarray, labels: np.ndarray) -> np.ndarray:
        if len(z) == 0:
            return np.zeros(0, dtype=bool)
        _, ind = tree.query(_embed(view.plan, z, chosen, encoders), k=_KNN_K, eps=_KNN_EPS,
                            workers=2)
        return np.asarray((y_ref[ind] == labels[:, None]).sum(axis=1) == 0)

    # the null model: held-out baseline rows, screened and queried exactly as snapshot rows
    h_rows = np.flatnonzero(view.y_hold >= 0)
    y_h = view.y_hold[h_rows]
    own_h = view.p_hold[h_rows, y_h]
    h_screen = np.flatnonzero(own_h < _NB_SCREEN)
    h_flag = np.zeros(len(h_rows), dtype=bool)
    h_flag[h_screen] = disagree(view.z_hold[h_rows[h_screen]], y_h[h_screen])
    weight = np.exp(view.log_w)[y_h]  # a label shift reweights the held-out rows
    st_h = view.strata_hold[h_rows]
    size = int(max(st_h.max(initial=0), view.strata_s.max(initial=0))) + 1
    w_tot = np.bincount(st_h, weights=weight, minlength=size)
    w_sq = np.bincount(st_h, weights=weight * weight, minlength=size)
    w_flag = np.bincount(st_h, weights=weight * h_flag, minlength=size)
    pooled = float(w_flag.sum() / max(w_tot.sum(), 1e-9))
    sparse = w_tot < _MIN_STRATUM_ROWS
    rate = np.where(sparse, pooled, w_flag / np.maximum(w_tot, 1e-9))
    n_eff = np.where(sparse, len(h_rows), w_tot ** 2 / np.maximum(w_sq, 1e-9))

    cand = np.flatnonzero(eligible & (y_s >= 0))
    per_stratum = np.bincount(view.strata_s[cand], minlength=size).astype(np.float64)
    screen = cand[view.own_s[cand] < _NB_SCREEN]
    hits = screen[disagree(z_s[screen], y_s[screen])]
    return KnnResult(hits, view.strata_s[hits], per_stratum, rate, n_eff, len(cand),
                     len(screen), pooled, len(h_rows),
                     [view.plan.features[j].name for j in chosen])


@dataclass
class KnnResult:
    """The kNN rule's disagreeing snapshot rows and the null model per stratum; ``test``
    decides, once the rows other rules already explain are set aside."""

    hits: np.ndarray
    hit_strata: np.ndarray
    per_stratum: np.ndarray  # queried snapshot rows per stratum
    rate: np.ndarray  # the null rate per stratum (held-out rows)
    n_eff: np.ndarray
    queried: int
    screened: int
    pooled: float
    holdout: int
    features: list[str]

    def test(self, p_own: np.ndarray, explained: np.ndarray | None = None) -> RuleHit | None:
        """The weighted excess test; ``p_own`` ranks rows (least likely label first);
        ``explained`` rows (flagged by other rules) are not counted or listed."""
        hits, strata_h = self.hits, self.hit_strata
        if explained is not None and len(explained):
            keep = ~np.isin(hits, explained)
            hits, strata_h = hits[keep], strata_h[keep]
        size = len(self.rate)
        found = np.bincount(strata_h, minlength=size).astype(np.float64)
        rate, n_eff = self.rate, self.n_eff
        expected_s = self.per_stratum * rate
        var_rate = np.maximum(rate, 0.5 / np.maximum(n_eff, 1.0)) * (1 - rate) / n_eff
        # random flips add about the same rate to every stratum (an excess ~ its rows n_s);
        # each stratum's excess is weighed by n_s / its variance (counting noise and the error
        # of its rate estimated on held-out rows): the locally most powerful combination,
        # 1 / rate while counting noise dominates
        var_s = np.maximum(found, expected_s) + self.per_stratum ** 2 * var_rate + 1.0
        omega = self.per_stratum / var_s
        excess_s = found - expected_s
        t_stat = float(np.sum(omega * excess_s))
        var_t = float(np.sum(omega ** 2 * var_s))
        z = t_stat / math.sqrt(var_t + 1.0)
        ratio = float(np.sum(omega * found) / max(float(np.sum(omega * expected_s)), 1e-9))
        d, expected = len(hits), float(expected_s.sum())
        excess = d - expected
        ev = {"k": _KNN_K, "queried_rows": self.queried, "screened_rows": self.screened,
              "disagreeing_rows": d, "expected_natural": round(expected, 2),
              "ratio": round(ratio, 3), "z": round(z, 2), "baseline_rate": round(self.pooled, 6),
              "holdout_rows": self.holdout, "features": self.features}
        # or one stratum alone (flips show where neighbourhoods are unanimous; a Bonferroni
        # margin over the strata)
        z_s = excess_s / np.sqrt(var_s)
        alone = (z_s >= _KNN_Z_STRATUM) & (found >= _LIST_RATIO * expected_s)
        ev["z_stratum"] = round(float(z_s.max(initial=0.0)), 2)
        if excess < max(10.0, _MIN_EXCESS_SHARE * self.queried) or (
                (z < _KNN_Z or ratio < _KNN_RATIO) and not alone.any()):
            return None
        # per stratum where disagreeing rows are at least _LIST_RATIO times the natural
        # number, the rows its excess is made of, least likely labels first; the disagreeing
        # rows of the other strata are candidates
        listed: list[np.ndarray] = []
        maybe: list[np.ndarray] = []
        for st in np.flatnonzero(found > 0):
            mine = hits[strata_h == st]
            if excess_s[st] >= 1.0 and found[st] >= _LIST_RATIO * expected_s[st]:
                order = np.argsort(p_own[mine], kind="stable")
                listed.append(mine[order[: math.ceil(excess_s[st])]])
            else:
                maybe.append(mine)
        empty = np.zeros(0, dtype=np.int64)
        named = np.sort(np.concatenate(listed)) if listed else empty
        ev["candidates"] = np.sort(np.concatenate(maybe)) if maybe else empty
        return RuleHit(named, ev)
