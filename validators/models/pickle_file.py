"""Pickle content: the opcode analysis, picklescan's second opinion, and a zip polyglot check."""

from __future__ import annotations

import zipfile
from typing import BinaryIO

from custody.validators.findings import Finding, Severity
from custody.validators.models import second_opinion
from custody.validators.models.context import Ctx
from custody.validators.models.pickle_scan import scan_pickle_stream

_SECOND_OPINION_MAX = 64 << 20
_SECOND_OPINION_MAX_OPS = 250_000  # longer pickles: picklescan judges the globals we resolved


def scan_pickle_content(
    stream: BinaryIO, size: int | None, ctx: Ctx, head: bytes = b""
) -> list[Finding]:
    start = stream.tell()
    scan = scan_pickle_stream(stream, ctx, size)
    findings = list(scan.findings)
    if size is None:
        return findings
    if ctx.options.second_opinion:
        for seg in scan.segments:
            end = seg.end if seg.error is None else min(seg.end, size)
            if not 0 < end - seg.start <= _SECOND_OPINION_MAX:
                continue
            if seg.ops <= _SECOND_OPINION_MAX_OPS:
                stream.seek(seg.start)
                data = stream.read(end - seg.start)
            else:
                pairs = ((g.module, g.name) for g in seg.globals if not g.module.startswith("<"))
                data = second_opinion.globals_pickle(pairs)
            findings.extend(second_opinion.merge(data, ctx, findings, f"byte {seg.start}"))
    stream.seek(start)
    if zipfile.is_zipfile(stream):
        findings.append(
            ctx.finding(
                "format.polyglot",
                Severity.MEDIUM,
                "content is both a pickle and a zip archive: loaders disagree on what it is",
            )
        )
    return findings
