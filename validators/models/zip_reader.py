"""Read ZIP members the way PyTorch does, and notice everything a lenient reader skips over.

The central directory is read with :mod:`zipfile`; each member's local header and data are read
here, so that the tricks that make :mod:`zipfile` raise (a local name that differs from the
central one: CVE-2025-1944; flag bits such as "encrypted" that loaders ignore: CVE-2025-1945;
bad CRCs: CVE-2025-10156) become findings while the content is still scanned. Nothing is
extracted to disk; members are streamed through a window or a bounded decompressor.
"""

from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass, field
from typing import BinaryIO

from custody.validators.models.context import Budget
from custody.validators.models.streams import Inflater, Window, buffered, inflater, zip_lzma

_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_ODD_FLAGS = 0x0001 | 0x0020 | 0x0040 | 0x2000 | 0x0780 | 0x1000 | 0xC000
_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate",
            zipfile.ZIP_BZIP2: "bz2", zipfile.ZIP_LZMA: "lzma"}  # fmt: skip


class ZipBroken(Exception):
    """The archive or a member cannot be read at all."""


@dataclass
class Member:
    info: zipfile.ZipInfo
    problems: list[str] = field(default_factory=list)
    data_start: int = 0

    @property
    def name(self) -> str:
        return self.info.filename

    @property
    def stored(self) -> bool:
        return self.info.compress_type == zipfile.ZIP_STORED


@dataclass
class MemberStream:
    stream: BinaryIO
    size: int | None  # known (and seekable) only for stored members
    raw: Window | Inflater


def list_members(stream: BinaryIO) -> tuple[list[Member], list[str]]:
    """The central directory's members, plus archive-level problems (duplicates, overlaps)."""
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError,
            struct.error, IndexError, UnicodeDecodeError, zipfile.LargeZipFile) as exc:  # fmt: skip
        raise ZipBroken(f"central directory unreadable: {exc}") from None
    members = [Member(info) for info in archive.infolist()]
    problems: list[str] = []
    names = [m.name for m in members]
    duplicates = sorted({n for n in names if names.count(n) > 1}) if len(names) < 5000 else []
    if duplicates:
        problems.append(f"duplicate member names (loaders pick one): {duplicates[:5]}")
    return members, problems


def read_local_header(stream: BinaryIO, member: Member) -> None:
    """Check the local header against the central directory; record mismatches on the member."""
    info = member.info
    if info.header_offset < 0:
        raise ZipBroken(f"member {info.filename!r}: negative header offset")
    stream.seek(info.header_offset)
    raw = stream.read(_LOCAL.size)
    if len(raw) != _LOCAL.size:
        raise ZipBroken(f"member {info.filename!r}: local header truncated")
    sig, _ver, flags, method, _t, _d, _crc, _cs, _us, nlen, elen = _LOCAL.unpack(raw)
    if sig != b"PK\x03\x04":
        raise ZipBroken(f"member {info.filename!r}: no local header at offset {info.header_offset}")
    local_raw = stream.read(nlen)
    encoding = "utf-8" if flags & 0x800 else "cp437"
    local_name = local_raw.decode(encoding, "replace")
    member.data_start = info.header_offset + _LOCAL.size + nlen + elen
    if local_name != info.orig_filename:
        member.problems.append(
            f"local header names {local_name!r} but the central directory says "
            f"{info.orig_filename!r} (CVE-2025-1944 evasion)"
        )
    odd = (info.flag_bits | flags) & _ODD_FLAGS
    if odd:
        member.problems.append(
            f"flag bits 0x{odd:04x} set (encryption/patch/reserved) that PyTorch ignores "
            "(CVE-2025-1945 evasion); content read as if they were clear"
        )
    if method != info.compress_type:
        member.problems.append(
            f"compression method {method} in the local header, {info.compress_type} in the "
            "central directory; the central one is used"
        )
    if not info.filename.isprintable():
        member.problems.append("member name has control or non-printable characters")


def open_member(stream: BinaryIO, member: Member, budget: Budget) -> MemberStream:
    """A stream of the member's content (central-directory method and sizes)."""
    info = member.info
    window = Window(stream, member.data_start, info.compress_size)
    method = _METHODS.get(info.compress_type)
    if method is None:
        raise ZipBroken(f"member {info.filename!r}: unsupported compression {info.compress_type}")
    if method == "stored":
        if info.file_size != info.compress_size:
            member.problems.append("stored member with different compressed and full sizes")
        return MemberStream(buffered(window), info.compress_size, window)
    source = buffered(window)
    raw = (
        zip_lzma(source, budget, info.compress_size)
        if method == "lzma"
        else inflater(method, source, budget, info.compress_size)
    )
    return MemberStream(buffered(raw), None, raw)


def crc_problem(member: Member, opened: MemberStream) -> str | None:
    """A CRC mismatch message when the whole member was read in order; else None."""
    raw = opened.raw
    crc = raw.crc_if_complete() if isinstance(raw, Window) else (raw.crc if raw.done else None)
    if crc is None or crc == member.info.CRC:
        return None
    return (
        f"CRC mismatch (stored 0x{member.info.CRC:08x}, content 0x{crc:08x}); PyTorch loads it "
        "anyway (CVE-2025-10156 evasion)"
    )
