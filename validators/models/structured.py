"""Formats that hold data, not code, checked for the structure their loaders trust.

* safetensors: the JSON header's bounds, dtypes, sizes, overlaps and holes; nothing executes,
  but a lying header is how parser bugs are reached and how data hides.
* GGUF: version, counts and metadata bounds; a chat template that reaches Python internals
  (Jinja2 sandbox escapes in llama.cpp bindings) is flagged.
"""

from __future__ import annotations

import json
import math
import re
import struct
from typing import BinaryIO

from custody.errors import GgufMalformed as _GgufError
from custody.validators.findings import Finding, Severity
from custody.validators.models.context import Ctx

_ST_DTYPES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "F8_E8M0": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
    "C64": 8,
    "F4": 1,
    "F6_E2M3": 1,
    "F6_E3M2": 1,
}
_MAX_HEADER = 100 << 20


def _st(ctx: Ctx, message: str, severity: Severity = Severity.MEDIUM) -> Finding:
    return ctx.finding("safetensors.header", severity, message)


def scan_safetensors(
    stream: BinaryIO, size: int | None, ctx: Ctx, head: bytes = b""
) -> list[Finding]:
    assert size is not None  # noqa: S101 - the dispatcher gives this format a seekable stream
    header_len = int.from_bytes(stream.read(8), "little")
    if 8 + header_len > size:
        return [_st(ctx, f"header length {header_len} runs past the {size}-byte file: loaders "
                    "allocate what it declares (an allocation bomb)", Severity.HIGH)]
    if header_len > _MAX_HEADER:
        return [_st(ctx, f"header length {header_len} is above the {_MAX_HEADER}-byte limit of "
                    "safetensors loaders", Severity.HIGH)]
    raw = stream.read(header_len)
    duplicates: list[str] = []

    def pairs(items: list[tuple[str, object]]) -> dict[str, object]:
        keys = [k for k, _ in items]
        duplicates.extend(k for k in set(keys) if keys.count(k) > 1)
        return dict(items)

    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=pairs)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return [_st(ctx, f"header is not JSON: {exc}", Severity.HIGH)]
    if not isinstance(header, dict):
        return [_st(ctx, "header is not a JSON object", Severity.HIGH)]
    findings = (
        [_st(ctx, f"duplicate keys in header: {sorted(set(duplicates))[:5]}")] if duplicates else []
    )
    data_size = size - 8 - header_len
    spans: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                findings.append(_st(ctx, "__metadata__ must map strings to strings"))
            continue
        problem = _tensor_problem(entry, data_size)
        if problem:
            findings.append(_st(ctx, f"tensor {name!r}: {problem}"))
            continue
        begin, end = entry["data_offsets"]
        spans.append((begin, end, name))
    findings.extend(_layout(spans, data_size, ctx))
    return findings


def _tensor_problem(entry: object, data_size: int) -> str:
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= entry.keys():
        return "entry lacks dtype, shape or data_offsets"
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in _ST_DTYPES:
        return f"unknown dtype {dtype!r}"
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        return f"shape {shape!r} is not a list of sizes"
    if not (
        isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
    ):
        return "data_offsets is not two integers"
    begin, end = offsets
    if not 0 <= begin <= end <= data_size:
        return f"data_offsets {offsets} outside the {data_size}-byte data section"
    expected = math.prod(shape) * _ST_DTYPES[dtype]
    if dtype in ("F4",):
        expected = (math.prod(shape) + 1) // 2
    if end - begin != expected:
        return f"{end - begin} bytes for shape {shape} of {dtype} ({expected} expected)"
    return ""


def _layout(spans: list[tuple[int, int, str]], data_size: int, ctx: Ctx) -> list[Finding]:
    spans.sort()
    cursor = 0
    for begin, end, name in spans:
        if begin < cursor:
            return [_st(ctx, f"tensor {name!r} overlaps the previous tensor")]
        if begin > cursor:
            return [_st(ctx, f"hole of {begin - cursor} bytes before tensor {name!r}")]
        cursor = end
    if spans and cursor != data_size:
        return [_st(ctx, f"{data_size - cursor} bytes after the last tensor are not described")]
    return []


# -- GGUF -----------------------------------------------------------------------------------
_GGUF_SCALARS = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9
_TEMPLATE_RISK = re.compile(
    r"__(?:class|globals|subclasses|builtins|init|import|mro|base)__|\bos\.|popen|\beval\b|"
    r"\bexec\b|import\s|\bcycler\b|\blipsum\b|\bnamespace\.__",
)


def scan_gguf(stream: BinaryIO, size: int | None, ctx: Ctx, head: bytes = b"") -> list[Finding]:
    assert size is not None  # noqa: S101 - the dispatcher gives this format a seekable stream
    try:
        return _gguf(stream, size, ctx)
    except (_GgufError, struct.error, UnicodeDecodeError) as exc:
        return [ctx.finding("gguf.malformed", Severity.HIGH, f"GGUF header unreadable: {exc}")]


def _gguf(stream: BinaryIO, size: int, ctx: Ctx) -> list[Finding]:
    def read(n: int) -> bytes:
        if n < 0 or stream.tell() + n > size:
            raise _GgufError(f"a field of {n} bytes runs past the end of the file")
        return stream.read(n)

    def u(width: int) -> int:
        return int.from_bytes(read(width), "little")

    def string() -> str:
        return read(u(8)).decode("utf-8")

    stream.read(4)
    version = u(4)
    if version not in (1, 2, 3):
        return [ctx.finding("gguf.malformed", Severity.MEDIUM, f"unknown GGUF version {version}")]
    tensors, kvs = u(8), u(8)
    if tensors > size // 24 or kvs > size // 12:
        raise _GgufError(f"{tensors} tensors / {kvs} metadata entries cannot fit in {size} bytes")
    findings: list[Finding] = []
    for _ in range(kvs):
        ctx.budget.check_time()
        key, kind = string(), u(4)
        if kind == _STRING:
            value = string()
            if "chat_template" in key and _TEMPLATE_RISK.search(value):
                findings.append(
                    ctx.finding(
                        "gguf.chat_template",
                        Severity.HIGH,
                        f"metadata {key} holds a Jinja template that reaches Python internals "
                        "(template-injection code execution in GGUF loaders)",
                        at=key,
                    )
                )
        elif kind == _ARRAY:
            item, count = u(4), u(8)
            if item == _STRING:
                for _ in range(count):
                    read(u(8))
            elif item in _GGUF_SCALARS:
                read(count * _GGUF_SCALARS[item])
            else:
                raise _GgufError(f"array of unknown type {item} in {key!r}")
        elif kind in _GGUF_SCALARS:
            read(_GGUF_SCALARS[kind])
        else:
            raise _GgufError(f"unknown metadata type {kind} for {key!r}")
    return findings
