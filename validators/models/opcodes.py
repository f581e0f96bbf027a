"""The pickle opcode table and the readers for opcode arguments (protocols 0-5).

This is a decoder only: it turns bytes into ``(opcode, argument)`` pairs the way CPython's
unpickler reads them, and raises :class:`PickleBreak` where the unpickler would fail to read.
Large byte strings are not read into memory: they become :class:`BytesRef` (offset and length)
so that the cost of a scan grows with the pickle stream, not with the tensor bytes inside it.
"""

from __future__ import annotations

import codecs
import enum
import struct
from dataclasses import dataclass
from typing import BinaryIO

from custody.errors import PickleBreak

_MAX_LINE = 1 << 16  # protocol 0 text arguments longer than this are treated as malformed
INLINE_BYTES = 1 << 20  # byte strings up to this size are kept; longer ones become BytesRef


class Arg(enum.Enum):
    NONE = enum.auto()
    U1 = enum.auto()
    U2 = enum.auto()
    S4 = enum.auto()
    U4 = enum.auto()
    U8 = enum.auto()
    F8 = enum.auto()
    LINE_INT = enum.auto()
    LINE_FLOAT = enum.auto()
    LINE_ASCII = enum.auto()
    LINE_UNICODE = enum.auto()
    LINE_QUOTED = enum.auto()
    TWO_LINES = enum.auto()
    BYTES1 = enum.auto()
    BYTES4 = enum.auto()
    BYTES8 = enum.auto()
    STR1 = enum.auto()
    STR4 = enum.auto()
    UNICODE1 = enum.auto()
    UNICODE4 = enum.auto()
    UNICODE8 = enum.auto()
    LONG1 = enum.auto()
    LONG4 = enum.auto()


# name -> (code byte, argument kind)
_OPCODES: dict[str, tuple[int, Arg]] = {
    "MARK": (ord("("), Arg.NONE),
    "STOP": (ord("."), Arg.NONE),
    "POP": (ord("0"), Arg.NONE),
    "POP_MARK": (ord("1"), Arg.NONE),
    "DUP": (ord("2"), Arg.NONE),
    "FLOAT": (ord("F"), Arg.LINE_FLOAT),
    "INT": (ord("I"), Arg.LINE_INT),
    "BININT": (ord("J"), Arg.S4),
    "BININT1": (ord("K"), Arg.U1),
    "LONG": (ord("L"), Arg.LINE_INT),
    "BININT2": (ord("M"), Arg.U2),
    "NONE": (ord("N"), Arg.NONE),
    "PERSID": (ord("P"), Arg.LINE_ASCII),
    "BINPERSID": (ord("Q"), Arg.NONE),
    "REDUCE": (ord("R"), Arg.NONE),
    "STRING": (ord("S"), Arg.LINE_QUOTED),
    "BINSTRING": (ord("T"), Arg.STR4),
    "SHORT_BINSTRING": (ord("U"), Arg.STR1),
    "UNICODE": (ord("V"), Arg.LINE_UNICODE),
    "BINUNICODE": (ord("X"), Arg.UNICODE4),
    "APPEND": (ord("a"), Arg.NONE),
    "BUILD": (ord("b"), Arg.NONE),
    "GLOBAL": (ord("c"), Arg.TWO_LINES),
    "DICT": (ord("d"), Arg.NONE),
    "EMPTY_DICT": (ord("}"), Arg.NONE),
    "APPENDS": (ord("e"), Arg.NONE),
    "GET": (ord("g"), Arg.LINE_INT),
    "BINGET": (ord("h"), Arg.U1),
    "INST": (ord("i"), Arg.TWO_LINES),
    "LONG_BINGET": (ord("j"), Arg.U4),
    "LIST": (ord("l"), Arg.NONE),
    "EMPTY_LIST": (ord("]"), Arg.NONE),
    "OBJ": (ord("o"), Arg.NONE),
    "PUT": (ord("p"), Arg.LINE_INT),
    "BINPUT": (ord("q"), Arg.U1),
    "LONG_BINPUT": (ord("r"), Arg.U4),
    "SETITEM": (ord("s"), Arg.NONE),
    "TUPLE": (ord("t"), Arg.NONE),
    "EMPTY_TUPLE": (ord(")"), Arg.NONE),
    "SETITEMS": (ord("u"), Arg.NONE),
    "BINFLOAT": (ord("G"), Arg.F8),
    "PROTO": (0x80, Arg.U1),
    "NEWOBJ": (0x81, Arg.NONE),
    "EXT1": (0x82, Arg.U1),
    "EXT2": (0x83, Arg.U2),
    "EXT4": (0x84, Arg.S4),
    "TUPLE1": (0x85, Arg.NONE),
    "TUPLE2": (0x86, Arg.NONE),
    "TUPLE3": (0x87, Arg.NONE),
    "NEWTRUE": (0x88, Arg.NONE),
    "NEWFALSE": (0x89, Arg.NONE),
    "LONG1": (0x8A, Arg.LONG1),
    "LONG4": (0x8B, Arg.LONG4),
    "BINBYTES": (ord("B"), Arg.BYTES4),
    "SHORT_BINBYTES": (ord("C"), Arg.BYTES1),
    "SHORT_BINUNICODE": (0x8C, Arg.UNICODE1),
    "BINUNICODE8": (0x8D, Arg.UNICODE8),
    "BINBYTES8": (0x8E, Arg.BYTES8),
    "EMPTY_SET": (0x8F, Arg.NONE),
    "ADDITEMS": (0x90, Arg.NONE),
    "FROZENSET": (0x91, Arg.NONE),
    "NEWOBJ_EX": (0x92, Arg.NONE),
    "STACK_GLOBAL": (0x93, Arg.NONE),
    "MEMOIZE": (0x94, Arg.NONE),
    "FRAME": (0x95, Arg.U8),
    "BYTEARRAY8": (0x96, Arg.BYTES8),
    "NEXT_BUFFER": (0x97, Arg.NONE),
    "READONLY_BUFFER": (0x98, Arg.NONE),
}

