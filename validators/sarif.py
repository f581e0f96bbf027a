"""SARIF 2.1.0 output of a scan report, for GitHub code scanning and other SARIF consumers."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from custody.validators.findings import ScanReport, Severity

_SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL = {Severity.CRITICAL: "error", Severity.HIGH: "error", Severity.MEDIUM: "warning",
          Severity.LOW: "note", Severity.INFO: "note"}
# GitHub orders alerts by this 0.0-10.0 score.
_SCORE = {Severity.CRITICAL: "9.5", Severity.HIGH: "8.0", Severity.MEDIUM: "5.5",
          Severity.LOW: "3.0", Severity.INFO: "0.0"}


def to_sarif(report: ScanReport, *, base: str, tool_version: str) -> dict[str, Any]:
    """One SARIF run for ``report``; ``base`` is the scanned path as the user named it, so a
    finding's URI is that path plus the file's relpath inside the artifact."""
    rules: dict[str, dict[str, Any]] = {}
    results = []
    for f in report.findings:
        top = rules.get(f.rule_id)
        if top is None or Severity.parse(top["properties"]["severity"]) < f.severity:
            rules[f.rule_id] = {
                "id": f.rule_id,
                "shortDescription": {"text": f.rule_id.replace(".", " ")},
                "defaultConfiguration": {"level": _LEVEL[f.severity]},
                "properties": {"severity": f.severity.label,
                               "security-severity": _SCORE[f.severity]},
            }
        uri = _uri(base, f.path)
        results.append({
            "ruleId": f.rule_id,
            "level": _LEVEL[f.severity],
            "message": {"text": f.message},
            "locations": [{"physicalLocation": {"artifactLocation": {"uri": uri}},
                           "message": {"text": f.location or uri}}],
            "properties": {"severity": f.severity.label, "location": f.location},
        })
    return {
        "$schema": _SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "custody", "version": tool_version,
                                "informationUri": "https://custody.dev",
                                "rules": sorted(rules.values(), key=lambda r: r["id"])}},
            "results": results,
            "properties": {"verdict": report.verdict.value,
                           "threshold": report.threshold.label},
        }],
    }


def _uri(base: str, relpath: str) -> str:
    root = PurePosixPath(base.replace("\\", "/"))
    if root.name == relpath:  # a single file: its relpath is its own name
        return str(root)
    return str(root / relpath)
