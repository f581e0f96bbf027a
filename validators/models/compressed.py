"""Compressed streams (joblib's zlib/gzip/bz2/xz/lzma/lz4 files and any other compressed blob).

The content is decompressed on the fly through a bounded stream and scanned by content, with
the total-bytes and ratio limits of the file's budget. A stream that fails to decompress is a
finding: an unreadable file is never a pass.
"""

from __future__ import annotations

import lzma
import zlib
from collections.abc import Callable
from typing import BinaryIO

from custody.errors import LimitHit, PickleBreak
from custody.validators.findings import Finding, Severity
from custody.validators.models.context import Ctx
from custody.validators.models.streams import buffered, inflater, lz4_available

Recurse = Callable[[BinaryIO, "int | None", Ctx], list[Finding]]

_KINDS = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x5d\x00\x00", "lzma"),
    (b"ZF0x", "zfile"),
    (b"\x04\x22\x4d\x18", "lz4"),
)
_ZFILE_HEADER = 2 + len(hex(2**64))


def _kind(head: bytes) -> str:
    for magic, kind in _KINDS:
        if head.startswith(magic):
            return kind
    return "zlib"


def scan_compressed(
    stream: BinaryIO, size: int | None, ctx: Ctx, head: bytes, recurse: Recurse
) -> list[Finding]:
    kind = _kind(head)
    if kind == "zfile":  # joblib < 0.10: "ZF" + hex length, then a zlib stream
        stream.read(_ZFILE_HEADER)
        kind = "zlib"
    if kind == "lz4" and not lz4_available():
        return [
            ctx.finding(
                "compressed.uninspected",
                Severity.HIGH,
                "LZ4-compressed content (joblib compress='lz4'), and the lz4 package is not "
                "installed: the content was not inspected",
            )
        ]
    inner = ctx.inside(f"{kind}-decompressed", nested=True)
    if inner.too_deep():
        return [
            inner.finding(
                "limit.depth", Severity.HIGH, "compressed content nested too deep; not inspected"
            )
        ]
    reader = buffered(inflater(kind, stream, ctx.budget))
    try:
        return recurse(reader, None, inner)
    except (zlib.error, lzma.LZMAError, OSError, EOFError) as exc:
        return [
            inner.finding(
                "compressed.corrupt",
                Severity.HIGH,
                f"{kind} stream cannot be decompressed ({exc}); its content was not inspected",
            )
        ]
    except LimitHit as hit:
        return [inner.limit_finding(hit)]
    except PickleBreak as exc:
        return [inner.finding("compressed.corrupt", Severity.HIGH, f"content broke: {exc}")]
