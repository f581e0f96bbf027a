"""picklescan as a second opinion on every pickle stream Custody has already analysed.

Its dangerous globals are merged into the report when Custody did not already call them
critical. It never vetoes the reviewed allowlist: a global that a curated profile admits (and
that Custody judged safe) is reported as ``picklescan.disagrees`` at info, with both views; a
global admitted only by the user's ``allow_globals`` still counts (high). picklescan failing is
not a pass for Custody (its own verdict stands) and never crashes the scan. Only the byte
ranges of the pickles Custody found are handed over, so the cost follows the pickle streams,
not the tensor data between them.

picklescan keeps every opcode of a pickle in a list (about 1.3 us and 120 bytes per opcode), so
a pickle longer than the caller's bound (a checkpoint with 100,000 tensors has 3 million
opcodes) gets a bounded second opinion instead: :func:`globals_pickle` writes every global
Custody resolved into a small pickle that picklescan then judges with its own lists.
"""

from __future__ import annotations

import io
import logging
import struct
from collections.abc import Iterable, Mapping

from custody.validators.findings import Finding, Severity
from custody.validators.models.context import Ctx

_logger = logging.getLogger("picklescan")
_logger.addHandler(logging.NullHandler())
_logger.propagate = False

_PICKLESCAN_ERRORS = (
    ValueError, TypeError, RuntimeError, IndexError, KeyError, OSError, EOFError,
    AttributeError, struct.error, RecursionError, MemoryError, NotImplementedError,
)  # fmt: skip


def _picklescan_dangerous(data: bytes) -> list[tuple[str, str]] | None:
    """``(module, name)`` pairs picklescan calls dangerous; ``None`` if it is unavailable."""
    try:
        from picklescan.scanner import SafetyLevel, scan_pickle_bytes
    except ImportError:
        return None
    try:
        result = scan_pickle_bytes(io.BytesIO(data), "custody", multiple_pickles=False)
    except _PICKLESCAN_ERRORS:
        return []
    return [
        (str(g.module), str(g.name)) for g in result.globals if g.safety is SafetyLevel.Dangerous
    ]


def globals_pickle(pairs: Iterable[tuple[str, str]]) -> bytes:
    """A pickle that only imports ``(module, name)`` pairs (STACK_GLOBAL), for picklescan."""
    parts = [b"\x80\x04"]
    for module, name in sorted(set(pairs)):
        for text in (module, name):
            raw = text.encode("utf-8", "surrogatepass")
            parts.append(b"X" + len(raw).to_bytes(4, "little") + raw)
        parts.append(b"\x930")  # STACK_GLOBAL, POP
    parts.append(b"N.")
    return b"".join(parts)


def merge(
    data: bytes, ctx: Ctx, ours: list[Finding], at: str, admitted: Mapping[str, str] | None = None
) -> list[Finding]:
    """Findings for what picklescan flags in ``data`` that our findings do not already cover.

    ``admitted`` maps the globals a curated profile admits to Custody's reason.
    """
    admitted = admitted or {}
    pairs = _picklescan_dangerous(data)
    if not pairs:
        return []
    critical = {str(f.evidence.get("global")) for f in ours if f.severity is Severity.CRITICAL}
    unresolved = any(f.rule_id == "pickle.global.unresolved" for f in ours)
    out: list[Finding] = []
    for module, name in sorted(set(pairs)):
        qualified = f"{module}.{name}"
        if qualified in critical:
            continue
        if "unknown" in (module, name) and not unresolved:
            continue  # picklescan could not resolve a name that Custody resolved and judged
        why = admitted.get(qualified)
        if why is not None:
            out.append(
                ctx.finding(
                    "picklescan.disagrees",
                    Severity.INFO,
                    f"picklescan (second opinion) calls {qualified} dangerous; Custody's "
                    f"reviewed allowlist admits it ({why.split(':')[0]})",
                    at=at,
                    evidence={"global": qualified, "picklescan": "dangerous", "custody": why},
                )
            )
            continue
        out.append(
            ctx.finding(
                "picklescan.dangerous",
                Severity.HIGH,
                f"picklescan (second opinion) calls the global {qualified} dangerous",
                at=at,
                evidence={"global": qualified, "scanner": "picklescan"},
            )
        )
    return out
