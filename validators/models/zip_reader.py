"""Read ZIP members the way PyTorch does, and notice everything a lenient reader skips over.

The central directory is read once, in one read, by a parser that gives exactly what
:mod:`zipfile` gives; any archive it is unsure of (a comment, a truncated or odd directory) is
handed to :mod:`zipfile` itself, so errors and edge cases stay :mod:`zipfile`'s. Each member's
local header is checked here with one positioned read, so that the tricks that make
:mod:`zipfile` raise (a local name that differs from the central one: CVE-2025-1944; flag bits
such as "encrypted" that loaders ignore: CVE-2025-1945; bad CRCs: CVE-2025-10156) become
findings while the content is still scanned. Nothing is extracted to disk; members are streamed
through a window or a bounded decompressor.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
from collections import Counter
from dataclasses import dataclass
from typing import BinaryIO

from custody.errors import ZipBroken
from custody.validators.models.context import Budget
from custody.validators.models.streams import Inflater, Window, buffered, inflater, zip_lzma

_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_END = struct.Struct("<4s4H2LH")
_END64_LOCATOR = struct.Struct("<4sLQL")
_END64 = struct.Struct("<4sQ2H2L4Q")
_EXTRA = struct.Struct("<HH")
_Q = struct.Struct("<Q")
_ODD_FLAGS = 0x0001 | 0x0020 | 0x0040 | 0x2000 | 0x0780 | 0x1000 | 0xC000
_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate",
            zipfile.ZIP_BZIP2: "bz2", zipfile.ZIP_LZMA: "lzma"}  # fmt: skip
_MAX_EXTRACT_VERSION = 63  # what zipfile accepts
_HEADER_READ = 512  # one read covers the local header, name, extra field and the first bytes


class Member:
    """One central-directory entry (the fields :class:`zipfile.ZipInfo` would hold)."""

    __slots__ = (
        "compress_size", "compress_type", "crc", "data_start", "file_size", "flag_bits",
        "header_offset", "name", "orig_name", "problems",
    )  # fmt: skip

    def __init__(
        self, orig_name: str, flag_bits: int, compress_type: int, crc: int,
        compress_size: int, file_size: int, header_offset: int,
    ) -> None:  # fmt: skip
        null = orig_name.find("\x00")  # zipfile: the name ends at the first NUL byte
        name = orig_name if null < 0 else orig_name[:null]
        if os.sep != "/" and os.sep in name:
            name = name.replace(os.sep, "/")
        self.name, self.orig_name, self.flag_bits = name, orig_name, flag_bits
        self.compress_type, self.crc = compress_type, crc
        self.compress_size, self.file_size, self.header_offset = (
            compress_size, file_size, header_offset,
        )  # fmt: skip
        self.problems: list[str] = []
        self.data_start = 0

    @property
    def stored(self) -> bool:
        return self.compress_type == zipfile.ZIP_STORED


@dataclass
class MemberStream:
    stream: BinaryIO
    size: int | None  # known (and seekable) only for stored members
    raw: Window | Inflater


def list_members(stream: BinaryIO) -> tuple[list[Member], list[str]]:
    """The central directory's members, plus archive-level problems (duplicates, overlaps)."""
    members = _read_directory(stream)
    if members is None:
        members = _zipfile_directory(stream)
    problems: list[str] = []
    counts = Counter(m.name for m in members)  # linear: no cap on the member count needed
    duplicates = sorted(n for n, c in counts.items() if c > 1)
    if duplicates:
        problems.append(f"duplicate member names (loaders pick one): {duplicates[:5]}")
    return members, problems


def _zipfile_directory(stream: BinaryIO) -> list[Member]:
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError,
            struct.error, IndexError, UnicodeDecodeError, zipfile.LargeZipFile) as exc:  # fmt: skip
        raise ZipBroken(f"central directory unreadable: {exc}") from None
    return [_from_info(info) for info in archive.infolist()]


