"""ONNX models: external-data locations that escape the model folder.

An ONNX tensor may keep its bytes in an external file named by a ``location`` key; onnxruntime
and ``onnx.load`` open that path relative to the model. An absolute path, a ``..`` step or a
symlink out of the folder reads (or, when saving, writes) files elsewhere. The protobuf is
walked with a minimal reader over just the messages that can hold tensors; nothing is loaded.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import BinaryIO

from custody.errors import OnnxMalformed as _Malformed
from custody.validators.findings import Finding, Severity
from custody.validators.models.context import Ctx

_MAX_MODEL = 2 << 30

# message -> {field number: submessage kind}; only paths that can reach a TensorProto.
_SCHEMA: dict[str, dict[int, str]] = {
    "model": {7: "graph", 25: "function"},
    "function": {7: "node"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "tensor": {13: "entry"},
    "entry": {},
}


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise _Malformed("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(buf: memoryview) -> list[tuple[int, memoryview | None]]:
    out: list[tuple[int, memoryview | None]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(buf, pos)
            out.append((number, None))
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise _Malformed("length-delimited field runs past its message")
            out.append((number, buf[pos : pos + length]))
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            out.append((number, None))
        else:
            raise _Malformed(f"unsupported wire type {wire}")
    return out


def _external_locations(data: bytes) -> list[str]:
    """Every ``location`` value of every external-data entry in the model."""
    found: list[str] = []
    stack: list[tuple[str, memoryview]] = [("model", memoryview(data))]
    while stack:
        kind, buf = stack.pop()
        fields = _fields(buf)
        if kind == "entry":
            entry = {n: bytes(v).decode("utf-8", "replace") for n, v in fields if v is not None}
            if entry.get(1) == "location":
                found.append(entry.get(2, ""))
            continue
        schema = _SCHEMA[kind]
        stack.extend((schema[n], v) for n, v in fields if v is not None and n in schema)
    return found


def _escapes(location: str, folder: Path | None) -> str:
    if PurePosixPath(location).is_absolute() or PureWindowsPath(location).is_absolute():
        return "is an absolute path"
    parts = PurePosixPath(location.replace("\\", "/")).parts
    if ".." in parts:
        return "climbs out of the model folder with '..'"
    if folder is not None:
        target = (folder / location).resolve()
        if not target.is_relative_to(folder.resolve()):
            return "resolves (through a symlink) outside the model folder"
    return ""


def scan_onnx(stream: BinaryIO, size: int | None, ctx: Ctx, head: bytes = b"") -> list[Finding]:
    if size is None or size > _MAX_MODEL:
        return [ctx.finding("onnx.too_large", Severity.MEDIUM, "ONNX model too large to parse")]
    data = stream.read(size)
    try:
        locations = _external_locations(data)
    except _Malformed as exc:
        return [
            ctx.finding(
                "onnx.malformed",
                Severity.LOW,
                f"looks like ONNX but the protobuf is malformed ({exc})",
            )
        ]
    findings: list[Finding] = []
    for location in sorted(set(locations)):
        why = _escapes(location, ctx.folder)
        if why:
            findings.append(
                ctx.finding(
                    "onnx.external_data_escape",
                    Severity.HIGH,
                    f"external data location {location!r} {why}",
                    evidence={"location": location},
                )
            )
    return findings
