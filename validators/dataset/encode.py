"""Row encodings shared by the poisoning rules.

- ``row_hashes``: a 64-bit hash of a row's raw values over given columns (exact duplicates).
  Numbers hash by value as float64 (so int32 -> int64 or int -> float widening keeps rows
  equal), strings by their UTF-8 bytes, nulls as a constant.
- ``FeaturePlan``: built from the baseline's profile and row sample; turns a batch into a
  float32 matrix: numeric columns standardised by the baseline (median, robust spread),
  categorical columns as integer codes of the baseline's vocabulary (unseen values get fresh
  codes). High-cardinality text and nested columns are not features.
- ``LabelCodes``: label values to small integer codes (baseline classes first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from custody.validators.dataset.profile import (
    CATEGORICAL,
    NUMERIC,
    TEMPORAL,
    DatasetProfile,
    _plain,
    column_kind,
    numeric_values,
    to_numpy,
    valid_mask,
)

_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_NULL = np.uint64(0x9E3779B97F4A7C15)
_NAN = np.float64("nan")
MAX_CLASSES = 100
_NULL_SCORE = -6.0  # where a null number sits among normal scores


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return np.asarray(x ^ (x >> np.uint64(31)), dtype=np.uint64)


def _dictionary_codes(indices: pa.Array, null_code: int) -> np.ndarray:
    """Dictionary indices as int64, nulls as ``null_code`` (without pyarrow's pandas shim)."""
    idx = to_numpy(indices).astype(np.int64)
    if indices.null_count:
        idx[~valid_mask(indices)] = null_code
    return idx


def _string_words(array: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The UTF-8 bytes of a string array as (start offsets, lengths, unaligned uint64 view)."""
    if not pa.types.is_large_string(array.type):
        array = array.cast(pa.large_string())
    n = len(array)
    bufs = array.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int64)[array.offset:array.offset + n + 1]
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None \
        else np.zeros(0, dtype=np.uint8)
    lo = int(offsets[0]) if n else 0
    hi = int(offsets[-1]) if n else 0
    padded = np.zeros(hi - lo + 8, dtype=np.uint8)
    padded[:hi - lo] = data[lo:hi]
    words = np.ndarray(shape=(len(padded) - 7,), dtype="<u8", buffer=padded.data, strides=(1,))
    return offsets[:-1] - lo, np.diff(offsets), words


def hash_strings(array: pa.Array) -> np.ndarray:
    """A 64-bit hash of each string's UTF-8 bytes (nulls: a constant), vectorised.

    The bytes are read eight at a time (little-endian, zero-padded), each word mixed into the
    state with splitmix64 together with its position; the state starts from the length. It is
    part of the stored reference format (``reference.py``): changing it is a format change."""
    starts, lengths, words = _string_words(array)
    h = mix64(lengths.astype(np.uint64) ^ _NULL)
    longest = int(lengths.max(initial=0))
    full = np.uint64(0xFFFFFFFFFFFFFFFF)
    for j in range(0, longest, 8):
        live = lengths > j
        rem = np.minimum(lengths - j, 8).astype(np.uint64)
        w = words[np.where(live, starts + j, 0)]
        mask = np.where(rem >= 8, full,
                        (np.uint64(1) << np.minimum(rem * np.uint64(8), np.uint64(63)))
                        - np.uint64(1))
        mixed = mix64(h ^ ((w & mask) + np.uint64(j + 1) * np.uint64(0x9E3779B1)))
        h = np.where(live, mixed, h)
    if array.null_count:
        valid = valid_mask(array)
        h = np.where(valid, h, _NULL)
    return np.asarray(h, dtype=np.uint64)


def column_hash(array: pa.Array) -> np.ndarray:
    """Per-row uint64 hash of one column's raw values."""
    kind = column_kind(array.type)
    if kind in (NUMERIC, TEMPORAL) or pa.types.is_boolean(array.type):
        x = numeric_values(array)
        x = np.where(x == 0.0, 0.0, x)  # -0.0 == 0.0
        bits = x.view(np.uint64).copy()
        bits[np.isnan(x)] = _NULL
        return bits
    if kind == CATEGORICAL:
        if pa.types.is_dictionary(array.type):
            table = np.append(hash_strings(pc.cast(array.dictionary, pa.string())), _NULL)
            idx = _dictionary_codes(array.indices, len(array.dictionary))
            return np.asarray(table[idx.astype(np.int64)], dtype=np.uint64)
        return hash_strings(array)
    text = pc.cast(array, pa.string()) if not pa.types.is_nested(array.type) else None
    if text is None:
        return np.full(len(array), _NULL, dtype=np.uint64)
    return hash_strings(text)


def row_hashes(batch: pa.RecordBatch, columns: Sequence[str]) -> np.ndarray:
    h = np.full(batch.num_rows, np.uint64(0x243F6A8885A308D3), dtype=np.uint64)
    for i, name in enumerate(columns):
        salt = np.uint64((i + 1) * 0x9E3779B1)
        h = mix64(h ^ (column_hash(batch.column(name)) + salt))
    return h


@dataclass
class LabelCodes:
    """Label values -> int32 codes; null labels are -1; codes are stable within one run."""

    codes: dict[Any, int] = field(default_factory=dict)

    def encode(self, array: pa.Array) -> np.ndarray:
        enc = array if pa.types.is_dictionary(array.type) else pc.dictionary_encode(array)
        lookup = np.empty(len(enc.dictionary) + 1, dtype=np.int32)
        for i, v in enumerate(enc.dictionary.to_pylist()):
            key = _plain(v)
            if key not in self.codes:
                self.codes[key] = len(self.codes)
            lookup[i] = self.codes[key]
        lookup[-1] = -1
        idx = _dictionary_codes(enc.indices, len(enc.dictionary))
        return np.asarray(lookup[idx.astype(np.int64)], dtype=np.int32)

    @property
    def names(self) -> list[Any]:
        return list(self.codes)


@dataclass
class Feature:
    name: str
    kind: str  # NUMERIC (incl. temporal ticks) or CATEGORICAL
    center: float = 0.0
    scale: float = 1.0
    vocab: dict[str, int] = field(default_factory=dict)
    known: int = 0  # codes below this were seen in the baseline
    continuous: bool = False  # numeric with more distinct values than a value table holds
    fine_edges: np.ndarray = field(default_factory=lambda: np.zeros(0))
    coarse_edges: np.ndarray = field(default_factory=lambda: np.zeros(0))
    rank_points: np.ndarray = field(default_factory=lambda: np.zeros(0))  # encoded values
    rank_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))  # their normal scores

    def normal_scores(self, z: np.ndarray) -> np.ndarray:
        """Encoded numbers as normal scores of the baseline's distribution (mid-ranks through
        the inverse normal CDF), so heavy tails do not squeeze the bulk; beyond the baseline's
        range half a unit further out; nulls at ``NULL_SCORE`` (they neighbour each other)."""
        x = z.astype(np.float64)
        if len(self.rank_points) < 2:
            out = np.clip(np.nan_to_num(x, nan=_NULL_SCORE), -4.0, 4.0)
        else:
            out = np.interp(x, self.rank_points, self.rank_scores)
            out[x > self.rank_points[-1]] = self.rank_scores[-1] + 0.5
            out[x < self.rank_points[0]] = self.rank_scores[0] - 0.5
        out[np.isnan(x)] = _NULL_SCORE
        return out

    def encode(self, array: pa.Array) -> np.ndarray:
        if self.kind == NUMERIC:
            return ((numeric_values(array) - self.center) / self.scale).astype(np.float32)
        enc = array if pa.types.is_dictionary(array.type) else pc.dictionary_encode(array)
        values = enc.dictionary.to_pylist()
        lookup = np.empty(len(values) + 1, dtype=np.float32)
        for i, v in enumerate(values):
            key = str(v)
            if key not in self.vocab:
                self.vocab[key] = len(self.vocab)
            lookup[i] = self.vocab[key]
        lookup[-1] = _NAN
        idx = _dictionary_codes(enc.indices, len(values))
        return np.asarray(lookup[idx.astype(np.int64)], dtype=np.float32)

    def bins(self, z: np.ndarray, fine: bool) -> np.ndarray:
        """Small integer bin codes: quantile bins for numbers, the value code for categories."""
        if self.kind == CATEGORICAL:
            return np.where(np.isnan(z), -1, z).astype(np.int64) + 1
        edges = self.fine_edges if fine else self.coarse_edges
        b = np.searchsorted(edges, z, side="right").astype(np.int64)
        b[np.isnan(z)] = len(edges) + 1
        return b

    def coarse_lut(self) -> np.ndarray:
        """Fine numeric bin code -> coarse bin code (nulls map to the coarse null code)."""
        fine_codes = np.arange(len(self.fine_edges) + 2)
        # a representative value per fine bin: its lower edge (below-range: -inf)
        lower = np.concatenate([[-np.inf], self.fine_edges.astype(np.float64)])
        coarse = np.searchsorted(self.coarse_edges.astype(np.float64), lower, side="right")
        lut = np.empty(len(fine_codes), dtype=np.int16)
        lut[: len(lower)] = coarse
        lut[len(lower):] = len(self.coarse_edges) + 1
        return lut

    @property
    def n_bins(self) -> int:
        return 0 if self.kind == CATEGORICAL else max(len(self.fine_edges), 1) + 2


