"""One-pass streaming profile of a dataset: per-column statistics and sketches.

The profile is plain JSON (``DatasetProfile.to_json``) so that a baseline's profile can be stored
in the ledger and compared against later without the old bytes. Per column it keeps exact counts
(rows, nulls, min, max, mean, std), an exact value-count table for low-cardinality columns, a
quantile sketch for numeric and time columns (quantiles of a uniform row sample of up to
``_SAMPLE_ROWS`` rows), and whether the column never decreased in file order (time-like).

The same pass keeps that uniform row sample (bottom-k on random priorities) as an Arrow table:
the poisoning rules use the baseline's sample as their reference set.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from custody.validators.dataset.fingerprint import describe_schema, fingerprint_of
from custody.validators.dataset.reader import DataSource, open_source

_SAMPLE_ROWS = 65_536
_QUANTILES = 512  # the sketch holds _QUANTILES + 1 points
_MAX_DISTINCT = 1000  # exact value counts up to this many distinct values
_PROFILE_VERSION = 1
NUMERIC, CATEGORICAL, TEMPORAL, OTHER = "numeric", "categorical", "temporal", "other"

Progress = Callable[[int, int | None], None]


def column_kind(typ: pa.DataType) -> str:
    if pa.types.is_dictionary(typ):
        return column_kind(typ.value_type)
    if pa.types.is_boolean(typ) or pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return CATEGORICAL
    if pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ):
        return NUMERIC
    if pa.types.is_temporal(typ):
        return TEMPORAL
    return OTHER


_WIDTHS = {8: "8", 16: "16", 32: "32", 64: "64"}


def valid_mask(array: pa.Array) -> np.ndarray:
    """True where a value is not null (from the validity bitmap)."""
    n = len(array)
    bitmap = array.buffers()[0]
    if array.null_count == 0 or bitmap is None:
        return np.ones(n, dtype=bool)
    bits = np.unpackbits(np.frombuffer(bitmap, dtype=np.uint8), bitorder="little")
    return np.asarray(bits[array.offset:array.offset + n], dtype=bool)


def to_numpy(array: pa.Array) -> np.ndarray:
    """A primitive (integer, float, boolean) array's values, read from its buffers: pyarrow's
    ``to_numpy`` imports pandas. Null slots hold arbitrary values (see ``valid_mask``)."""
    typ = array.type
    n = len(array)
    data = array.buffers()[1]
    if pa.types.is_boolean(typ):
        if data is None:
            return np.zeros(n, dtype=bool)
        bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
        return np.asarray(bits[array.offset:array.offset + n], dtype=bool)
    if pa.types.is_floating(typ):
        dtype = np.dtype(f"float{_WIDTHS[typ.bit_width]}")
    elif pa.types.is_integer(typ):
        dtype = np.dtype(("int" if pa.types.is_signed_integer(typ) else "uint")
                         + _WIDTHS[typ.bit_width])
    else:
        raise TypeError(f"not a primitive array: {typ}")
    if data is None or n == 0:
        return np.zeros(n, dtype=dtype)
    return np.frombuffer(data, dtype=dtype, count=n, offset=array.offset * dtype.itemsize)


def arrow_indices(idx: np.ndarray) -> pa.Array:
    """A numpy index array as an Arrow int64 array (``pa.array(ndarray)`` imports pandas)."""
    data = np.ascontiguousarray(idx, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(data), [None, pa.py_buffer(data)])


def numeric_values(array: pa.Array) -> np.ndarray:
    """Values as float64 with NaN for nulls (temporal types as their integer ticks)."""
    typ = array.type
    if pa.types.is_dictionary(typ):
        array = array.dictionary_decode()
        typ = array.type
    if pa.types.is_temporal(typ):
        width = pa.int32() if pa.types.is_date32(typ) or pa.types.is_time32(typ) else pa.int64()
        array = array.view(width) if array.null_count == 0 else pc.cast(array, width)
    elif pa.types.is_boolean(typ):
        array = pc.cast(array, pa.int8())
    if pa.types.is_decimal(array.type) or pa.types.is_float16(array.type):
        array = pc.cast(array, pa.float64())
    out = to_numpy(array).astype(np.float64)
    if array.null_count:
        out[~valid_mask(array)] = np.nan
    return out


def _plain(value: Any) -> Any:
    """A JSON-friendly scalar (str/int/float/bool/None)."""
    if isinstance(value, str | bool | int) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


@dataclass
class ColumnProfile:
    name: str
    type: str
    kind: str
    count: int = 0
    nulls: int = 0
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    quantiles: list[float] = field(default_factory=list)
    values: list[list[Any]] | None = None  # [[value, count], ...] most frequent first
    distinct_overflow: bool = False
    monotonic: bool = False
    sample_size: int = 0

    @property
    def null_rate(self) -> float:
        return self.nulls / self.count if self.count else 0.0

    @property
    def value_counts(self) -> dict[Any, int]:
        return {v[0]: int(v[1]) for v in self.values or []}

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ColumnProfile:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class DatasetProfile:
    rows: int
    schema: list[dict[str, Any]]
    fingerprint: str
    columns: dict[str, ColumnProfile]
    label: str | None = None
    version: int = _PROFILE_VERSION

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "rows": self.rows,
            "schema": self.schema,
            "fingerprint": self.fingerprint,
            "label": self.label,
            "columns": {k: c.to_json() for k, c in self.columns.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DatasetProfile:
        if int(data.get("version", 0)) != _PROFILE_VERSION:
            raise ValueError(f"unsupported dataset profile version {data.get('version')!r}")
        return cls(
            rows=int(data["rows"]),
            schema=list(data["schema"]),
            fingerprint=str(data["fingerprint"]),
            columns={k: ColumnProfile.from_json(v) for k, v in data["columns"].items()},
            label=data.get("label"),
        )


class _ColumnStats:
    """Exact running statistics of one column."""

    def __init__(self, name: str, typ: pa.DataType) -> None:
        self.name, self.typ, self.kind = name, typ, column_kind(typ)
        self.count = self.nulls = self.finite = 0
        self.total = self.total_sq = 0.0
        self.lo, self.hi = math.inf, -math.inf
        self.shift: float | None = None  # centre for a numerically stable variance
        self.counts: dict[Any, int] | None = {} if self.kind != OTHER else None
        self.overflow = False
        self.monotonic = self.kind in (NUMERIC, TEMPORAL)
        self.last = -math.inf

    def update(self, array: pa.Array) -> None:
        self.count += len(array)
        if self.kind in (NUMERIC, TEMPORAL):
            self._numeric(numeric_values(array))
        else:
            self.nulls += array.null_count
        if self.counts is not None and not self.overflow:
            self._count(array)

    def _numeric(self, x: np.ndarray) -> None:
        ok = np.isfinite(x)
        nn = int(np.count_nonzero(ok))
        self.nulls += len(x) - nn
        if nn == 0:
            return
        v = x[ok] if nn < len(x) else x
        if self.shift is None:
            self.shift = float(v[0])
        d = v - self.shift
        self.total += float(d.sum())
        self.total_sq += float(np.einsum("i,i->", d, d))  # not np.dot: BLAS threads are slow here
        self.finite += nn
        lo, hi = float(v.min()), float(v.max())
        self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)
        if self.monotonic:
            self.monotonic = v[0] >= self.last and bool(np.all(v[1:] >= v[:-1]))
            self.last = float(v[-1])

    def _count(self, array: pa.Array) -> None:
        if self.counts is None:
            return
        if self.kind == NUMERIC and not pa.types.is_integer(array.type):
            self.counts = None  # floats: the quantile sketch describes them
            return
        vc = pc.value_counts(array)
        if len(vc) > _MAX_DISTINCT:
            self.overflow = True
            self.counts = None
            return
        values = vc.field("values").to_pylist()
        counts = vc.field("counts").to_pylist()
        for value, n in zip(values, counts, strict=True):
            if value is None:
                continue
            key = _plain(value)
            self.counts[key] = self.counts.get(key, 0) + int(n)
        if len(self.counts) > _MAX_DISTINCT:
            self.overflow = True
            self.counts = None

    def finish(self, sample: np.ndarray | None) -> ColumnProfile:
        prof = ColumnProfile(self.name, str(self.typ), self.kind, self.count, self.nulls)
        if self.finite:
            mean = self.total / self.finite
            var = max(self.total_sq / self.finite - mean * mean, 0.0)
            prof.mean = mean + (self.shift or 0.0)
            prof.std = math.sqrt(var)
            prof.min, prof.max = self.lo, self.hi
            prof.monotonic = self.monotonic and self.finite > 1
        if sample is not None:
            s = sample[np.isfinite(sample)]
            prof.sample_size = len(s)
            if len(s):
                ordered = np.sort(s)
                # inverted-CDF quantiles at i / _QUANTILES: the smallest x with F(x) >= p
                idx = np.ceil(np.linspace(0.0, 1.0, _QUANTILES + 1) * len(ordered)) - 1
                prof.quantiles = ordered[np.clip(idx, 0, len(ordered) - 1).astype(int)].tolist()
        prof.distinct_overflow = self.overflow or (self.counts is None and self.kind != NUMERIC)
        if self.counts is not None:
            ranked = sorted(self.counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
            prof.values = [[k, n] for k, n in ranked]
        return prof


class RowSampler:
    """A uniform sample of up to ``k`` rows (bottom-k on seeded random priorities)."""

    def __init__(self, k: int = _SAMPLE_ROWS, seed: int = 0x5EED,
                 expected_rows: int | None = None) -> None:
        self.k = k
        self.rng = np.random.default_rng(seed)
        # With a known row count, start near the final threshold so that few rows are copied
        # (a 1.25x margin: too few candidates would only shrink the sample, never bias it).
        self.threshold = min(1.0, 1.25 * k / expected_rows) if expected_rows else 1.0
        self.parts: list[pa.RecordBatch] = []
        self.prios: list[np.ndarray] = []
        self.positions: list[np.ndarray] = []
        self.kept = 0

    def update(self, batch: pa.RecordBatch, offset: int) -> None:
        u = self.rng.random(batch.num_rows)
        pick = np.flatnonzero(u < self.threshold)
        if len(pick) == 0:
            return
        self.parts.append(batch.take(arrow_indices(pick)))
        self.prios.append(u[pick])
        self.positions.append(pick + offset)
        self.kept += len(pick)
        if self.kept > 2 * self.k:
            self._prune()

    def _prune(self) -> None:
        table = pa.Table.from_batches(self.parts).combine_chunks()
        prios = np.concatenate(self.prios)
        pos = np.concatenate(self.positions)
        if len(prios) > self.k:
            keep = np.sort(np.argpartition(prios, self.k - 1)[: self.k])
            self.threshold = float(prios[keep].max())
            table, prios, pos = table.take(arrow_indices(keep)), prios[keep], pos[keep]
        self.parts = table.to_batches()
        self.prios, self.positions, self.kept = [prios], [pos], len(prios)

    def table(self, schema: pa.Schema) -> tuple[pa.Table, np.ndarray]:
        """The sample (rows in file order) and the rows' positions."""
        if not self.parts:
            return pa.Table.from_batches([], schema=schema), np.zeros(0, dtype=np.int64)
        self._prune()
        return pa.Table.from_batches(self.parts, schema=schema), np.concatenate(self.positions)


