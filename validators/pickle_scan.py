"""Pickle scanner: walks opcodes with ``pickletools`` and judges every imported global.

Nothing is unpickled. Globals are resolved from GLOBAL/INST arguments and, for STACK_GLOBAL,
from the two most recent string pushes (following memo GETs). Default-deny: a global on the
reviewed allowlist is clean, a known-dangerous one is critical, anything else is medium.
"""

from __future__ import annotations

import io
import pickletools
from pathlib import Path
from typing import BinaryIO

from custody.validators.findings import Finding, Severity
from custody.validators.formats import FileFormat, detect
from custody.validators.interface import ScanOptions, ScanTarget
from custody.validators.pickle_policy import classify_global

_STRING_OPS = frozenset(
    {
        "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE",
        "SHORT_BINUNICODE", "BINUNICODE8",
    }
)
_PUT_OPS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_GET_OPS = frozenset({"GET", "BINGET", "LONG_BINGET"})


class PickleScanner:
    name = "pickle"

    def accepts(self, target: ScanTarget) -> bool:
        return detect(target.head) is FileFormat.PICKLE

    def scan(self, target: ScanTarget, options: ScanOptions) -> list[Finding]:
        with target.path.open("rb") as stream:
            return scan_pickle_stream(stream, target.relpath, options)


def scan_pickle_bytes(data: bytes, relpath: str, options: ScanOptions) -> list[Finding]:
    return scan_pickle_stream(io.BytesIO(data), relpath, options)


def scan_pickle_stream(stream: BinaryIO, relpath: str, options: ScanOptions) -> list[Finding]:
    """Scan every pickle concatenated in ``stream`` (torch legacy files stack several)."""
    findings: list[Finding] = []
    budget = options.limits.max_pickle_opcodes
    while True:
        start = stream.tell()
        if not stream.read(1):
            break
        stream.seek(start)
        used = _scan_one(stream, relpath, options, findings, budget)
        if used < 0:
            break
        budget -= used
    return findings


def _scan_one(
    stream: BinaryIO,
    relpath: str,
    options: ScanOptions,
    findings: list[Finding],
    budget: int,
) -> int:
    """Scan one pickle; return opcodes used, or -1 when the stream cannot go on."""
    recent: list[object] = []
    memo: dict[int, object] = {}
    count = 0
    try:
        for opcode, arg, pos in pickletools.genops(stream):
            count += 1
            if count > budget:
                findings.append(
                    Finding(
                        "pickle.limit.opcodes",
                        Severity.HIGH,
                        relpath,
                        f"pickle has more than {options.limits.max_pickle_opcodes} opcodes; "
                        "analysis stopped (fail closed)",
                        location=f"byte {pos}",
                    )
                )
                return -1
            name = opcode.name
            if name in _STRING_OPS:
                recent.append(arg)
            elif name == "MEMOIZE":
                memo[len(memo)] = recent[-1] if recent else None
            elif name in _PUT_OPS and isinstance(arg, int):
                memo[arg] = recent[-1] if recent else None
            elif name in _GET_OPS and isinstance(arg, int):
                recent.append(memo.get(arg))
            elif name in ("GLOBAL", "INST") and isinstance(arg, str):
                module, _, attr = arg.partition(" ")
                _judge(module, attr, relpath, pos, options, findings)
            elif name == "STACK_GLOBAL":
                pair: tuple[object, object] = (
                    (recent[-2], recent[-1]) if len(recent) >= 2 else (None, None)
                )
                stack_module, stack_attr = pair
                if not isinstance(stack_module, str) or not isinstance(stack_attr, str):
                    findings.append(
                        Finding(
                            "pickle.global.unresolved",
                            Severity.HIGH,
                            relpath,
                            "STACK_GLOBAL whose module or name could not be resolved statically",
                            location=f"byte {pos}",
                        )
                    )
                else:
                    _judge(stack_module, stack_attr, relpath, pos, options, findings)
            elif name in ("EXT1", "EXT2", "EXT4"):
                findings.append(
                    Finding(
                        "pickle.global.extension",
                        Severity.HIGH,
                        relpath,
                        f"{name} loads a global from the copyreg extension registry (code {arg})",
                        location=f"byte {pos}",
                    )
                )
    except (ValueError, EOFError, UnicodeDecodeError, OverflowError) as exc:
        findings.append(
            Finding(
                "pickle.malformed",
                Severity.HIGH,
                relpath,
                f"pickle stream is malformed after {count} opcodes: {exc}",
                location=f"byte {stream.tell()}",
            )
        )
        return -1
    return count


def _judge(
    module: str,
    attr: str,
    relpath: str,
    pos: int | None,
    options: ScanOptions,
    findings: list[Finding],
) -> None:
    severity, reason = classify_global(module, attr, options.extra_safe_globals)
    if severity is None:
        return
    findings.append(
        Finding(
            "pickle.global.dangerous" if severity is Severity.CRITICAL else "pickle.global.unknown",
            severity,
            relpath,
            f"pickle imports {module}.{attr}: {reason}",
            location=f"byte {pos}",
            evidence={"global": f"{module}.{attr}"},
        )
    )


def scan_pickle_path(path: Path, relpath: str, options: ScanOptions) -> list[Finding]:
    with path.open("rb") as stream:
        return scan_pickle_stream(stream, relpath, options)
