"""Dataset snapshots in the record flow: compare with a baseline, keep what the next needs.

Every dataset version that reads as a table (Parquet file, directory of Parquet files, CSV) is
compared with a baseline: ``--baseline PATH`` (the baseline's rows), ``--baseline REF`` or, by
default, the previous version of the same name (its stored profile and reference). Every rule
runs either way: schema and drift on the profiles, poisoning on the rows or on the stored
reference (``validators/dataset/reference.py``: row keys with labels and an encoded row
sample); an info finding ``dataset.checks`` says which poisoning rules ran and why any was
skipped. The findings join the scan report; the signed statement carries the schema
fingerprint, label counts, the SHA-256 of the profile and of the reference, and both are kept
in the ledger entry (covered by the Merkle log), so the next version is checked without the
old bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from custody.errors import UsageError, VerificationError
from custody.signing.statement import Statement, canonical_json
from custody.validators.findings import Finding, ScanReport

if TYPE_CHECKING:  # the ORM is imported only where a ledger is opened (start-up of `custody scan`)
    from custody.provenance.ledger.models import ArtifactVersionPublic
    from custody.provenance.ledger.store import Ledger

Progress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class DatasetAssessment:
    findings: tuple[Finding, ...]
    claims: dict[str, Any]  # goes into the signed predicate as "dataset"
    profile: dict[str, Any]  # kept in the ledger entry as "dataset_profile"
    reference: bytes | None = None  # kept in the ledger entry as "dataset_reference" (base64)
    comparison: Any = None  # the DatasetComparison (row evidence for --rows-out)
    path: Path | None = None

    @property
    def entry_extras(self) -> dict[str, Any] | None:
        """What the ledger entry keeps beside the signed statement (record's entry_extras)."""
        if not self.profile:
            return None
        extras: dict[str, Any] = {"dataset_profile": self.profile}
        if self.reference is not None:
            extras["dataset_reference"] = base64.b64encode(self.reference).decode("ascii")
        return extras


def write_rows_out(assessment: DatasetAssessment | None, out: Path) -> int:
    """``custody scan ... --rows-out FILE``: every row the poisoning findings name (Parquet or
    CSV by extension; see ``validators/dataset/evidence.py``); the number of lines written."""
    from custody.validators.dataset.evidence import write_rows

    if assessment is None or assessment.comparison is None or assessment.path is None:
        raise UsageError("--rows-out needs a table compared with a baseline",
                         hint="give --baseline PATH or REF (and --label if it is not detected)")
    typing = None
    base = assessment.comparison.baseline_profile
    if base is not None:
        from custody.validators.dataset.reader import schema_of

        typing = schema_of(base.schema)
    return write_rows(assessment.comparison, assessment.path, out, typing)


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


def _stored(ledger: Ledger, version: ArtifactVersionPublic
            ) -> tuple[dict[str, Any] | None, bytes | None]:
    """The profile and reference kept for a recorded dataset version, each checked against
    its signed digest (a version recorded before references were kept has none)."""
    entry = json.loads(ledger.entry(version.entry_idx).payload)
    profile = entry.get("dataset_profile")
    if profile is None:
        return None, None
    signed = Statement.from_bytes(ledger.stored_record(version).statement).predicate
    claims = signed.get("dataset") or {}
    if claims.get("profile_sha256") != _profile_digest(profile):
        raise _inconsistent(version, "profile")
    blob = entry.get("dataset_reference")
    want = claims.get("reference_sha256")
    if blob is None or want is None:
        if blob is not None or want is not None:
            raise _inconsistent(version, "reference")
        return dict(profile), None
    from custody.validators.dataset.reference import reference_digest

    try:
        reference = base64.b64decode(str(blob), validate=True)
    except (binascii.Error, ValueError):
        raise _inconsistent(version, "reference") from None
    if reference_digest(reference) != want:
        raise _inconsistent(version, "reference")
    return dict(profile), reference


def _inconsistent(version: ArtifactVersionPublic, what: str) -> VerificationError:
    return VerificationError(
        f"the stored {what} of {version.ref} does not match its signed digest",
        rule="ledger.inconsistent", hint="run `custody audit verify`", subject=version.ref)


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
    baseline_path, baseline_profile, reference, baseline_ref = _baseline(ledger, name, baseline)
    try:
        result = compare_datasets(path, baseline_path, label=label, id_column=id_column,
                                  baseline_profile=baseline_profile,
                                  baseline_reference=reference, progress=progress,
                                  make_reference=True)
    except ValueError as exc:  # a label or id column that does not exist
        raise UsageError(str(exc), subject=str(path)) from None
    if result.profile is None:
        return DatasetAssessment(result.report.findings, {"baseline": baseline_ref}, {})
    profile = result.profile.to_json()
    label_counts = None
    if result.label is not None:
        column = profile.get("columns", {}).get(result.label)
        label_counts = column.get("values") if isinstance(column, dict) else None
    claims: dict[str, Any] = {
        "schema_fingerprint": result.fingerprint,
        "label": result.label,
        "label_counts": label_counts,
        "baseline": baseline_ref,
        "profile_sha256": _profile_digest(profile),
    }
    if result.reference is not None:
        from custody.validators.dataset.reference import reference_digest

        claims["reference_sha256"] = reference_digest(result.reference)
        claims["reference_bytes"] = len(result.reference)
    return DatasetAssessment(result.report.findings, claims, profile, result.reference,
                             result, path)


def _baseline(ledger: Ledger | None, name: str | None, baseline: str | None
              ) -> tuple[Path | None, dict[str, Any] | None, bytes | None, str | None]:
    if baseline is not None and Path(baseline).exists():
        return Path(baseline), None, None, str(baseline)
    if ledger is None:
        if baseline is not None:
            raise UsageError(f"--baseline {baseline}: no such file, and no ledger to resolve it")
        return None, None, None, None
    if baseline is not None:
        version: ArtifactVersionPublic | None = ledger.resolve(baseline)
    else:
        known = ledger.list_versions(name) if name else []
        version = known[-1] if known else None
    if version is None:
        return None, None, None, None
    if version.kind != "dataset":
        raise UsageError(f"baseline {version.ref} is a {version.kind}, not a dataset")
    profile, reference = _stored(ledger, version)
    return None, profile, reference, version.ref


def merge(report: ScanReport, assessment: DatasetAssessment) -> ScanReport:
    return ScanReport(
        path=report.path,
        findings=report.findings + assessment.findings,
        errored=report.errored,
        threshold=report.threshold,
        scanners=(*report.scanners, "dataset"),
    )
