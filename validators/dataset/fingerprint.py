"""The canonical description of a dataset's schema and its fingerprint (column order, logical
types, nullability): what a baseline pins and a snapshot is compared with."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow as pa


def _canonical_type(typ: pa.DataType) -> str:
    """The logical type name: string/large_string and dictionary<string> read alike."""
    if pa.types.is_dictionary(typ):
        return _canonical_type(typ.value_type)
    if pa.types.is_large_string(typ) or pa.types.is_string_view(typ):
        return "string"
    if pa.types.is_large_binary(typ) or pa.types.is_binary_view(typ):
        return "binary"
    if pa.types.is_large_list(typ):
        return f"list<{_canonical_type(typ.value_type)}>"
    return str(typ)


def describe_schema(schema: pa.Schema) -> list[dict[str, Any]]:
    return [{"name": f.name, "type": _canonical_type(f.type), "nullable": bool(f.nullable)}
            for f in schema]


def fingerprint_of(desc: list[dict[str, Any]]) -> str:
    text = json.dumps(desc, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def schema_fingerprint(path: Path) -> str:
    """sha256 of the canonical schema (column order, logical types, nullability) of ``path``."""
    from custody.validators.dataset.reader import open_source

    return fingerprint_of(describe_schema(open_source(Path(path)).schema))
