"""Label-poisoning rules that compare rows with the baseline: each returns suspicious rows.

- ``label_changes``: rows whose id is in the baseline with another label (in-place relabelling).
- ``conflicting_duplicates``: rows identical on every feature to a baseline row (whose label
  is unambiguous) but carrying another label, beyond the conflict rate the baseline itself has.
- ``knn_disagreement``: rows whose label disagrees with (nearly) all of their k nearest
  baseline neighbours, beyond the baseline's own leave-one-out rate of such rows. Scalable: the
  reference set is the baseline's row sample (capped), features are the most label-informative
  encoded columns (capped), and only rows a naive-Bayes screen finds doubtful are queried.

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
_KNN_AGREE = 1.0  # a row is "disagreeing" when at least this share of neighbours has another label
_KNN_REFERENCE = 20_000
_KNN_DIMS = 6
_SELF_RATE_ROWS = 5_000
_MIN_EXCESS_SHARE = 0.0005  # the kNN rule needs an excess of at least this share of rows
_NB_BINS_CAP = 64
_NB_SCREEN = 0.35  # rows whose own label has less naive-Bayes probability are queried


@dataclass
class RuleHit:
    rows: np.ndarray
    evidence: dict[str, Any] = field(default_factory=dict)
    detail: str = ""


def _unique_map(keys: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Sorted unique keys, each key's label (-2 when the baseline disagrees with itself), and
    the share of rows in repeated keys whose label differs from the key's first label."""
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
class NaiveBayes:
    """Per-feature binned likelihoods from the baseline sample: a cheap screen and prior."""

    log_prior: np.ndarray
    log_lik: np.ndarray  # (features, _NB_BINS_CAP, classes)

    @classmethod
    def fit(cls, bins: np.ndarray, y: np.ndarray, classes: int) -> NaiveBayes:
        ok = y >= 0
        bins, y = bins[ok], y[ok]
        prior = np.bincount(y, minlength=classes).astype(np.float64) + 1.0
        lik = np.ones((bins.shape[1], _NB_BINS_CAP, classes))
        for j in range(bins.shape[1]):
            np.add.at(lik[j], (bins[:, j], y), 1.0)
        lik /= lik.sum(axis=1, keepdims=True)
        return cls(np.log(prior / prior.sum()), np.log(lik))

    def proba(self, bins: np.ndarray) -> np.ndarray:
        out = np.empty((len(bins), len(self.log_prior)), dtype=np.float16)
        for start in range(0, len(bins), 1 << 20):
            out[start:start + (1 << 20)] = self._proba(bins[start:start + (1 << 20)])
        return out

    def _proba(self, bins: np.ndarray) -> np.ndarray:
        logp = np.broadcast_to(self.log_prior, (len(bins), len(self.log_prior))).copy()
        for j in range(bins.shape[1]):
            logp += self.log_lik[j][bins[:, j]]
        logp -= logp.max(axis=1, keepdims=True)
        p = np.exp(logp)
        # float16: the rules compare these with coarse thresholds; it halves the memory
        return np.asarray(p / p.sum(axis=1, keepdims=True), dtype=np.float16)

    def information(self, bins: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Mutual information of each feature's bins with the label (feature relevance)."""
        ok = y >= 0
        out = np.zeros(bins.shape[1])
        classes = len(self.log_prior)
        for j in range(bins.shape[1]):
            joint = np.zeros((_NB_BINS_CAP, classes))
            np.add.at(joint, (bins[ok, j], y[ok]), 1.0)
            joint /= max(joint.sum(), 1.0)
            pa_, pb_ = joint.sum(axis=1, keepdims=True), joint.sum(axis=0, keepdims=True)
            nz = joint > 0
            out[j] = float(np.sum(joint[nz] * np.log(joint[nz] / (pa_ @ pb_)[nz])))
        return out


def _knn_space(plan: FeaturePlan, z_ref: np.ndarray, y_ref: np.ndarray, classes: int,
               relevance: np.ndarray) -> tuple[list[int], list[np.ndarray | None]]:
    """Pick the most informative features; categorical ones get a target encoding."""
    chosen = [int(j) for j in np.argsort(-relevance)[:_KNN_DIMS] if relevance[j] > 1e-4]
    encoders: list[np.ndarray | None] = []
    for j in chosen:
        f = plan.features[j]
        if f.kind == "numeric":
            encoders.append(None)
            continue
        codes = np.where(np.isnan(z_ref[:, j]), -1, z_ref[:, j]).astype(np.int64) + 1
        size = int(codes.max(initial=0)) + 2
        counts = np.zeros((size, classes))
        ok = y_ref >= 0
        np.add.at(counts, (codes[ok], y_ref[ok]), 1.0)
        prior = counts.sum(axis=0) / max(counts.sum(), 1.0)
        share = (counts + 2 * prior) / (counts.sum(axis=1, keepdims=True) + 2)
        top = int(np.argmax(prior))
        col = share[:, top]
        spread = float(np.std(col[codes])) or 1.0
        encoders.append(np.append((col - col[codes].mean()) / spread, 0.0))
    return chosen, encoders


def _complete(z: np.ndarray, chosen: list[int], encoders: list[np.ndarray | None]
              ) -> np.ndarray:
    numeric = [j for j, enc in zip(chosen, encoders, strict=True) if enc is None]
    if not numeric:
        return np.ones(len(z), dtype=bool)
    return np.asarray(~np.isnan(z[:, numeric]).any(axis=1))


def _embed(z: np.ndarray, chosen: list[int], encoders: list[np.ndarray | None]) -> np.ndarray:
    out = np.empty((len(z), len(chosen)), dtype=np.float64)
    for k, (j, enc) in enumerate(zip(chosen, encoders, strict=True)):
        col = z[:, j]
        if enc is None:
            out[:, k] = np.clip(np.nan_to_num(col, nan=0.0), -10, 10)
        else:
            codes = np.where(np.isnan(col), -1, col).astype(np.int64) + 1
            codes = np.where(codes < len(enc) - 1, codes, len(enc) - 1)
            out[:, k] = enc[codes]
    return out


def fit_screen(z_ref: np.ndarray, y_ref: np.ndarray, coarse_ref: np.ndarray,
               coarse_s: np.ndarray, classes: int
               ) -> tuple[NaiveBayes, np.ndarray, np.ndarray]:
    """Naive Bayes on the baseline sample's coarse bins: the model, p(label | row) for every
    snapshot row, and each feature's mutual information with the label."""
    ok = y_ref >= 0
    b_ref = np.minimum(coarse_ref[ok], _NB_BINS_CAP - 1)
    nb = NaiveBayes.fit(b_ref, y_ref[ok], classes)
    proba = nb.proba(np.minimum(coarse_s, _NB_BINS_CAP - 1))
    return nb, proba, nb.information(b_ref, y_ref[ok])


def knn_disagreement(plan: FeaturePlan, z_ref: np.ndarray, y_ref: np.ndarray,
                     coarse_ref: np.ndarray, z_s: np.ndarray, y_s: np.ndarray,
                     eligible: np.ndarray, classes: int, nb: NaiveBayes, proba_s: np.ndarray,
                     relevance: np.ndarray) -> RuleHit | None:
    """The kNN rule (see the module docstring)."""
    # scipy (a dependency of scikit-learn and great-expectations) ships no type stubs
    ckdtree = importlib.import_module("scipy.spatial").cKDTree

    ok = y_ref >= 0
    if ok.sum() < 4 * _KNN_K or not plan.features or classes < 2:
        return None
    z_ref, y_ref, coarse_ref = z_ref[ok], y_ref[ok], np.minimum(coarse_ref[ok], _NB_BINS_CAP - 1)
    chosen, encoders = _knn_space(plan, z_ref, y_ref, classes, relevance)
    if not chosen:
        return None
    rng = np.random.default_rng(7)
    ref_idx = np.sort(rng.permutation(len(z_ref))[:_KNN_REFERENCE])
    ref = _embed(z_ref[ref_idx], chosen, encoders)
    ref_y = y_ref[ref_idx]
    tree = ckdtree(ref)

    def disagree(points: np.ndarray, labels: np.ndarray, self_match: bool) -> np.ndarray:
        k = _KNN_K + 1 if self_match else _KNN_K
        _, ind = tree.query(points, k=k, workers=2)
        neigh = ref_y[ind[:, 1:] if self_match else ind]
        share_own = (neigh == labels[:, None]).mean(axis=1)
        return np.asarray(share_own <= 1.0 - _KNN_AGREE)

    # The baseline's own rate of such rows, with the same screen: sample rows outside the
    # reference set are queried as they are; when the sample is small, leave-one-out on it.
    outside = np.setdiff1d(np.arange(len(z_ref)), ref_idx)
    if len(outside) >= _SELF_RATE_ROWS:
        probe_z, probe_y, probe_bins = z_ref[outside], y_ref[outside], coarse_ref[outside]
        loo = False
    else:
        probe_z, probe_y, probe_bins = z_ref[ref_idx], ref_y, coarse_ref[ref_idx]
        loo = True
    doubtful = (nb.proba(probe_bins)[np.arange(len(probe_y)), probe_y] < _NB_SCREEN) \
        & _complete(probe_z, chosen, encoders)
    base_hits = int(disagree(_embed(probe_z[doubtful], chosen, encoders), probe_y[doubtful],
                             loo).sum())
    n_probe = max(len(probe_y), 1)
    base_rate = base_hits / n_probe

    # rows with a null in a numeric kNN feature have no place in that space: not queried
    cand = np.flatnonzero(eligible & (y_s >= 0) & _complete(z_s, chosen, encoders))
    q = len(cand)
    screen = cand[proba_s[cand, y_s[cand]] < _NB_SCREEN]
    hits = screen[disagree(_embed(z_s[screen], chosen, encoders), y_s[screen], False)]
    d = len(hits)
    expected = q * base_rate
    excess = d - expected
    # the natural rate is itself estimated from n_probe rows: its error scales with q
    rate_var = max(base_rate, 1.0 / n_probe) * (1 - base_rate)
    z = excess / math.sqrt(q * rate_var + q * q * rate_var / n_probe + 1)
    ev = {"k": _KNN_K, "agreement": _KNN_AGREE, "queried_rows": q, "screened_rows": len(screen),
          "expected_natural": round(expected, 2), "baseline_rate": round(base_rate, 6),
          "baseline_probe_rows": n_probe,
          "features": [plan.features[j].name for j in chosen], "z": round(z, 2)}
    if excess < max(10.0, _MIN_EXCESS_SHARE * q) or z < 5:
        return None
    return RuleHit(hits, ev)