BY_CODE: dict[int, tuple[str, Arg]] = {
    code: (name, kind) for name, (code, kind) in _OPCODES.items()}


@dataclass(frozen=True, slots=True)
class BytesRef:
    """A byte string too large to keep: where it is in the stream and how long it is."""

    offset: int
    length: int


def read_exact(stream: BinaryIO, n: int, pos: int, what: str) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise PickleBreak(f"truncated: {what} needs {n} bytes, {len(data)} left", pos)
    return data


def _line(stream: BinaryIO, pos: int) -> bytes:
    line = stream.readline(_MAX_LINE)
    if not line.endswith(b"\n"):
        if len(line) >= _MAX_LINE:
            raise PickleBreak("protocol 0 argument line too long", pos)
        raise PickleBreak("truncated: text argument without newline", pos)
    return line[:-1]


def _skip(stream: BinaryIO, n: int, pos: int, size: int | None) -> BytesRef:
    start = stream.tell()
    if size is not None:
        if start + n > size:
            raise PickleBreak(f"truncated: byte string of {n} bytes runs past the end", pos)
        stream.seek(n, 1)
        return BytesRef(start, n)
    left = n
    while left:
        chunk = stream.read(min(left, 1 << 20))
        if not chunk:
            raise PickleBreak(f"truncated: byte string of {n} bytes runs past the end", pos)
        left -= len(chunk)
    return BytesRef(start, n)


def _bytes(stream: BinaryIO, n: int, pos: int, size: int | None) -> bytes | BytesRef:
    if n < 0:
        raise PickleBreak("negative byte count", pos)
    if n > INLINE_BYTES:
        return _skip(stream, n, pos, size)
    return read_exact(stream, n, pos, "byte string")


def _text(raw: bytes | BytesRef, pos: int) -> str:
    if isinstance(raw, BytesRef):
        return f"<{raw.length} characters not kept>"
    try:
        return raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError as exc:
        raise PickleBreak(f"invalid UTF-8 in unicode string: {exc.reason}", pos) from None