@dataclass
class FeaturePlan:
    features: list[Feature]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def encode(self, batch: pa.RecordBatch | pa.Table) -> np.ndarray:
        out = np.empty((batch.num_rows, len(self.features)), dtype=np.float32)
        for j, f in enumerate(self.features):
            column = batch.column(f.name)
            if isinstance(column, pa.ChunkedArray):
                column = column.combine_chunks()
            out[:, j] = f.encode(column)
        return out

    def encode_table(self, table: pa.Table) -> np.ndarray:
        return self.encode(table)

    def coarse_from_fine(self, fine: np.ndarray) -> np.ndarray:
        """Coarse bin codes from fine ones (the coarse edges are a subset of the fine)."""
        out = np.empty_like(fine)
        for j, f in enumerate(self.features):
            out[:, j] = f.coarse_lut()[fine[:, j]] if f.kind == NUMERIC else fine[:, j]
        return out

    def bin_matrix(self, z: np.ndarray, fine: bool) -> np.ndarray:
        """Per-feature bin codes (int16 to stay small, rows x features; codes beyond the
        range share the last code); see :meth:`Feature.bins`."""
        out = np.empty(z.shape, dtype=np.int16)
        for j, f in enumerate(self.features):
            out[:, j] = np.minimum(f.bins(z[:, j], fine), np.iinfo(np.int16).max)
        return out


