"""record: hash → scan → sign → append. Nothing is written unless every step succeeded.

Outputs beside the ledger (``--bundle-out``, ``--oms-out``) follow the same rule. The bundle
exists only once the statement is signed, and the statement is signed under the append lock
(its version number is assigned there), so the order is: validate every output and create its
temporary file (before hashing), hash, scan, then under the lock sign, write and fsync the
temporary files (``on_signed``), insert the rows and commit; only after the commit are the
temporary files renamed into place. A failure before the commit leaves no ledger entry and no
output (the transaction rolls back, the temporary files are removed), so a retry records
version 1 again. The only window left is a crash between the commit and the renames, which
leaves the entry and a stray ``.NAME.*.tmp`` file: the bundles are in the ledger and
``custody bundle REF --out FILE`` exports them again.

An object-store URI is read once into a private temporary copy, which is what is scanned and
whose digests are signed; it is no output, and is removed when ``record`` returns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from custody import __version__
from custody.domain import Activity, Kind
from custody.errors import ScanRefusedError, UsageError, VerificationError
from custody.provenance.hashing.dvc import DvcInfo, check_dvc_workspace
from custody.provenance.hashing.files import ProgressCallback, hash_path
from custody.provenance.hashing.locations import Locations, is_uri
from custody.provenance.hashing.manifest import Manifest
from custody.provenance.ledger.append import InputLink, SignedRecord
from custody.provenance.ledger.models import ArtifactVersionPublic
from custody.provenance.ledger.store import Ledger, check_name
from custody.provenance.scanning.step import DatasetOptions, scan_manifest, with_dataset_checks
from custody.provenance.verification.attestation import RecordedInput, build_statement
from custody.provenance.verification.chain import ChainWalker, UpstreamFlag
from custody.provenance.verification.oms_files import oms_manifest_from
from custody.signing.bundle_info import BundleKind, classify_bundle, keyless_facts
from custody.signing.interface import Signer
from custody.validators.findings import ScanReport, Severity
from custody.validators.interface import ScanOptions

_DEFAULT_THRESHOLDS = {"model": Severity.MEDIUM, "dataset": Severity.HIGH}


@dataclass(frozen=True)
class RecordResult:
    version: ArtifactVersionPublic
    manifest: Manifest
    scan: ScanReport
    bundle: str
    oms_bundle: str | None = None
    locations: Locations | None = None  # where the bytes were read, for an object-store URI

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "ref": self.version.ref,
            "name": self.version.name,
            "version": self.version.version,
            "kind": self.version.kind,
            "digest": self.manifest.ref,
            "files": len(self.manifest.files),
            "size": self.manifest.total_size,
            "signer": self.version.signer,
            "ledger_index": self.version.entry_idx,
            "scan": self.scan.summary(),
        }
        if self.locations is not None:
            out["locations"] = self.locations.to_json()
        return out


def record(
    path: Path | str,
    *,
    name: str,
    kind: Kind | str,
    ledger: Ledger,
    signer: Signer,
    inputs: Sequence[str] = (),
    activity: Activity | str = Activity.TRAINED_ON,
    threshold: Severity | None = None,
    allow_flagged: bool = False,
    allow_symlinks: bool = False,
    oms: bool = True,
    progress: ProgressCallback | None = None,
    tool_version: str | None = None,
    dvc: DvcInfo | None = None,
    activity_details: Mapping[str, Any] | None = None,
    dataset: DatasetOptions | None = None,
    on_signed: Callable[[str, str | None], None] | None = None,
    scan_options: ScanOptions | None = None,
) -> RecordResult:
    """Record one artifact version; raise before writing anything if a step fails.

    ``path`` is a local file or directory, or an object-store URI (``s3://bucket/prefix``,
    ``gs://``, ``az://``, ``hf://``, ``https://``, ``file://``, ``memory://``): its objects are
    hashed into a private local copy in one read (:func:`~custody.provenance.hashing.objects.
    fetch_private`), the copy is scanned, and each object's URI and identity are signed in the
    statement's ``locations`` claim. The copy is removed once the record is appended.

    Models are also signed in OpenSSF Model Signing form (``oms``), so ``model_signing verify``
    accepts them; that signature is kept in the ledger and exported by ``custody bundle --oms``.
    Tabular datasets are compared with a baseline (see :mod:`custody.provenance.scanning.datasets`).
    The default threshold is ``medium`` for models and ``high`` for datasets (harmless drift
    and schema changes are reported, poisoning and breaking schema changes refuse).

    ``on_signed(bundle, oms_bundle)`` runs under the append lock once the record is signed and
    before it is committed: if it raises, nothing is appended (see the module docstring).

    An input that is revoked or flagged, or made from one (anything upstream), refuses with
    ``record.input_revoked``; with ``allow_flagged`` it is recorded, and its signed scan summary
    is marked flagged with the ``upstream_flag`` (so verify and lineage refuse it). The chain is
    walked by :class:`~custody.provenance.verification.chain.ChainWalker` in flags-only mode,
    before hashing.
    ``scan_options`` carry the policy's allowed pickle globals
    (:meth:`custody.provenance.workspace.Workspace.scan_options`).
    """
    check_name(name)
    kind, activity = Kind.of(kind), Activity.of(activity)
    links = [InputLink(version=ledger.resolve(ref), activity=activity) for ref in inputs]
    if len({link.version.id for link in links}) != len(links):
        raise UsageError("the same input is given twice", hint="list each --input once")
    upstream_flag = _check_inputs(ledger, [link.version for link in links],
                                 allow_flagged=allow_flagged)
    if threshold is None:
        threshold = _DEFAULT_THRESHOLDS[kind]
    plan = _Plan(name=name, kind=kind, links=links, upstream_flag=upstream_flag,
                 threshold=threshold, allow_flagged=allow_flagged, oms=oms,
                 tool_version=tool_version or __version__, activity_details=activity_details,
                 dataset=dataset or DatasetOptions(), on_signed=on_signed,
                 scan_options=scan_options)
    if isinstance(path, str) and is_uri(path):
        from custody.provenance.hashing.objects import fetch_private

        with fetch_private(path, progress=progress) as fetched:
            assert fetched.copy is not None  # noqa: S101 - fetch_private always makes it
            return _record_hashed(plan, ledger, signer, fetched.copy, fetched.manifest,
                                  shown=fetched.source, dvc=None, locations=fetched.locations)
    path = Path(path)
    if dvc is None:  # raises dvc.workspace_mismatch if DVC tracks it and the bytes differ
        dvc = check_dvc_workspace(path)
    manifest = hash_path(path, allow_symlinks=allow_symlinks, progress=progress)
    return _record_hashed(plan, ledger, signer, path, manifest, shown=str(path), dvc=dvc,
                          locations=None)


@dataclass(frozen=True)
class _Plan:
    """What ``record`` was asked, checked before any byte was read."""

    name: str
    kind: Kind
    links: list[InputLink]
    upstream_flag: UpstreamFlag | None
    threshold: Severity
    allow_flagged: bool
    oms: bool
    tool_version: str
    activity_details: Mapping[str, Any] | None
    dataset: DatasetOptions
    on_signed: Callable[[str, str | None], None] | None
    scan_options: ScanOptions | None


def _record_hashed(plan: _Plan, ledger: Ledger, signer: Signer, path: Path, manifest: Manifest,
                   *, shown: str, dvc: DvcInfo | None, locations: Locations | None
                   ) -> RecordResult:
    """Scan, sign and append the bytes at ``path`` (hashed into ``manifest``)."""
    kind, threshold = plan.kind, plan.threshold
    report = scan_manifest(path, manifest, threshold=threshold, options=plan.scan_options,
                           shown=shown)
    assessment = None
    if kind == "dataset":
        report, assessment = with_dataset_checks(report, path, ledger=ledger, name=plan.name,
                                                 dataset=plan.dataset)
    if report.refused and not plan.allow_flagged:
        worst = report.blocking()
        first = worst[0] if worst else None
        detail = f"{first.path}: {first.message} [{first.rule_id}]" if first else "scan error"
        raise ScanRefusedError(
            f"not recorded: {shown} has {len(worst)} finding(s) at or above "
            f"{threshold.label}; first: {detail}",
            rule=first.rule_id if first else "scan.error",
            hint="inspect with `custody scan`; pass --allow-flagged to record it as flagged "
            "(verify will then refuse it and everything made from it)",
            subject=shown,
        )
    recorded_inputs = [
        RecordedInput(
            name=link.version.name,
            version=link.version.version,
            algorithm=link.version.digest_algorithm,
            digest=link.version.digest,
            activity=link.activity,
        )
        for link in plan.links
    ]
    summary, scan_json = report.summary(), report.to_json()
    if plan.upstream_flag is not None:
        marker = {"verdict": "flagged", "upstream_flag": plan.upstream_flag.to_json()}
        summary, scan_json = {**summary, **marker}, {**scan_json, **marker}
    bundles: list[str] = []
    oms_bundle = None
    if plan.oms and kind == "model":
        oms_statement = oms_manifest_from(manifest, path).statement().to_bytes()
        oms_bundle = signer.sign_statement(oms_statement)

    def build(version: int) -> SignedRecord:
        statement = build_statement(
            name=plan.name,
            kind=kind,
            version=version,
            manifest=manifest,
            inputs=recorded_inputs,
            scan_summary=summary,
            recorded_at=datetime.now(UTC),
            tool_version=plan.tool_version,
            dvc=dvc.to_json() if dvc is not None else None,
            activity=plan.activity_details,
            dataset=assessment.claims if assessment is not None else None,
            locations=locations,
        ).to_bytes()
        bundle = signer.sign_statement(statement)
        bundles.append(bundle)
        if plan.on_signed is not None:
            plan.on_signed(bundle, oms_bundle)
        return SignedRecord(
            statement=statement,
            bundle=bundle,
            signer=signer.identity,
            scan_report=scan_json,
            signer_key=signer.public_key_pem,
            oms_bundle=oms_bundle,
            keyless=_keyless_facts(bundle),
            entry_extras=assessment.entry_extras if assessment is not None else None,
        )

    version = ledger.append_version(
        name=plan.name, kind=kind, manifest=manifest, inputs=plan.links, build=build
    )
    return RecordResult(version=version, manifest=manifest, scan=report, bundle=bundles[-1],
                        oms_bundle=oms_bundle, locations=locations)


def _check_inputs(ledger: Ledger, inputs: list[ArtifactVersionPublic], *,
                 allow_flagged: bool) -> UpstreamFlag | None:
    """Refuse inputs that are, or come from, a revoked or flagged version (the flag, with
    ``allow_flagged``); the walk is verify's, on the signed log, signer trust aside."""
    from custody.provenance.verification.inclusion import InclusionChecker

    if not inputs:
        return None
    walker = ChainWalker(ledger, None, InclusionChecker(ledger, None))
    flag = walker.first_flag(inputs)
    if flag is None or allow_flagged:
        return flag
    what = "revoked" if flag.revoked else "flagged"
    via = "" if flag.depth == 1 else f" (upstream of an input, depth {flag.depth})"
    raise VerificationError(
        f"not recorded: input {flag.ref}{via} is {what}: {flag.reason}",
        rule="record.input_revoked",
        hint="record from a version that is not revoked or flagged (see `custody lineage "
        f"{flag.ref} --downstream`), or pass --allow-flagged to record it as flagged (verify "
        "will then refuse it and everything made from it)",
        subject=flag.ref,
    )


def _keyless_facts(bundle: str) -> dict[str, object] | None:
    if classify_bundle(bundle, source="new bundle") not in (BundleKind.KEYLESS_DSSE,
                                                            BundleKind.KEYLESS_ARTIFACT):
        return None
    return keyless_facts(bundle, source="new bundle").to_json()