def _quoted(line: bytes, pos: int) -> str:
    if len(line) >= 2 and line[0] == line[-1] and line[:1] in (b"'", b'"'):
        body = line[1:-1]
    else:
        raise PickleBreak("STRING argument is not quoted", pos)
    try:
        return codecs.escape_decode(body)[0].decode("latin-1")
    except ValueError as exc:
        raise PickleBreak(f"bad escape in STRING: {exc}", pos) from None


def _line_int(line: bytes, pos: int) -> int | bool:
    if line == b"00":
        return False
    if line == b"01":
        return True
    text = line[:-1] if line.endswith(b"L") else line
    try:
        return int(text)
    except ValueError:
        raise PickleBreak(f"invalid integer literal {line[:40]!r}", pos) from None


def read_arg(
    kind: Arg, stream: BinaryIO, pos: int, size: int | None
) -> int | float | str | bytes | BytesRef | tuple[str, str] | None:
    """Read one argument of ``kind``; ``size`` is the stream length when it is seekable."""
    if kind is Arg.NONE:
        return None
    if kind is Arg.U1:
        return read_exact(stream, 1, pos, "argument")[0]
    if kind is Arg.U2:
        return int.from_bytes(read_exact(stream, 2, pos, "argument"), "little")
    if kind is Arg.U4:
        return int.from_bytes(read_exact(stream, 4, pos, "argument"), "little")
    if kind is Arg.S4:
        return int.from_bytes(read_exact(stream, 4, pos, "argument"), "little", signed=True)
    if kind is Arg.U8:
        return int.from_bytes(read_exact(stream, 8, pos, "argument"), "little")
    if kind is Arg.F8:
        return float(struct.unpack(">d", read_exact(stream, 8, pos, "float"))[0])
    if kind is Arg.BYTES1:
        return _bytes(stream, read_exact(stream, 1, pos, "length")[0], pos, size)
    if kind is Arg.BYTES4 or kind is Arg.STR4 or kind is Arg.UNICODE4:
        n = int.from_bytes(read_exact(stream, 4, pos, "length"), "little", signed=kind is Arg.STR4)
        raw = _bytes(stream, n, pos, size)
        return _as_kind(kind, raw, pos)
    if kind is Arg.BYTES8 or kind is Arg.UNICODE8:
        n = int.from_bytes(read_exact(stream, 8, pos, "length"), "little")
        return _as_kind(kind, _bytes(stream, n, pos, size), pos)
    if kind is Arg.STR1 or kind is Arg.UNICODE1:
        raw = _bytes(stream, read_exact(stream, 1, pos, "length")[0], pos, size)
        return _as_kind(kind, raw, pos)
    if kind is Arg.LONG1 or kind is Arg.LONG4:
        width = 1 if kind is Arg.LONG1 else 4
        n = int.from_bytes(read_exact(stream, width, pos, "length"), "little", signed=True)
        if n < 0 or n > 4096:
            raise PickleBreak(f"LONG of {n} bytes is out of bounds", pos)
        return int.from_bytes(read_exact(stream, n, pos, "long"), "little", signed=True)
    line = _line(stream, pos)
    if kind is Arg.LINE_INT:
        return _line_int(line, pos)
    if kind is Arg.LINE_FLOAT:
        try:
            return float(line)
        except ValueError:
            raise PickleBreak(f"invalid float literal {line[:40]!r}", pos) from None
    if kind is Arg.LINE_ASCII:
        return line.decode("latin-1")
    if kind is Arg.LINE_UNICODE:
        return line.decode("raw-unicode-escape", "replace")
    if kind is Arg.LINE_QUOTED:
        return _quoted(line, pos)
    second = _line(stream, pos)
    try:
        return line.decode("utf-8"), second.decode("utf-8")
    except UnicodeDecodeError:
        raise PickleBreak("module or name of a global is not UTF-8", pos) from None


def _as_kind(kind: Arg, raw: bytes | BytesRef, pos: int) -> str | bytes | BytesRef:
    if kind in (Arg.UNICODE1, Arg.UNICODE4, Arg.UNICODE8):
        return _text(raw, pos)
    if kind in (Arg.STR1, Arg.STR4):
        # BINSTRING decodes as ASCII by default; latin-1 keeps every byte and never fails.
        return raw.decode("latin-1") if isinstance(raw, bytes) else raw
    return raw
