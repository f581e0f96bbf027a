"""ZIP containers: PyTorch checkpoints and TorchScript archives, ``.npz``, ``.keras``, any zip.

Every member is scanned by its content, whatever its name (a pickle called ``config.p`` or
``weights``: CVE-2025-1889), except tensor storages (``<archive>/data/<key>``), which loaders read
as raw bytes: only their first bytes are looked at, and only a complete pickle with dangerous
imports hiding there is reported. Archive tricks (name mismatches, flag bits, bad CRCs,
duplicate names, overlapping members) are findings, and the content is scanned regardless.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from collections.abc import Callable
from typing import BinaryIO
from zipfile import ZIP_STORED

from custody.errors import LimitHit, ZipBroken
from custody.validators.findings import Finding, Severity
from custody.validators.models import keras_config, torch_checks, torchscript_code
from custody.validators.models.context import Ctx, TorchRefs
from custody.validators.models.pickle_scan import scan_pickle_stream
from custody.validators.models.zip_reader import (
    Member,
    crc_problem,
    file_descriptor,
    list_members,
    open_member,
    read_local_header,
)

Recurse = Callable[[BinaryIO, "int | None", Ctx], list[Finding]]

_STORAGE = re.compile(r"^(?:[^/]+/)?(?:data|constants)/\d+$")
_TORCHSCRIPT = re.compile(r"^(?:[^/]+/)?code/.+\.py$")
_MAIN_PICKLE = re.compile(r"^((?:[^/]+/)?)data\.pkl$")
_MAX_CONFIG = 16 << 20
_MAX_CRC_CHECK = 64 << 20


def scan_zip(stream: BinaryIO, size: int, ctx: Ctx, recurse: Recurse) -> list[Finding]:
    if ctx.too_deep():
        return [
            ctx.finding(
                "limit.depth", Severity.HIGH, "archive nested deeper than the limit; not inspected"
            )
        ]
    try:
        members, problems = list_members(stream)
    except ZipBroken as exc:
        return [
            ctx.finding(
                "zip.malformed", Severity.HIGH, f"zip archive cannot be read ({exc}); not inspected"
            )
        ]
    findings = [ctx.finding("zip.anomaly", Severity.MEDIUM, p) for p in problems]
    findings.extend(_overlaps(members, ctx))
    if any("code/" in m.name and _TORCHSCRIPT.match(m.name) for m in members):
        ctx = dataclasses.replace(ctx, torchscript=True)
        findings.append(
            ctx.finding(
                "torch.torchscript",
                Severity.INFO,
                "TorchScript archive: torch.jit.load compiles and runs the code/ members "
                "(TorchScript, not Python); their calls are judged below (torchscript.code)",
            )
        )
    fd = file_descriptor(stream)
    try:
        for member in members:
            if ctx.budget.exhausted:
                break
            ctx.budget.add_member()
            name = member.name
            if name.endswith("/"):
                continue
            main = _MAIN_PICKLE.match(name)
            if member.compress_type == ZIP_STORED and _STORAGE.match(name):
                findings.extend(_scan_storage(stream, fd, member, ctx))
            elif main is not None:
                refs = TorchRefs()
                findings.extend(
                    _scan_member(stream, member, dataclasses.replace(ctx, torch_refs=refs), recurse)
                )
                sizes = {m.name: m.file_size for m in members}
                findings.extend(torch_checks.check_checkpoint(refs, main.group(1), sizes, ctx))
            else:
                findings.extend(_scan_member(stream, member, ctx, recurse))
        findings.extend(_keras(stream, members, ctx))
    except LimitHit as hit:
        findings.append(ctx.limit_finding(hit))
    return findings


def _scan_storage(stream: BinaryIO, fd: int | None, member: Member, ctx: Ctx) -> list[Finding]:
    """A stored tensor storage: the local header and the first two bytes, in one positioned read.

    Loaders read it as raw bytes, so it is only scanned (tolerantly) when it starts like a
    protocol 2-5 pickle. This is :func:`_scan_member`'s storage branch without a stream object
    per member; a checkpoint holds one storage per tensor.
    """
    try:
        head = read_local_header(stream, member, sniff=2, fd=fd)
    except ZipBroken as exc:
        return [
            ctx.inside(f"member {member.name}").finding(
                "zip.member_unreadable", Severity.HIGH, f"{exc}; its content was not inspected"
            )
        ]
    if member.file_size != member.compress_size:
        member.problems.append("stored member with different compressed and full sizes")
    pickle_like = len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5
    if not member.problems and not pickle_like:
        return []
    inner = ctx.inside(f"member {member.name}")
    findings = [inner.finding("zip.anomaly", Severity.MEDIUM, p) for p in member.problems]
    if pickle_like:
        opened = open_member(stream, member, ctx.budget)
        findings.extend(
            scan_pickle_stream(opened.stream, inner, opened.size, tolerant=True).findings
        )
    return findings


def _scan_member(stream: BinaryIO, member: Member, ctx: Ctx, recurse: Recurse) -> list[Finding]:
    inner = ctx.inside(f"member {member.name}")
    try:
        read_local_header(stream, member)
        opened = open_member(stream, member, ctx.budget)
    except ZipBroken as exc:
        return [
            inner.finding(
                "zip.member_unreadable", Severity.HIGH, f"{exc}; its content was not inspected"
            )
        ]
    findings = [inner.finding("zip.anomaly", Severity.MEDIUM, p) for p in member.problems]
    if _STORAGE.match(member.name):
        head = opened.stream.read(2) if opened.size is None else _peek2(opened.stream)
        if len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5 and opened.size is not None:
            findings.extend(
                scan_pickle_stream(opened.stream, inner, opened.size, tolerant=True).findings
            )
        return findings
    if ctx.torchscript and _TORCHSCRIPT.match(member.name):
        data = opened.stream.read(_MAX_CONFIG + 1)
        if len(data) > _MAX_CONFIG:
            findings.append(inner.finding(
                "limit.memory", Severity.HIGH, "TorchScript code member too large to inspect"))
        else:
            findings.extend(torchscript_code.scan_code(data.decode("utf-8", "replace"), inner))
    else:
        findings.extend(recurse(opened.stream, opened.size, inner))
    if member.file_size <= _MAX_CRC_CHECK:
        opened.stream.read()  # the rest of a small member, so that the CRC covers all of it
    problem = crc_problem(member, opened)
    if problem is not None:
        findings.append(inner.finding("zip.bad_crc", Severity.MEDIUM, problem))
    return findings


def _peek2(stream: BinaryIO) -> bytes:
    here = stream.tell()
    head = stream.read(2)
    stream.seek(here)
    return head


def _overlaps(members: list[Member], ctx: Ctx) -> list[Finding]:
    spans = sorted((m.header_offset, m.compress_size, m.name) for m in members)
    for (start, length, name), (nxt, _, other) in itertools.pairwise(spans):
        if start == nxt or start + length > nxt:
            return [
                ctx.finding(
                    "zip.overlap",
                    Severity.MEDIUM,
                    f"members {name!r} and {other!r} overlap (zip-bomb or confusion technique)",
                )
            ]
    return []


def _keras(stream: BinaryIO, members: list[Member], ctx: Ctx) -> list[Finding]:
    """A ``.keras`` archive: ``config.json`` names every layer class and the modules they use."""
    config = next((m for m in members if m.name == "config.json"), None)
    if config is None or not any(m.name in ("metadata.json", "model.weights.h5") for m in members):
        return []
    inner = ctx.inside("member config.json")
    try:
        read_local_header(stream, config)
        data = open_member(stream, config, ctx.budget).stream.read(_MAX_CONFIG + 1)
    except ZipBroken as exc:
        return [inner.finding("keras.config_unreadable", Severity.HIGH, str(exc))]
    if len(data) > _MAX_CONFIG:
        return [inner.finding("keras.config_unreadable", Severity.HIGH, "config.json too large")]
    try:
        parsed = json.loads(data)
    except (ValueError, RecursionError) as exc:
        return [
            inner.finding(
                "keras.config_unreadable", Severity.HIGH, f"config.json is not JSON: {exc}"
            )
        ]
    return keras_config.check_config(parsed, inner)
