"""Findings as data: what a scanner saw, how bad it is, and where.

Severities are ordered ``info < low < medium < high < critical``. A scan report's verdict is
``flagged`` when any finding reaches the threshold, ``error`` when a scanner could not finish
(which also counts as flagged: scanners fail closed), ``clean`` otherwise.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from custody.errors import EXIT_ERROR, EXIT_OK, EXIT_REFUSED


class Severity(enum.IntEnum):
    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown severity {text!r} (expected one of: {names})") from None


class Verdict(enum.StrEnum):
    CLEAN = "clean"
    FLAGGED = "flagged"
    ERROR = "error"


@dataclass(frozen=True)
class Finding:
    """One observation. ``location`` is format-specific (``byte 812``, ``member data.pkl``)."""

    rule_id: str
    severity: Severity
    path: str
    message: str
    location: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rule_id": self.rule_id,
            "severity": self.severity.label,
            "path": self.path,
            "location": self.location,
            "message": self.message,
        }
        if self.evidence:
            out["evidence"] = self.evidence
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Finding:
        return cls(
            rule_id=str(data["rule_id"]),
            severity=Severity.parse(str(data["severity"])),
            path=str(data["path"]),
            message=str(data["message"]),
            location=str(data.get("location", "")),
            evidence=dict(data.get("evidence") or {}),
        )


@dataclass(frozen=True)
class ScanReport:
    """All findings for one artifact (a file or a directory)."""

    path: str
    findings: tuple[Finding, ...] = ()
    errored: bool = False
    threshold: Severity = Severity.MEDIUM
    scanners: tuple[str, ...] = ()

    @property
    def max_severity(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)

    @property
    def verdict(self) -> Verdict:
        if self.errored:
            return Verdict.ERROR
        top = self.max_severity
        if top is not None and top >= self.threshold:
            return Verdict.FLAGGED
        return Verdict.CLEAN

    @property
    def refused(self) -> bool:
        return self.verdict is not Verdict.CLEAN

    @property
    def exit_code(self) -> int:
        """2 when some input could not be read at all (the registry's ``input_unreadable``
        rules), 1 when the report refuses, 0 when it is clean."""
        from custody.rules import RULES

        unreadable = {r.id for r in RULES.values() if r.input_unreadable}
        if unreadable.intersection(f.rule_id for f in self.findings):
            return EXIT_ERROR
        return EXIT_REFUSED if self.refused else EXIT_OK

    def blocking(self) -> list[Finding]:
        """Findings at or above the threshold, worst first."""
        hits = [f for f in self.findings if f.severity >= self.threshold]
        return sorted(hits, key=lambda f: (-f.severity, f.path, f.rule_id))

    def to_json(self) -> dict[str, Any]:
        top = self.max_severity
        return {
            "path": self.path,
            "verdict": self.verdict.value,
            "max_severity": top.label if top is not None else None,
            "threshold": self.threshold.label,
            "scanners": list(self.scanners),
            "findings": [f.to_json() for f in self.findings],
        }

    def summary(self) -> dict[str, Any]:
        """What goes into a signed statement: the verdict and counts, not every finding."""
        counts: dict[str, int] = {}
        for f in self.findings:
            counts[f.severity.label] = counts.get(f.severity.label, 0) + 1
        top = self.max_severity
        return {
            "verdict": self.verdict.value,
            "max_severity": top.label if top is not None else None,
            "threshold": self.threshold.label,
            "counts": dict(sorted(counts.items())),
            "scanners": list(self.scanners),
        }
