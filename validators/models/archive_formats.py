"""Tar archives (PyTorch's legacy tar checkpoints and any other tar) and 7z archives.

PyTorch's tar format keeps a ``pickle`` member (the object), ``sys_info``, and ``storages`` /
``tensors`` members that interleave small pickles with raw bytes; all of their pickles are
scanned and the raw parts stepped over. 7z has no reader in the standard library: a 7z archive
is reported as content that could not be inspected (the 'nullifAI' models hid pickles in 7z).
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from typing import BinaryIO

from custody.errors import LimitHit, PickleBreak
from custody.validators.findings import Finding, Severity
from custody.validators.models.context import Ctx
from custody.validators.models.inline_data import skip_bytes
from custody.validators.models.opcodes import read_exact
from custody.validators.models.pickle_scan import scan_one_pickle
from custody.validators.models.pickle_values import GlobalRef

Recurse = Callable[[BinaryIO, "int | None", Ctx], list[Finding]]
_TORCH_MEMBERS = frozenset({"sys_info", "pickle", "storages", "tensors"})
_ELEMENT = {
    "Double": 8,
    "Float": 4,
    "Half": 2,
    "BFloat16": 2,
    "Long": 8,
    "Int": 4,
    "Short": 2,
    "Char": 1,
    "Byte": 1,
    "Bool": 1,
    "ComplexFloat": 8,
    "ComplexDouble": 16,
}


def scan_7z(stream: BinaryIO, size: int | None, ctx: Ctx, head: bytes = b"") -> list[Finding]:
    return [
        ctx.finding(
            "archive.7z_uninspected",
            Severity.MEDIUM,
            "7z archive: its members cannot be inspected without a 7z reader, so they are "
            "treated as unsafe (the 'nullifAI' models hid pickles this way); repackage as zip",
        )
    ]


def scan_tar(stream: BinaryIO, size: int | None, ctx: Ctx, recurse: Recurse) -> list[Finding]:
    if ctx.too_deep():
        return [ctx.finding("limit.depth", Severity.HIGH, "tar nested too deep; not inspected")]
    findings: list[Finding] = []
    try:
        with tarfile.open(fileobj=stream, mode="r:" if size is not None else "r|") as tar:
            for info in tar:
                ctx.budget.add_member()
                findings.extend(_member(tar, info, ctx, recurse))
                if ctx.budget.exhausted:
                    break
    except tarfile.TarError as exc:
        findings.append(
            ctx.finding(
                "tar.malformed", Severity.HIGH, f"tar archive cannot be read further: {exc}"
            )
        )
    except LimitHit as hit:
        findings.append(ctx.limit_finding(hit))
    return findings


def _member(
    tar: tarfile.TarFile, info: tarfile.TarInfo, ctx: Ctx, recurse: Recurse
) -> list[Finding]:
    inner = ctx.inside(f"member {info.name}")
    if info.issym() or info.islnk():
        return [
            inner.finding("tar.link", Severity.MEDIUM, f"link member pointing to {info.linkname!r}")
        ]
    out: list[Finding] = []
    if info.name.startswith("/") or ".." in info.name.split("/"):
        out.append(
            inner.finding(
                "tar.path_escape", Severity.MEDIUM, "member path leaves the extraction folder"
            )
        )
    handle = tar.extractfile(info) if info.isfile() else None
    if handle is None:
        return out
    stream: BinaryIO = handle  # type: ignore[assignment]
    size = info.size if handle.seekable() else None
    try:
        if info.name == "storages":
            out.extend(_storages(stream, inner, size))
        elif info.name == "tensors":
            out.extend(_tensors(stream, inner, size))
        else:
            out.extend(recurse(stream, size, inner))
    except PickleBreak as exc:
        out.append(
            inner.finding(
                "torch.legacy_tar",
                Severity.HIGH,
                f"legacy torch member breaks: {exc}",
                at=f"byte {exc.pos}",
            )
        )
    return out


def _pickle(stream: BinaryIO, ctx: Ctx, size: int | None, out: list[Finding]) -> object:
    result, findings = scan_one_pickle(stream, ctx, size)
    out.extend(findings)
    if result.error is not None:
        raise PickleBreak(str(result.error), result.error.pos)
    return result.root


def _storages(stream: BinaryIO, ctx: Ctx, size: int | None) -> list[Finding]:
    out: list[Finding] = []
    count = _pickle(stream, ctx, size, out)
    for _ in range(count if isinstance(count, int) and count >= 0 else 0):
        args = _pickle(stream, ctx, size, out)
        kind = args[2] if isinstance(args, tuple) and len(args) == 3 else None
        name = kind.name.removesuffix("Storage") if isinstance(kind, GlobalRef) else ""
        elements = int.from_bytes(read_exact(stream, 8, stream.tell(), "storage size"), "little")
        skip_bytes(stream, elements * _ELEMENT.get(name, 1), size, "storage data")
    _pickle(stream, ctx, size, out)  # storage views
    return out


def _tensors(stream: BinaryIO, ctx: Ctx, size: int | None) -> list[Finding]:
    out: list[Finding] = []
    count = _pickle(stream, ctx, size, out)
    for _ in range(count if isinstance(count, int) and count >= 0 else 0):
        _pickle(stream, ctx, size, out)
        ndim = int.from_bytes(read_exact(stream, 4, stream.tell(), "ndim"), "little")
        skip_bytes(stream, 4 + 16 * ndim + 8, size, "tensor header")
    return out
