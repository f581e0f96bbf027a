"""The baseline's label model: what p(label | row) the baseline says, calibrated on rows it did
not learn from.

The poisoning rules ask "how many rows of label c would the baseline expect here?"; this
module answers for every snapshot row. The baseline's row sample is split in two by a seeded
permutation: the *fit* half trains the model (and is the kNN reference set, see ``poison.py``),
the *held-out* half calibrates it and is what every rule's null model is measured on, queried
exactly as snapshot rows are.

- ``BinnedModel``: naive Bayes over per-feature bins (fine quantile bins of numbers with a null
  bin and beyond-range bins, values of categories with an "unseen" code), each bin's class
  distribution shrunk towards the prior by ``_SMOOTH`` rows; then calibrated on the held-out
  half: ``logit_c = a * score_c + b_c`` (one temperature ``a`` for the double counting of
  correlated features, one offset per class), fitted by maximum likelihood. New category
  values carry no evidence.
- ``label_shift``: per-class weights ``w`` such that the snapshot's class counts equal the sum
  of ``w``-reweighted probabilities (the maximum-likelihood label-shift correction, Saerens et
  al. 2002): a natural prior shift moves every row's expectation, a covariate shift needs
  ``w = 1`` because the model already follows the rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from custody.validators.dataset.encode import FeaturePlan

_SMOOTH = 30.0  # each bin's class distribution borrows this many rows of the prior
_CHUNK = 1 << 18
_FIT_ROUNDS = 8
_SHIFT_ROWS = 65_536  # label-shift weights are estimated on at most this many rows
_W_BOUNDS = (0.05, 20.0)


def bin_sizes(plan: FeaturePlan) -> list[int]:
    """The model's bins per feature, over the fine bin codes of ``FeaturePlan.bin_matrix``:
    numbers in fine quantile bins (below range, bins, above range, null), categories as value
    codes (0 null, 1..known the baseline's values, known+1 every value it never had)."""
    return [f.known + 2 if f.kind == "categorical" else len(f.fine_edges) + 2
            for f in plan.features]


@dataclass
class BinnedModel:
    log_prior: np.ndarray  # (classes,)
    log_lik: list[np.ndarray]  # per feature: (bins, classes)
    temperature: float = 1.0
    offsets: np.ndarray | None = None  # (classes,)

    @property
    def classes(self) -> int:
        return len(self.log_prior)

    @classmethod
    def fit(cls, bins: np.ndarray, y: np.ndarray, sizes: list[int], classes: int
            ) -> BinnedModel:
        ok = y >= 0
        bins, y = bins[ok], y[ok]
        n_c = np.bincount(y, minlength=classes).astype(np.float64)
        prior = (n_c + 1.0) / (n_c.sum() + classes)
        tables = []
        for j, size in enumerate(sizes):
            codes = np.minimum(bins[:, j].astype(np.int64), size - 1)
            counts = np.bincount(codes * classes + y, minlength=size * classes).reshape(
                size, classes).astype(np.float64)
            # p(class | bin) shrunk towards the prior by _SMOOTH rows, as a likelihood ratio:
            # a rare value seen a few times says little
            post = (counts + _SMOOTH * prior) / (counts.sum(axis=1, keepdims=True) + _SMOOTH)
            tables.append(np.log(post / prior))
        return cls(np.log(prior), tables)

    def scores(self, bins: np.ndarray) -> np.ndarray:
        """Uncalibrated naive-Bayes log scores (rows x classes), float32."""
        out = np.empty((len(bins), self.classes), dtype=np.float32)
        for start in range(0, len(bins), _CHUNK):
            part = bins[start:start + _CHUNK]
            s = np.broadcast_to(self.log_prior, (len(part), self.classes)).copy()
            for j, table in enumerate(self.log_lik):
                s += table[np.minimum(part[:, j].astype(np.int64), len(table) - 1)]
            out[start:start + len(part)] = s - s.max(axis=1, keepdims=True)
        return out

    def scores_from(self, plan: FeaturePlan, z: np.ndarray) -> np.ndarray:
        """``scores`` of encoded rows, binned chunk by chunk (no bin matrix is kept)."""
        out = np.empty((len(z), self.classes), dtype=np.float32)
        for start in range(0, len(z), _CHUNK):
            out[start:start + _CHUNK] = self.scores(plan.bin_matrix(z[start:start + _CHUNK],
                                                                    True))
        return out

    def calibrate(self, scores: np.ndarray, y: np.ndarray) -> None:
        """Fit the temperature and class offsets on held-out rows (maximum likelihood)."""
        ok = y >= 0
        s, y = scores[ok].astype(np.float64), y[ok]
        if len(y) < 2 * self.classes:
            self.offsets = np.zeros(self.classes)
            return
        counts = np.bincount(y, minlength=self.classes).astype(np.float64) + 0.5
        a, b = 1.0, np.zeros(self.classes)
        own = s[np.arange(len(y)), y]
        for _ in range(_FIT_ROUNDS):
            p = _softmax(a * s + b)
            b += np.log(counts / (p.sum(axis=0) + 0.5))
            p = _softmax(a * s + b)
            mean = (p * s).sum(axis=1)
            grad = float(np.sum(own - mean))
            hess = float(np.sum((p * s * s).sum(axis=1) - mean * mean)) + 1e-9
            a = float(np.clip(a + grad / hess, 0.05, 2.0))
        self.temperature, self.offsets = a, b

    def proba(self, scores: np.ndarray, log_w: np.ndarray | None = None) -> np.ndarray:
        """Calibrated p(class | row) (rows x classes, float32), optionally label-shifted."""
        b = self.offsets if self.offsets is not None else np.zeros(self.classes)
        if log_w is not None:
            b = b + log_w
        out = np.empty(scores.shape, dtype=np.float32)
        for start in range(0, len(scores), _CHUNK):
            part = scores[start:start + _CHUNK].astype(np.float64)
            out[start:start + len(part)] = _softmax(self.temperature * part + b)
        return out


    def information(self, bins: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Mutual information of each feature's bins with the label (feature relevance)."""
        ok = y >= 0
        out = np.zeros(len(self.log_lik))
        classes = self.classes
        for j, table in enumerate(self.log_lik):
            size = len(table)
            codes = np.minimum(bins[ok, j].astype(np.int64), size - 1)
            joint = np.bincount(codes * classes + y[ok], minlength=size * classes).reshape(
                size, classes).astype(np.float64)
            joint /= max(joint.sum(), 1.0)
            pa_, pb_ = joint.sum(axis=1, keepdims=True), joint.sum(axis=0, keepdims=True)
            nz = joint > 0
            mi = float(np.sum(joint[nz] * np.log(joint[nz] / (pa_ @ pb_)[nz])))
            # Miller-Madow: many sparse bins look informative by chance alone
            used = int(np.count_nonzero(pa_ > 0))
            out[j] = mi - (used - 1) * (classes - 1) / (2.0 * max(int(ok.sum()), 1))
        return out


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def label_shift(proba: np.ndarray, y: np.ndarray, rounds: int = 30) -> np.ndarray:
    """Log weights ``log w`` (classes,) with count_c = sum_i p_w(c | x_i) on the labelled rows
    (fixed-point iteration; at most _SHIFT_ROWS rows, evenly spaced)."""
    ok = np.flatnonzero(y >= 0)
    if len(ok) > _SHIFT_ROWS:
        ok = ok[np.linspace(0, len(ok) - 1, _SHIFT_ROWS).astype(np.int64)]
    classes = proba.shape[1]
    log_w = np.zeros(classes)
    if len(ok) == 0:
        return log_w
    p0 = proba[ok].astype(np.float64)
    counts = np.bincount(y[ok], minlength=classes).astype(np.float64) + 0.5
    lo, hi = np.log(_W_BOUNDS[0]), np.log(_W_BOUNDS[1])
    for _ in range(rounds):
        p = p0 * np.exp(log_w)
        p /= p.sum(axis=1, keepdims=True)
        step = np.log(counts / (p.sum(axis=0) + 0.5))
        log_w = np.clip(log_w + step, lo, hi)
        if float(np.max(np.abs(step))) < 1e-4:
            break
    return np.asarray(log_w - log_w.mean())
