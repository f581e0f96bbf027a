"""Bounded byte streams: a window on a seekable file, and decompressors that count their output.

Every decompressed byte is charged to the file's :class:`Budget` (total bytes) and checked against
the compression-ratio limit, so a bomb stops with a finding instead of filling memory. A CRC is
kept while a member is read front to back, so a bad CRC is reported without refusing to read
(PyTorch ignores CRCs; a scanner that stops at a bad CRC would be blind: CVE-2025-10156).
"""

from __future__ import annotations

import bz2
import io
import lzma
import zlib
from collections.abc import Callable
from typing import BinaryIO, Protocol

from custody.errors import CorruptStream, LimitHit
from custody.validators.models.context import Budget

_CHUNK = 1 << 16


class _Decompressor(Protocol):
    @property
    def eof(self) -> bool: ...

    def decompress(self, data: bytes, max_length: int = ...) -> bytes: ...


class Window(io.RawIOBase):
    """Bytes ``[start, start + length)`` of ``base`` as a seekable stream."""

    def __init__(self, base: BinaryIO, start: int, length: int) -> None:
        super().__init__()
        self.base, self.start, self.length, self.pos = base, start, length, 0
        self.crc = 0
        self.crc_pos = 0  # the CRC covers bytes [0, crc_pos) read in order

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.length}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self.length - self.pos)
        if n <= 0:
            return 0
        self.base.seek(self.start + self.pos)
        data = self.base.read(n)
        buffer[: len(data)] = data
        if self.pos == self.crc_pos:
            self.crc = zlib.crc32(data, self.crc)
            self.crc_pos += len(data)
        self.pos += len(data)
        return len(data)

    def crc_if_complete(self) -> int | None:
        return self.crc if self.crc_pos == self.length else None


class Inflater(io.RawIOBase):
    """A forward-only decompressing stream over ``source`` with budget and ratio checks."""

    def __init__(
        self,
        source: BinaryIO,
        decompressor: _Decompressor,
        budget: Budget,
        *,
        max_input: int | None = None,
        restart: Callable[[], _Decompressor] | None = None,
    ) -> None:
        super().__init__()
        self.source, self.dec, self.budget = source, decompressor, budget
        self.left = max_input
        self.restart = restart  # gzip and bz2 files may hold several members back to back
        self.pending = b""
        self.consumed = 0
        self.produced = 0
        self.crc = 0
        self.done = False

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.produced

    def _feed(self) -> bytes:
        if self.pending:
            data, self.pending = self.pending, b""
            return data
        want = _CHUNK if self.left is None else min(_CHUNK, self.left)
        data = self.source.read(want) if want > 0 else b""
        if self.left is not None:
            self.left -= len(data)
        self.consumed += len(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self.done:
            if self.dec.eof:
                rest = getattr(self.dec, "unused_data", b"")
                if self.restart is None or not (rest or self._more()):
                    self.done = True
                    break
                self.dec, self.pending = self.restart(), rest or self.pending
                continue
            wants = getattr(self.dec, "needs_input", True)
            data = self._feed() if wants else b""
            if wants and not data:
                self.done = True
                break
            try:
                out = self.dec.decompress(data, len(buffer))
            except (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError) as exc:
                raise CorruptStream(f"compressed data is corrupt: {exc}") from None
            tail = getattr(self.dec, "unconsumed_tail", b"")
            self.pending = tail + self.pending if tail else self.pending
            if out:
                return self._emit(out, buffer)
        return 0

    def _more(self) -> bool:
        self.pending = self._feed()
        return bool(self.pending)

    def _emit(self, out: bytes, buffer: bytearray | memoryview) -> int:
        self.budget.add_decompressed(len(out))
        self.produced += len(out)
        self.crc = zlib.crc32(out, self.crc)
        limit = self.budget.limits.max_compression_ratio
        if self.produced > (1 << 20) and self.produced > limit * max(self.consumed, 1):
            self.budget.exhausted = True
            raise LimitHit(
                "limit.ratio",
                f"compression ratio above {limit:g} ({self.produced} bytes from {self.consumed})",
            )
        buffer[: len(out)] = out
        return len(out)


class _MaxLenWrapper:
    """bz2 and lzma decompressors keep unconsumed input internally; give them one interface."""

    def __init__(self, dec: bz2.BZ2Decompressor | lzma.LZMADecompressor) -> None:
        self.inner = dec

    @property
    def eof(self) -> bool:
        return self.inner.eof

    @property
    def unused_data(self) -> bytes:
        return self.inner.unused_data

    @property
    def needs_input(self) -> bool:
        return self.inner.needs_input

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        return self.inner.decompress(data, max_length)


def buffered(raw: io.RawIOBase) -> io.BufferedReader:
    return io.BufferedReader(raw, _CHUNK)


def inflater(kind: str, source: BinaryIO, budget: Budget, max_input: int | None = None) -> Inflater:
    """A decompressing stream for ``kind``: deflate (raw), zlib, gzip, bz2, xz, lzma-alone, lz4
    (frames, through the ``lz4`` package: see :func:`lz4_available`)."""
    factories: dict[str, Callable[[], _Decompressor]] = {
        "deflate": lambda: zlib.decompressobj(-15),
        "zlib": lambda: zlib.decompressobj(15),
        "gzip": lambda: zlib.decompressobj(31),
        "bz2": lambda: _MaxLenWrapper(bz2.BZ2Decompressor()),
        "xz": lambda: _MaxLenWrapper(lzma.LZMADecompressor(lzma.FORMAT_XZ)),
        "lzma": lambda: _MaxLenWrapper(lzma.LZMADecompressor(lzma.FORMAT_ALONE)),
    }
    if kind == "lz4":
        factories["lz4"] = _lz4_factory()
    make = factories[kind]
    restart = make if kind in ("gzip", "bz2", "xz", "lz4") else None
    return Inflater(source, make(), budget, max_input=max_input, restart=restart)


def lz4_available() -> bool:
    try:
        import lz4.frame  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        return False
    return True


def _lz4_factory() -> Callable[[], _Decompressor]:
    import lz4.frame

    return lz4.frame.LZ4FrameDecompressor  # type: ignore[no-any-return]


def zip_lzma(source: BinaryIO, budget: Budget, max_input: int) -> Inflater:
    """ZIP method 14: a 4-byte LZMA SDK header and properties, then raw LZMA1 data."""
    header = source.read(4)
    props_size = int.from_bytes(header[2:4], "little")
    props = source.read(props_size)
    filters = [lzma._decode_filter_properties(lzma.FILTER_LZMA1, props)]  # type: ignore[attr-defined]
    dec = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=filters)
    return Inflater(source, _MaxLenWrapper(dec), budget, max_input=max_input - 4 - props_size)
