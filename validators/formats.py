"""Format detection by content (magic bytes and structure), never by file extension."""

from __future__ import annotations

import enum

HEAD_BYTES = 64


class FileFormat(enum.StrEnum):
    PICKLE = "pickle"
    ZIP = "zip"
    PARQUET = "parquet"
    NUMPY = "numpy"
    HDF5 = "hdf5"
    SEVEN_ZIP = "7z"
    GZIP = "gzip"
    BZIP2 = "bzip2"
    XZ = "xz"
    GGUF = "gguf"
    SAFETENSORS = "safetensors"
    TEXT = "text"
    EMPTY = "empty"
    UNKNOWN = "unknown"


_MAGIC: tuple[tuple[bytes, FileFormat], ...] = (
    (b"PK\x03\x04", FileFormat.ZIP),
    (b"PK\x05\x06", FileFormat.ZIP),
    (b"PAR1", FileFormat.PARQUET),
    (b"\x93NUMPY", FileFormat.NUMPY),
    (b"\x89HDF\r\n\x1a\n", FileFormat.HDF5),
    (b"7z\xbc\xaf\x27\x1c", FileFormat.SEVEN_ZIP),
    (b"\x1f\x8b", FileFormat.GZIP),
    (b"BZh", FileFormat.BZIP2),
    (b"\xfd7zXZ\x00", FileFormat.XZ),
    (b"GGUF", FileFormat.GGUF),
)

# Opcodes that can start a protocol 0/1 pickle: MARK, GLOBAL, INST, PERSID, list/dict/tuple
# builders and the simple constants. Text files start with these too, so protocol 0/1 needs a
# second look: a pickle ends with STOP (b".").
_P0_START = frozenset(b"(cipI]}).NFLSVGJKM")


def _looks_like_safetensors(head: bytes) -> bool:
    """An 8-byte little-endian header length, then a JSON object. Any length: one that is
    larger than the file (an allocation bomb for loaders) is the scanner's finding to make."""
    if len(head) < 10:
        return False
    header_len = int.from_bytes(head[:8], "little")
    return header_len >= 2 and head[8:9] == b"{" and head[9:10] in (b'"', b"}", b" ", b"\n")


def detect(head: bytes) -> FileFormat:
    """Name the format of a file from its first bytes."""
    if not head:
        return FileFormat.EMPTY
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    if head[0] == 0x80 and len(head) > 1 and 2 <= head[1] <= 5:
        return FileFormat.PICKLE
    if _looks_like_safetensors(head):
        return FileFormat.SAFETENSORS
    if head[0] in _P0_START and _protocol0_plausible(head):
        return FileFormat.PICKLE
    if _is_text(head):
        return FileFormat.TEXT
    return FileFormat.UNKNOWN


def _protocol0_plausible(head: bytes) -> bool:
    # "c<module>\n<name>\n" is the classic GLOBAL start of a protocol 0 pickle.
    if head[:1] == b"c" and head.count(b"\n") >= 2:
        module = head[1 : head.index(b"\n")]
        return bool(module) and all(chr(b).isidentifier() or b == ord(".") for b in module)
    return head[:1] in (b"(", b"]", b"}", b")") and len(head) < HEAD_BYTES and head.endswith(b".")


def is_text(head: bytes) -> bool:
    """UTF-8 without NUL bytes (a multi-byte character may be cut at the end of ``head``)."""
    return _is_text(head)


def _is_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        # A multi-byte character may be cut at the end of the head.
        try:
            head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return b"\x00" not in head


class ExtraFormat(enum.StrEnum):
    """Formats recognised by the model scanner beyond :class:`FileFormat` (structure checks)."""

    TAR = "tar"
    LZMA = "lzma"
    ZLIB = "zlib"
    ONNX = "onnx"
    JOBLIB_ZF = "joblib-zfile"
    LZ4 = "lz4"


_ONNX_NEXT_TAGS = frozenset({0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x4A, 0x52, 0x5A, 0x62})


def is_tar_header(head: bytes) -> bool:
    """A first 512-byte block that :mod:`tarfile` (and so ``torch.load``'s legacy tar reader)
    accepts: its checksum field matches, whatever the magic (v7, ustar, GNU and PAX tars)."""
    if len(head) < 512 or not head[:512].strip(b"\x00"):
        return False
    block = head[:512]
    field = block[148:156]
    try:
        if field[0] & 0x80:
            stored = int.from_bytes(field[1:], "big")
        else:
            stored = int(field.split(b"\x00", 1)[0].strip() or b"0", 8)
    except ValueError:
        return False
    rest = block[:148] + b" " * 8 + block[156:]
    unsigned = sum(rest)
    signed = sum(b - 256 if b > 127 else b for b in rest)
    return stored in (unsigned, signed)


def detect_extra(head: bytes) -> ExtraFormat | None:
    """Formats that need more than a fixed magic: tar (by its header checksum), raw LZMA, zlib,
    ONNX; and
    LZ4 frames, which :func:`detect` leaves to the model scanner."""
    if is_tar_header(head):
        return ExtraFormat.TAR
    if head.startswith(b"\x5d\x00\x00") and len(head) >= 13:
        return ExtraFormat.LZMA
    if len(head) >= 2 and head[0] == 0x78 and head[1] in (0x01, 0x5E, 0x9C, 0xDA):
        return ExtraFormat.ZLIB
    if head.startswith(b"ZF0x"):
        return ExtraFormat.JOBLIB_ZF
    if head.startswith(b"\x04\x22\x4d\x18"):  # LZ4 frame (joblib compress="lz4")
        return ExtraFormat.LZ4
    if len(head) >= 3 and head[0] == 0x08 and 1 <= head[1] <= 30 and head[2] in _ONNX_NEXT_TAGS:
        return ExtraFormat.ONNX
    return None