def _edges(quantiles: list[float], center: float, scale: float, bins: int) -> np.ndarray:
    q = np.asarray(quantiles, dtype=np.float64)
    picks = np.quantile(q, np.linspace(0, 1, bins + 1))
    return np.unique(((picks - center) / scale).astype(np.float32))


def _rank_scores(quantiles: list[float], center: float, scale: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    q = (np.asarray(quantiles, dtype=np.float64) - center) / scale
    if len(q) < 2:
        return np.zeros(0), np.zeros(0)
    inv = NormalDist().inv_cdf
    levels = np.array([inv((i + 0.5) / len(q)) for i in range(len(q))])
    points, index = np.unique(q.astype(np.float32).astype(np.float64), return_inverse=True)
    scores = np.bincount(index, weights=levels) / np.bincount(index)
    return points, scores


def build_plan(profile: DatasetProfile, columns: Sequence[str]) -> FeaturePlan:
    """Features from the baseline profile, in ``columns`` order."""
    feats: list[Feature] = []
    for name in columns:
        col = profile.columns[name]
        if col.kind in (NUMERIC, TEMPORAL) and col.quantiles:
            q = np.asarray(col.quantiles)
            center = float(np.quantile(q, 0.5))
            iqr = float(np.quantile(q, 0.75) - np.quantile(q, 0.25)) / 1.349
            scale = iqr if iqr > 0 else (col.std or 0.0)
            scale = scale if scale > 0 else 1.0
            points, scores = _rank_scores(col.quantiles, center, scale)
            feats.append(Feature(name, NUMERIC, center, scale, continuous=col.values is None,
                                 fine_edges=_edges(col.quantiles, center, scale, 64),
                                 coarse_edges=_edges(col.quantiles, center, scale, 8),
                                 rank_points=points, rank_scores=scores))
        elif col.kind == CATEGORICAL and col.values is not None:
            vocab = {str(v): i for i, (v, _) in enumerate(col.values)}
            feats.append(Feature(name, CATEGORICAL, vocab=vocab, known=len(vocab)))
    return FeaturePlan(feats)
