"""Streamed record batches from a dataset snapshot on disk.

Accepted inputs (format decided by content, never by extension):

- a Parquet file (magic ``PAR1``);
- a directory holding Parquet files (walked recursively in sorted path order; hidden and
  ``_``-prefixed entries such as ``.dvc`` or ``_SUCCESS`` are skipped), read as one dataset;
- a CSV file (any other text file). A CSV has no physical types, so it is parsed against the
  baseline's schema when one is given; columns that do not parse as the baseline's type fall
  back to inference and then show up as a schema change.

DVC-tracked paths are ordinary files or directories in the workspace. Row positions are
0-based in file order (files in sorted path order, rows in file order).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from custody.errors import DatasetReadError

_BATCH_ROWS = 65_536
_PARQUET_MAGIC = b"PAR1"


def _is_parquet(path: Path) -> bool:
    with path.open("rb") as stream:
        return stream.read(4) == _PARQUET_MAGIC


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith((".", "_")) for part in path.relative_to(root).parts)


def _parquet_files(root: Path) -> list[Path]:
    files = [p for p in sorted(root.rglob("*")) if p.is_file() and _visible(p, root)]
    found = [p for p in files if _is_parquet(p)]
    if not found:
        raise DatasetReadError(f"{root}: directory holds no Parquet files")
    return found


@dataclass
class DataSource:
    """One dataset snapshot: its schema, row count (when known) and a batch iterator."""

    path: Path
    kind: str  # "parquet" | "parquet-dir" | "csv"
    schema: pa.Schema
    num_rows: int | None
    files: list[Path] = field(default_factory=list)
    csv_types: dict[str, pa.DataType] = field(default_factory=dict)

    @property
    def is_csv(self) -> bool:
        return self.kind == "csv"

    def batches(
        self, columns: Sequence[str] | None = None, batch_rows: int = _BATCH_ROWS
    ) -> Iterator[pa.RecordBatch]:
        """Record batches in file order, restricted to ``columns`` (all when None)."""
        cols = list(columns) if columns is not None else None
        if self.is_csv:
            yield from self._csv_batches(cols)
            return
        for file in self.files:
            reader = pq.ParquetFile(file)
            present = set(reader.schema_arrow.names)
            wanted = None if cols is None else [c for c in cols if c in present]
            for batch in reader.iter_batches(batch_size=batch_rows, columns=wanted):
                yield _conform(batch, self.schema if cols is None else _sub(self.schema, cols))

    def _csv_batches(self, cols: list[str] | None) -> Iterator[pa.RecordBatch]:
        convert = _convert(self.csv_types, cols)
        read = pacsv.ReadOptions(block_size=32 << 20)
        with pacsv.open_csv(self.path, read_options=read, convert_options=convert) as reader:
            for batch in reader:
                yield _conform(batch, self.schema if cols is None else _sub(self.schema, cols))


def _sub(schema: pa.Schema, cols: list[str]) -> pa.Schema:
    return pa.schema([schema.field(c) for c in cols if c in schema.names])


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Give every file of a directory the dataset's columns and types (missing columns become
    nulls; a narrower type of one file is cast to the unified type)."""
    if batch.schema.equals(schema):
        return batch
    arrays = []
    for f in schema:
        if f.name in batch.schema.names:
            column = batch.column(f.name)
            arrays.append(column if column.type == f.type else column.cast(f.type))
        else:
            arrays.append(pa.nulls(batch.num_rows, type=f.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _unify(schemas: list[pa.Schema]) -> pa.Schema:
    try:
        return pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DatasetReadError(f"Parquet files of the directory disagree on types: {exc}") from exc


def _convert(types: dict[str, pa.DataType], cols: list[str] | None = None
             ) -> pacsv.ConvertOptions:
    """How CSV cells become values: an empty field is a null (strings included, as a Parquet
    null is written by CSV writers); a quoted empty field ``""`` stays an empty string."""
    return pacsv.ConvertOptions(column_types=types, include_columns=cols,
                                strings_can_be_null=True, quoted_strings_can_be_null=False)


def _csv_schema(path: Path, types: dict[str, pa.DataType]) -> pa.Schema:
    with pacsv.open_csv(path, convert_options=_convert(types)) as reader:
        return reader.schema


def _csv_type(typ: pa.DataType) -> pa.DataType | None:
    """The type a CSV column is parsed as to give back a baseline column of type ``typ``
    (dictionary-encoded columns as their values; nested and binary columns: inferred)."""
    if pa.types.is_dictionary(typ):
        typ = typ.value_type
    if pa.types.is_nested(typ) or pa.types.is_binary(typ) or pa.types.is_large_binary(typ):
        return None
    if pa.types.is_large_string(typ) or pa.types.is_string_view(typ):
        return pa.string()
    return typ


def _csv_typing(path: Path, baseline: pa.Schema | None) -> tuple[pa.Schema, dict[str, pa.DataType]]:
    """Parse CSV columns as the baseline's types; a column that does not parse is inferred.

    Typed this way, a CSV export of a Parquet table reads back as that table: the same types
    (int8 stays int8, a string of digits stays a string), nulls where the table had nulls."""
    try:
        inferred = _csv_schema(path, {})
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
        raise DatasetReadError(f"{path}: not a readable CSV or Parquet file: {exc}") from exc
    if baseline is None:
        return inferred, {}
    types = {}
    for f in inferred:
        if f.name in baseline.names:
            typ = _csv_type(baseline.field(f.name).type)
            if typ is not None:
                types[f.name] = typ
    failed = _unparsed(path, types)
    if failed:
        types = {name: typ for name, typ in types.items()
                 if name not in failed or _parses(path, {name: typ})}
    return _csv_schema(path, types), types


def _unparsed(path: Path, types: dict[str, pa.DataType]) -> set[str]:
    """The columns whose values do not all parse as the given types (empty: all parse)."""
    if not types or _parses(path, types):
        return set()
    return set(types)


def _parses(path: Path, types: dict[str, pa.DataType]) -> bool:
    """True when every value of the given columns parses as the given type (one pass)."""
    try:
        with pacsv.open_csv(path, convert_options=_convert(types, list(types))) as reader:
            for _ in reader:
                pass
    except pa.ArrowInvalid:
        return False
    return True


def schema_of(desc: list[dict[str, Any]]) -> pa.Schema:
    """An Arrow schema from a profile's canonical schema description (types pyarrow cannot
    name back, e.g. nested ones, are left out: a CSV column of that name is inferred)."""
    fields = []
    for col in desc:
        try:
            typ = pa.type_for_alias(str(col["type"]))
        except (ValueError, KeyError):
            continue
        fields.append(pa.field(str(col["name"]), typ, bool(col.get("nullable", True))))
    return pa.schema(fields)


def open_source(path: Path, baseline_schema: pa.Schema | None = None) -> DataSource:
    """Open ``path`` as a dataset; ``baseline_schema`` types CSV columns."""
    path = Path(path)
    if not path.exists():
        raise DatasetReadError(f"{path}: no such file or directory")
    if path.is_dir():
        files = _parquet_files(path)
        metas = [pq.ParquetFile(f) for f in files]
        schema = _unify([m.schema_arrow for m in metas])
        rows = sum(m.metadata.num_rows for m in metas)
        return DataSource(path, "parquet-dir", schema, rows, files)
    if not path.is_file():
        raise DatasetReadError(f"{path}: not a regular file or directory")
    if _is_parquet(path):
        try:
            meta = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DatasetReadError(f"{path}: corrupt Parquet file: {exc}") from exc
        return DataSource(path, "parquet", meta.schema_arrow, meta.metadata.num_rows, [path])
    schema, types = _csv_typing(path, baseline_schema)
    return DataSource(path, "csv", schema, None, [path], csv_types=types)
