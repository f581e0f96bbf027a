"""Route bytes to the analysis for their format, decided by content, never by name.

Used for top-level files and, recursively, for archive members, decompressed streams and nested
payloads. ``size`` is the content length when the stream can seek; ``None`` means a forward-only
stream (a decompressor), which formats that need seeking first copy into bounded memory.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from typing import BinaryIO

from custody.errors import LimitHit, PickleBreak
from custody.validators.findings import Finding, Severity
from custody.validators.formats import ExtraFormat, FileFormat, detect, detect_extra, is_tar_header
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


def _peek(stream: BinaryIO, size: int | None, n: int = SNIFF_BYTES) -> bytes:
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
    """The format loaders would read: zip by its first local header, then a tar by its header
    checksum (``torch.load``'s order), then the magic numbers and structures of the rest."""
    fmt = detect(head)
    if fmt is FileFormat.EMPTY or fmt is FileFormat.ZIP:
        return fmt
    if is_tar_header(head):
        return ExtraFormat.TAR
    if fmt is FileFormat.SAFETENSORS:
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
    head = _peek(stream, size)
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
    findings = _unhandled(fmt, ctx) if handler is None else handler(stream, size, ctx, head)
    if size is not None and fmt is not FileFormat.ZIP and not ctx.budget.exhausted:
        findings.extend(_zip_behind(stream, size, ctx, fmt))
    return findings


def _zip_behind(
    stream: BinaryIO, size: int, ctx: Ctx, fmt: FileFormat | ExtraFormat
) -> list[Finding]:
    """A zip archive after foreign bytes: zipfile (and so Keras, numpy's .npz reader) finds it
    from its end and opens it; its members are scanned like any zip's."""
    stream.seek(0)
    if not zipfile.is_zipfile(stream):
        return []
    stream.seek(0)
    return [
        ctx.finding(
            "zip.prefixed",
            Severity.MEDIUM,
            f"a zip archive follows {fmt} content: zipfile, Keras and numpy open it from its "
            "end, torch.load does not; its members are scanned too",
        ),
        *zip_scan.scan_zip(stream, size, ctx, scan_content),
    ]


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
    findings = archive_formats.scan_tar(stream, size, ctx, scan_content)
    if size is not None and head[:1] == b"\x80" and 2 <= head[1] <= 5:  # also a pickle
        stream.seek(0)
        findings.append(ctx.finding(
            "format.polyglot", Severity.MEDIUM,
            "content is both a tar archive (torch.load reads it so) and a pickle (pickle.load "
            "reads it so): both are scanned"))
        findings.extend(pickle_file.scan_pickle_content(stream, size, ctx, head))
    return findings


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
    ExtraFormat.LZ4: _compressed,
    ExtraFormat.TAR: _tar,
    FileFormat.SEVEN_ZIP: archive_formats.scan_7z,
    FileFormat.HDF5: keras_config.scan_hdf5,
    FileFormat.SAFETENSORS: structured.scan_safetensors,
    FileFormat.GGUF: structured.scan_gguf,
    ExtraFormat.ONNX: onnx_scan.scan_onnx,
}
