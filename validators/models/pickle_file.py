"""Pickle content: the opcode analysis, picklescan's second opinion, and a zip polyglot check.

Protocol 0 and 1 pickles have no magic, and text starts with their opcodes too (``city\n...``
is GLOBAL ``ity.Paris``). A stream without the protocol 2+ header whose first pickle breaks
before an unpickler would call anything (and that looks up nothing dangerous) is not an
executable pickle: it is reported as the text or binary content it is.
"""

from __future__ import annotations

import _compat_pickle
import zipfile
from typing import BinaryIO

from custody.validators.findings import Finding, Severity
from custody.validators.formats import is_text
from custody.validators.models import second_opinion
from custody.validators.models.allowlist import profile_of
from custody.validators.models.context import Ctx
from custody.validators.models.pickle_judge import executed_before_break
from custody.validators.models.pickle_scan import StreamScan, scan_pickle_stream
from custody.validators.models.pickle_values import PickleResult

_SECOND_OPINION_MAX = 64 << 20
_SECOND_OPINION_MAX_OPS = 250_000  # longer pickles: picklescan judges the globals we resolved
_WRAPPERS = frozenset({"builtins.getattr", "__builtin__.getattr", "functools.partial",
                       "_functools.partial"})


def scan_pickle_content(
    stream: BinaryIO, size: int | None, ctx: Ctx, head: bytes = b""
) -> list[Finding]:
    start = stream.tell()
    scan = scan_pickle_stream(stream, ctx, size)
    if not head.startswith(b"\x80") and not _executable(scan):
        return _not_a_pickle(head, ctx)
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
            admitted = _admitted(seg, findings, ctx)
            findings.extend(
                second_opinion.merge(data, ctx, findings, f"byte {seg.start}", admitted)
            )
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


def _executable(scan: StreamScan) -> bool:
    """A headerless stream counts as a pickle when its first pickle ends, or calls something
    before it breaks, or looks up a dangerous global."""
    if not scan.segments:
        return False
    first = scan.segments[0]
    if first.error is None or executed_before_break(first):
        return True
    return any(f.severity is Severity.CRITICAL for f in scan.findings)


def _not_a_pickle(head: bytes, ctx: Ctx) -> list[Finding]:
    if not head or is_text(head):
        return []
    return [
        ctx.finding(
            "format.unknown",
            Severity.INFO,
            "unrecognised binary content; its first bytes read as pickle opcodes but an "
            "unpickler rejects them before calling anything, so it is not an executable pickle",
        )
    ]


def _admitted(seg: PickleResult, ours: list[Finding], ctx: Ctx) -> dict[str, str]:
    """The globals of ``seg`` that a curated profile admits (picklescan may not veto them)."""
    flagged = {str(f.evidence.get("global")) for f in ours if "global" in f.evidence}
    out: dict[str, str] = {}
    for ref in seg.globals:
        qualified = ref.qualified
        if qualified in out or ref.module.startswith("<"):
            continue
        names = [(ref.module, ref.name), _rename(ref.module, ref.name)]
        for module, name in names:
            profile = profile_of(module, name, ctx.options.pickle_profiles)
            if profile is not None:
                out[qualified] = out[f"{module}.{name}"] = profile.why(f"{module}.{name}")
                break
        else:
            if qualified in _WRAPPERS and not any(q.startswith(qualified) for q in flagged):
                out[qualified] = out[".".join(_rename(ref.module, ref.name))] = (
                    "judged through its arguments: every call resolves to an allowlisted global"
                )
    return out


def _rename(module: str, name: str) -> tuple[str, str]:
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name