class Profiler:
    """Feed record batches; get a :class:`DatasetProfile` and the row sample."""

    def __init__(self, schema: pa.Schema, label: str | None = None,
                 sample_rows: int = _SAMPLE_ROWS, expected_rows: int | None = None) -> None:
        self.schema = schema
        self.label = label
        self.stats = {f.name: _ColumnStats(f.name, f.type) for f in schema}
        self.sampler = RowSampler(sample_rows, expected_rows=expected_rows)
        self.rows = 0
        # (schema.empty_table() would import pandas)
        self.sample: pa.Table = pa.Table.from_batches([], schema=schema)
        self.sample_positions = np.zeros(0, dtype=np.int64)

    def update(self, batch: pa.RecordBatch) -> None:
        for name, stats in self.stats.items():
            stats.update(batch.column(name))
        self.sampler.update(batch, self.rows)
        self.rows += batch.num_rows

    def finish(self, fingerprint: str, schema_desc: list[dict[str, Any]]) -> DatasetProfile:
        self.sample, self.sample_positions = self.sampler.table(self.schema)
        columns: dict[str, ColumnProfile] = {}
        for name, stats in self.stats.items():
            values = None
            if stats.kind in (NUMERIC, TEMPORAL):
                values = numeric_values(self.sample.column(name).combine_chunks())
            columns[name] = stats.finish(values)
        return DatasetProfile(self.rows, schema_desc, fingerprint, columns, self.label)


def _profile_batches(source: DataSource, batches: Iterable[pa.RecordBatch],
                    label: str | None = None, progress: Progress | None = None
                    ) -> DatasetProfile:
    profiler = Profiler(source.schema, label, expected_rows=source.num_rows)
    for batch in batches:
        profiler.update(batch)
        if progress is not None:
            progress(profiler.rows, source.num_rows)
    desc = describe_schema(source.schema)
    return profiler.finish(fingerprint_of(desc), desc)


def profile_dataset(path: Path, *, label: str | None = None,
                    progress: Progress | None = None) -> DatasetProfile:
    """Profile ``path`` in one streamed pass; the result is JSON-serialisable via ``to_json``."""
    source = open_source(Path(path))
    return _profile_batches(source, source.batches(), label, progress)
