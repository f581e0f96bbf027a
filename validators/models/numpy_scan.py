"""NumPy ``.npy`` content: header sanity, and the pickle that an object array carries.

An object-dtype array is stored as a pickle right after the header; ``numpy.load`` runs it when
``allow_pickle=True``. That pickle is scanned like any other. Plain arrays are checked for a data
size that matches the header, without reading the data when the file can seek; inside a
compressed stream (``np.savez_compressed``) the data is decompressed and counted, so that the
decompression limits apply to it.
"""

from __future__ import annotations

import ast
import math
import re
from typing import BinaryIO

from custody.validators.findings import Finding, Severity
from custody.validators.models.context import Ctx
from custody.validators.models.pickle_scan import scan_pickle_stream

_MAX_HEADER = 1 << 16
_SIMPLE = re.compile(r"^[<>|=]?([a-zA-Z])(\d*)$")
_CHAR = {"U": 4}


def _malformed(ctx: Ctx, why: str) -> list[Finding]:
    return [ctx.finding("numpy.malformed", Severity.HIGH, f".npy header unreadable: {why}")]


def _itemsize(descr: object) -> int | None:
    """Bytes per element, or None when the dtype holds Python objects (or cannot be sized)."""
    if isinstance(descr, str):
        match = _SIMPLE.match(descr)
        if match is None or match.group(1) == "O":
            return None
        return int(match.group(2) or 1) * _CHAR.get(match.group(1), 1)
    if isinstance(descr, list):
        total = 0
        for field in descr:
            if not isinstance(field, tuple) or len(field) < 2:
                return None
            size = _itemsize(field[1])
            if size is None:
                return None
            shape = field[2] if len(field) > 2 else ()
            count = math.prod(shape) if isinstance(shape, tuple) else 1
            total += size * int(count)
        return total
    return None


def _has_object(descr: object) -> bool:
    text = repr(descr)
    return "'O" in text or "'|O" in text or "<O" in text


def _drain(stream: BinaryIO) -> int:
    """Read a forward-only (decompressed) stream to its end, counting: the decompression
    budget and ratio limits see every byte (a deflate bomb inside an .npz stops here)."""
    total = 0
    while chunk := stream.read(1 << 20):
        total += len(chunk)
    return total


def scan_npy(stream: BinaryIO, size: int | None, ctx: Ctx, head: bytes = b"") -> list[Finding]:
    prefix = stream.read(8)
    if len(prefix) < 8 or not prefix.startswith(b"\x93NUMPY"):
        return _malformed(ctx, "no magic")
    major = prefix[6]
    width = 2 if major == 1 else 4
    raw_len = stream.read(width)
    header_len = int.from_bytes(raw_len, "little")
    if len(raw_len) != width or header_len > _MAX_HEADER:
        return _malformed(ctx, f"header length {header_len} out of bounds")
    raw = stream.read(header_len)
    try:
        header = ast.literal_eval(raw.decode("latin-1" if major < 3 else "utf-8"))
    except (ValueError, SyntaxError, UnicodeDecodeError, MemoryError, RecursionError) as exc:
        return _malformed(ctx, f"header is not a literal dict ({type(exc).__name__})")
    if not isinstance(header, dict) or not {"descr", "shape"} <= header.keys():
        return _malformed(ctx, "header lacks descr or shape")
    descr, shape = header["descr"], header["shape"]
    if _has_object(descr):
        inner = ctx.inside("object array pickle", nested=False)
        findings = [
            ctx.finding(
                "numpy.object_array",
                Severity.LOW,
                "object-dtype array: numpy.load needs allow_pickle=True, which runs the "
                "pickle that follows (scanned below)",
            )
        ]
        return findings + scan_pickle_stream(stream, inner, size).findings
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
        return _malformed(ctx, f"shape {shape!r} is not a tuple of sizes")
    itemsize = _itemsize(descr)
    if itemsize is None:
        return []
    expected = math.prod(shape) * itemsize
    available = size - stream.tell() if size is not None else _drain(stream)
    limit = ctx.options.limits.max_allocation
    if available < expected and expected > limit:
        return [
            ctx.finding(
                "limit.allocation",
                Severity.HIGH,
                f"header announces {expected} data bytes (numpy.load allocates them first) but "
                f"{available} follow: an allocation bomb above the {limit}-byte limit",
            )
        ]
    if available != expected:
        return [
            ctx.finding(
                "numpy.size_mismatch",
                Severity.MEDIUM if available > expected else Severity.LOW,
                f"header announces {expected} data bytes but {available} follow"
                + ("; the extra bytes are hidden content" if available > expected else ""),
            )
        ]
    return []