def _from_info(i: zipfile.ZipInfo) -> Member:
    return Member(
        i.orig_filename, i.flag_bits, i.compress_type, i.CRC, i.compress_size, i.file_size,
        i.header_offset,
    )  # fmt: skip


def _read_directory(stream: BinaryIO) -> list[Member] | None:
    """zipfile's reading of the central directory, or None where zipfile must decide."""
    try:
        stream.seek(0, 2)
        filesize = stream.tell()
        if filesize < _END.size + _END64_LOCATOR.size + _END64.size:
            return None  # zipfile's seeks before the start behave differently per stream type
        stream.seek(filesize - _END.size)
        end = stream.read()
        if len(end) != _END.size or end[:4] != b"PK\x05\x06" or end[-2:] != b"\x00\x00":
            return None  # an archive comment, or not a zip at all
        _sig, _d, _ds, _n, _nt, size_cd, offset_cd, _c = _END.unpack(end)
        location = filesize - _END.size
        stream.seek(location - _END64_LOCATOR.size)
        locator = _END64_LOCATOR.unpack(stream.read(_END64_LOCATOR.size))
        concat = location - size_cd - offset_cd
        if locator[0] == b"PK\x06\x07":
            if locator[1] != 0 or locator[3] > 1:
                return None  # multi-disk: zipfile refuses it
            stream.seek(location - _END64_LOCATOR.size - _END64.size)
            end64 = _END64.unpack(stream.read(_END64.size))
            if end64[0] == b"PK\x06\x06":
                size_cd, offset_cd = end64[8], end64[9]
                concat = location - size_cd - offset_cd - _END64.size - _END64_LOCATOR.size
        if offset_cd + concat < 0:
            return None
        stream.seek(offset_cd + concat)
        return _parse_directory(stream.read(size_cd), size_cd, concat)
    except (OSError, ValueError, struct.error, UnicodeDecodeError):
        return None


def _parse_directory(data: bytes, size_cd: int, concat: int) -> list[Member] | None:
    members: list[Member] = []
    append, unpack, pos, n = members.append, _CENTRAL.unpack_from, 0, len(data)
    while pos < size_cd:
        if pos + _CENTRAL.size > n:
            return None
        (sig, _cv, _cs, extract_version, _r, flags, method, _t, _d, crc, csize, fsize, nlen,
         elen, clen, _v, _ia, _ea, offset) = unpack(data, pos)  # fmt: skip
        start = pos + _CENTRAL.size
        pos = start + nlen + elen + clen
        if sig != b"PK\x01\x02" or pos > n or extract_version > _MAX_EXTRACT_VERSION:
            return None
        raw_name = data[start : start + nlen]
        name = raw_name.decode("utf-8") if flags & 0x800 else raw_name.decode("cp437")
        if elen:
            sizes = _zip64_sizes(data[start + nlen : start + nlen + elen], fsize, csize, offset)
            if sizes is None:
                return None
            fsize, csize, offset = sizes
        append(Member(name, flags, method, crc, csize, fsize, offset + concat))
    return members


def _zip64_sizes(extra: bytes, fsize: int, csize: int, offset: int) -> tuple[int, int, int] | None:
    """ZipInfo._decodeExtra: a ZIP64 field replaces the sizes and offset saturated in the entry."""
    while len(extra) >= 4:
        kind, length = _EXTRA.unpack_from(extra)
        if length + 4 > len(extra):
            return None
        if kind == 1:
            data = extra[4 : length + 4]
            if fsize in (0xFFFF_FFFF_FFFF_FFFF, 0xFFFF_FFFF):
                if len(data) < 8:
                    return None
                fsize, data = _Q.unpack_from(data)[0], data[8:]
            if csize == 0xFFFF_FFFF:
                if len(data) < 8:
                    return None
                csize, data = _Q.unpack_from(data)[0], data[8:]
            if offset == 0xFFFF_FFFF:
                if len(data) < 8:
                    return None
                offset = _Q.unpack_from(data)[0]
        extra = extra[length + 4 :]
    return fsize, csize, offset


