"""Dataset snapshots in the record flow: compare with a baseline, keep the profile for the next.

Every dataset version that reads as a table (Parquet file, directory of Parquet files, CSV) is
compared with a baseline: ``--baseline PATH`` (all rules, poisoning included), ``--baseline REF``
or, by default, the previous version of the same name (schema and drift rules, from the profile
kept in the ledger). The findings join the scan report; the signed statement carries the schema
fingerprint, label counts and the SHA-256 of the profile, and the profile itself is kept in the
ledger entry (covered by the Merkle log), so the next version can be compared without the old
bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from custody.errors import UsageError, VerificationError
from custody.provenance.ledger.models import ArtifactVersionPublic
from custody.provenance.ledger.store import Ledger
from custody.signing.statement import Statement, canonical_json
from custody.validators.findings import Finding, ScanReport

Progress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class DatasetAssessment:
    findings: tuple[Finding, ...]
    claims: dict[str, Any]  # goes into the signed predicate as "dataset"
    profile: dict[str, Any]  # kept in the ledger entry as "dataset_profile"


def _is_tabular(path: Path) -> bool:
    from custody.errors import DatasetReadError
    from custody.validators.dataset.reader import open_source

    try:
        open_source(path)
    except (DatasetReadError, OSError):
        return False
    return True


def _profile_digest(profile: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(canonical_json(profile)).hexdigest()


def _stored_profile(ledger: Ledger, version: ArtifactVersionPublic) -> dict[str, Any] | None:
    """The profile kept for a recorded dataset version, checked against its signed digest."""
    entry = json.loads(ledger.entry(version.entry_idx).payload)
    profile = entry.get("dataset_profile")
    if profile is None:
        return None
    signed = Statement.from_bytes(ledger.stored_record(version).statement).predicate
    want = (signed.get("dataset") or {}).get("profile_sha256")
    if want != _profile_digest(profile):
        raise VerificationError(
            f"the stored profile of {version.ref} does not match its signed digest",
            rule="ledger.inconsistent", hint="run `custody audit verify`", subject=version.ref)
    return dict(profile)


def assess_dataset(
    path: Path,
    *,
    ledger: Ledger | None,
    name: str | None,
    baseline: str | None = None,
    label: str | None = None,
    id_column: str | None = None,
    progress: Progress | None = None,
) -> DatasetAssessment | None:
    """Compare a tabular snapshot with its baseline; None when ``path`` is not tabular."""
    from custody.validators.dataset.compare import compare_datasets

    if not _is_tabular(path):
        if baseline is not None:
            raise UsageError(f"{path} is not a Parquet or CSV table: --baseline does not apply")
        return None
    baseline_path, baseline_profile, baseline_ref = _baseline(ledger, name, baseline)
    try:
        result = compare_datasets(path, baseline_path, label=label, id_column=id_column,
                                  baseline_profile=baseline_profile, progress=progress)
    except ValueError as exc:  # a label or id column that does not exist
        raise UsageError(str(exc), subject=str(path)) from None
    if result.profile is None:
        return DatasetAssessment(result.report.findings, {"baseline": baseline_ref}, {})
    profile = result.profile.to_json()
    label_counts = None
    if result.label is not None:
        column = next((c for c in profile.get("columns", [])
                       if isinstance(c, dict) and c.get("name") == result.label), None)
        label_counts = column.get("values") if column else None
    claims = {
        "schema_fingerprint": result.fingerprint,
        "label": result.label,
        "label_counts": label_counts,
        "baseline": baseline_ref,
        "profile_sha256": _profile_digest(profile),
    }
    return DatasetAssessment(result.report.findings, claims, profile)


def _baseline(ledger: Ledger | None, name: str | None, baseline: str | None
              ) -> tuple[Path | None, dict[str, Any] | None, str | None]:
    if baseline is not None and Path(baseline).exists():
        return Path(baseline), None, str(baseline)
    if ledger is None:
        if baseline is not None:
            raise UsageError(f"--baseline {baseline}: no such file, and no ledger to resolve it")
        return None, None, None
    if baseline is not None:
        version: ArtifactVersionPublic | None = ledger.resolve(baseline)
    else:
        known = ledger.list_versions(name) if name else []
        version = known[-1] if known else None
    if version is None:
        return None, None, None
    if version.kind != "dataset":
        raise UsageError(f"baseline {version.ref} is a {version.kind}, not a dataset")
    return None, _stored_profile(ledger, version), version.ref


def merge(report: ScanReport, assessment: DatasetAssessment) -> ScanReport:
    return ScanReport(
        path=report.path,
        findings=report.findings + assessment.findings,
        errored=report.errored,
        threshold=report.threshold,
        scanners=(*report.scanners, "dataset"),
    )
