"""Route bytes to the analysis for their format, decided by content, never by name.

Used for top-level files and, recursively, for archive members, decompressed streams and nested
payloads. ``size`` is the content length when the stream can seek; ``None`` means a forward-only
stream (a decompressor), which formats that need seeking first copy into bounded memory.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import BinaryIO

from custody.errors import LimitHit, PickleBreak
from custody.validators.findings import Finding, Severity
from custody.validators.formats import ExtraFormat, FileFormat, detect, detect_extra
from custody.validators.models import (
    archive_formats,
    compressed,
    keras_config,
    numpy_scan,
    onnx_scan,
    pickle_file,
    structured,
    zip_scan,
)
from custody.validators.models.context import Ctx
from custody.validators.models.pickle_vm import PickleMachine

SNIFF_BYTES = 512
_MAX_IN_MEMORY = 256 << 20

Handler = Callable[[BinaryIO, "int | None", Ctx, bytes], list[Finding]]


def peek(stream: BinaryIO, size: int | None, n: int = SNIFF_BYTES) -> bytes:
    """The first bytes, leaving the stream where it was (needs seek or a BufferedReader)."""
    if size is not None:
        here = stream.tell()
        head = stream.read(n)
        stream.seek(here)
        return head
    if isinstance(stream, io.BufferedReader):
        return stream.peek(n)[:n]
    raise TypeError("a forward-only stream must be an io.BufferedReader to be sniffed")


def sniff(head: bytes) -> FileFormat | ExtraFormat:
    fmt = detect(head)
    if fmt is FileFormat.SAFETENSORS or fmt is FileFormat.EMPTY:
        return fmt
    extra = detect_extra(head)
    if extra is not None and fmt in (FileFormat.UNKNOWN, FileFormat.TEXT):
        return extra
    if extra is ExtraFormat.TAR:
        return extra
    if fmt in (FileFormat.TEXT, FileFormat.UNKNOWN) and _looks_like_pickle(head):
        return FileFormat.PICKLE
    return fmt


def _looks_like_pickle(head: bytes) -> bool:
    """Protocol 0/1 pickles have no magic: run the symbolic machine over the first bytes."""
    from custody.validators.interface import ScanLimits
    from custody.validators.models.context import Budget

    machine = PickleMachine(io.BytesIO(head), Budget.start(ScanLimits()), size=len(head))
    result = machine.run()
    if result.stopped:
        return result.ops >= 2
    error = result.error
    truncated = isinstance(error, PickleBreak) and str(error).startswith("truncated")
    names_ok = any(g.module.replace(".", "").replace("_", "").isalnum() for g in result.globals)
    return truncated and result.ops >= 4 and names_ok


def scan_content(stream: BinaryIO, size: int | None, ctx: Ctx) -> list[Finding]:
    """Scan one piece of content of any supported format."""
    if ctx.budget.exhausted:
        return []
    try:
        return _scan(stream, size, ctx)
    except (OSError, EOFError) as exc:
        return [
            ctx.finding(
                "content.unreadable",
                Severity.HIGH,
                f"content cannot be read to the end ({exc}); not a pass",
            )
        ]
    except LimitHit as hit:
        return [ctx.limit_finding(hit)]


def _scan(stream: BinaryIO, size: int | None, ctx: Ctx) -> list[Finding]:
    head = peek(stream, size)
    fmt = sniff(head)
    if fmt in _NEEDS_SEEK and size is None:
        data = stream.read(_MAX_IN_MEMORY + 1)
        if len(data) > _MAX_IN_MEMORY:
            return [
                ctx.finding(
                    "limit.memory",
                    Severity.HIGH,
                    f"{fmt} content inside a compressed stream is larger than "
                    f"{_MAX_IN_MEMORY} bytes and was not inspected",
                )
            ]
        stream, size = io.BytesIO(data), len(data)
    handler = _HANDLERS.get(fmt)
    if handler is None:
        return _unhandled(fmt, ctx)
    return handler(stream, size, ctx, head)


def _unhandled(fmt: FileFormat | ExtraFormat, ctx: Ctx) -> list[Finding]:
    if fmt in (FileFormat.TEXT, FileFormat.EMPTY, FileFormat.PARQUET):
        return []
    return [
        ctx.finding(
            "format.unknown",
            Severity.INFO,
            f"unrecognised binary content ({fmt}); it is not a pickle or archive we know, "
            "and was not inspected further",
        )
    ]


def _zip(stream: BinaryIO, size: int | None, ctx: Ctx, head: bytes) -> list[Finding]:
    assert size is not None  # noqa: S101 - guaranteed by _NEEDS_SEEK
    return zip_scan.scan_zip(stream, size, ctx, scan_content)


def _compressed(stream: BinaryIO, size: int | None, ctx: Ctx, head: bytes) -> list[Finding]:
    return compressed.scan_compressed(stream, size, ctx, head, scan_content)


def _tar(stream: BinaryIO, size: int | None, ctx: Ctx, head: bytes) -> list[Finding]:
    return archive_formats.scan_tar(stream, size, ctx, scan_content)


_NEEDS_SEEK = frozenset(
    {FileFormat.ZIP, FileFormat.HDF5, FileFormat.SAFETENSORS, FileFormat.GGUF, ExtraFormat.ONNX}
)

_HANDLERS: dict[FileFormat | ExtraFormat, Handler] = {
    FileFormat.PICKLE: pickle_file.scan_pickle_content,
    FileFormat.ZIP: _zip,
    FileFormat.NUMPY: numpy_scan.scan_npy,
    FileFormat.GZIP: _compressed,
    FileFormat.BZIP2: _compressed,
    FileFormat.XZ: _compressed,
    ExtraFormat.LZMA: _compressed,
    ExtraFormat.ZLIB: _compressed,
    ExtraFormat.JOBLIB_ZF: _compressed,
    ExtraFormat.TAR: _tar,
    FileFormat.SEVEN_ZIP: archive_formats.scan_7z,
    FileFormat.HDF5: keras_config.scan_hdf5,
    FileFormat.SAFETENSORS: structured.scan_safetensors,
    FileFormat.GGUF: structured.scan_gguf,
    ExtraFormat.ONNX: onnx_scan.scan_onnx,
}
