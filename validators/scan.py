"""Run every scanner that applies to every file of an artifact and gather one report.

Scanners are chosen by the file's content. A scanner that crashes produces a high finding
(``scanner.crashed``): an analysis that could not finish never counts as a pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from custody.validators.findings import Finding, ScanReport, Severity
from custody.validators.formats import HEAD_BYTES, FileFormat, detect
from custody.validators.interface import FileScanner, ScanOptions, ScanTarget
from custody.validators.models.scanner import ModelScanner

# Formats that are data, not code, and need no scanner of their own at this point.
_INERT = frozenset({FileFormat.TEXT, FileFormat.EMPTY, FileFormat.PARQUET})


def _default_scanners() -> list[FileScanner]:
    return [ModelScanner()]


def _read_head(path: Path) -> bytes:
    with path.open("rb") as stream:
        return stream.read(HEAD_BYTES)


def scan_files(
    display_path: str,
    files: Iterable[tuple[Path, str, int]],
    *,
    threshold: Severity = Severity.MEDIUM,
    options: ScanOptions | None = None,
    scanners: Sequence[FileScanner] | None = None,
) -> ScanReport:
    """Scan ``(absolute path, relpath, size)`` triples; return one report for the artifact."""
    options = options or ScanOptions()
    active = list(scanners) if scanners is not None else _default_scanners()
    findings: list[Finding] = []
    errored = False
    for path, relpath, size in files:
        try:
            target = ScanTarget(path=path, relpath=relpath, size=size, head=_read_head(path))
        except OSError as exc:
            errored = True
            findings.append(
                Finding("scanner.unreadable", Severity.HIGH, relpath, f"cannot read file: {exc}")
            )
            continue
        findings.extend(_scan_target(target, active, options))
        if any(f.rule_id == "scanner.crashed" for f in findings):
            errored = True
    return ScanReport(
        path=display_path,
        findings=tuple(findings),
        errored=errored,
        threshold=threshold,
        scanners=tuple(s.name for s in active),
    )


def _scan_target(
    target: ScanTarget, scanners: Sequence[FileScanner], options: ScanOptions
) -> list[Finding]:
    chosen = [s for s in scanners if s.accepts(target)]
    if not chosen:
        fmt = detect(target.head)
        if fmt in _INERT:
            return []
        return [
            Finding(
                "format.unscanned",
                Severity.INFO,
                target.relpath,
                f"format {fmt.value!r} has no scanner; its content was not inspected",
            )
        ]
    out: list[Finding] = []
    for scanner in chosen:
        try:
            out.extend(scanner.scan(target, options))
        except Exception as exc:  # noqa: BLE001 - fail closed: a crash is reported, not hidden
            out.append(
                Finding(
                    "scanner.crashed",
                    Severity.HIGH,
                    target.relpath,
                    f"scanner {scanner.name!r} crashed ({type(exc).__name__}: {exc}); "
                    "the file is treated as unsafe",
                )
            )
    return out