def file_descriptor(stream: BinaryIO) -> int | None:
    """The OS file of a plain opened file (positions are file offsets), for positioned reads."""
    raw = getattr(stream, "raw", None)
    return raw.fileno() if type(raw) is io.FileIO else None


def _pread(stream: BinaryIO, fd: int | None, offset: int, n: int) -> bytes:
    if fd is not None:
        return os.pread(fd, n, offset)
    stream.seek(offset)
    return stream.read(n)


def read_local_header(
    stream: BinaryIO, member: Member, *, sniff: int = 0, fd: int | None = None
) -> bytes:
    """Check the local header against the central directory; record mismatches on the member.

    Returns the member's first ``sniff`` stored bytes (fewer if it is shorter), read in the
    same positioned read as the header when they fit.
    """
    offset = member.header_offset
    if offset < 0:
        raise ZipBroken(f"member {member.name!r}: negative header offset")
    raw = _pread(stream, fd, offset, _HEADER_READ)
    if len(raw) < _LOCAL.size:
        raise ZipBroken(f"member {member.name!r}: local header truncated")
    sig, _ver, flags, method, _t, _d, _crc, _cs, _us, nlen, elen = _LOCAL.unpack_from(raw)
    if sig != b"PK\x03\x04":
        raise ZipBroken(f"member {member.name!r}: no local header at offset {offset}")
    data_at = _LOCAL.size + nlen + elen
    take = min(sniff, member.compress_size)
    if len(raw) == _HEADER_READ and data_at + take > _HEADER_READ:
        raw = _pread(stream, fd, offset, data_at + take)
    local_name = raw[_LOCAL.size : _LOCAL.size + nlen].decode(
        "utf-8" if flags & 0x800 else "cp437", "replace"
    )
    member.data_start = offset + data_at
    if local_name != member.orig_name:
        member.problems.append(
            f"local header names {local_name!r} but the central directory says "
            f"{member.orig_name!r} (CVE-2025-1944 evasion)"
        )
    odd = (member.flag_bits | flags) & _ODD_FLAGS
    if odd:
        member.problems.append(
            f"flag bits 0x{odd:04x} set (encryption/patch/reserved) that PyTorch ignores "
            "(CVE-2025-1945 evasion); content read as if they were clear"
        )
    if method != member.compress_type:
        member.problems.append(
            f"compression method {method} in the local header, {member.compress_type} in the "
            "central directory; the central one is used"
        )
    if not member.name.isprintable():
        member.problems.append("member name has control or non-printable characters")
    return raw[data_at : data_at + take]


def open_member(stream: BinaryIO, member: Member, budget: Budget) -> MemberStream:
    """A stream of the member's content (central-directory method and sizes)."""
    window = Window(stream, member.data_start, member.compress_size)
    method = _METHODS.get(member.compress_type)
    if method is None:
        raise ZipBroken(f"member {member.name!r}: unsupported compression {member.compress_type}")
    if method == "stored":
        if member.file_size != member.compress_size:
            member.problems.append("stored member with different compressed and full sizes")
        return MemberStream(buffered(window), member.compress_size, window)
    source = buffered(window)
    raw = (
        zip_lzma(source, budget, member.compress_size)
        if method == "lzma"
        else inflater(method, source, budget, member.compress_size)
    )
    return MemberStream(buffered(raw), None, raw)


def crc_problem(member: Member, opened: MemberStream) -> str | None:
    """A CRC mismatch message when the whole member was read in order; else None."""
    raw = opened.raw
    crc = raw.crc_if_complete() if isinstance(raw, Window) else (raw.crc if raw.done else None)
    if crc is None or crc == member.crc:
        return None
    return (
        f"CRC mismatch (stored 0x{member.crc:08x}, content 0x{crc:08x}); PyTorch loads it "
        "anyway (CVE-2025-10156 evasion)"
    )
