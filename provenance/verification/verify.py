"""verify: re-hash the bytes, find their record, check signature, scan and upstream chain.

``verify`` returns a :class:`VerificationReport` or raises
:class:`~custody.errors.VerificationError` (or :class:`~custody.errors.ScanRefusedError`) naming
the rule, the file or artifact, and what to do. It never returns a failed report.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from custody.errors import ScanRefusedError, UsageError, VerificationError
from custody.provenance.hashing.files import ProgressCallback, hash_path
from custody.provenance.hashing.manifest import Manifest, diff_manifests
from custody.provenance.ledger.models import ArtifactVersionPublic
from custody.provenance.ledger.store import Ledger
from custody.provenance.log.checkpoint import NoteVerifier
from custody.provenance.policy.core import Policy
from custody.provenance.scanning.step import scan_manifest
from custody.provenance.verification.attestation import parse_claims
from custody.provenance.verification.chain import ChainWalker, NodeResult
from custody.provenance.verification.inclusion import InclusionChecker
from custody.provenance.verification.witnessing import Witnessing, check_chain
from custody.signing.statement import Statement
from custody.validators.findings import ScanReport
from custody.validators.interface import ScanOptions


@dataclass(frozen=True)
class VerificationReport:
    path: str
    manifest: Manifest
    artifact: NodeResult
    scan: ScanReport
    chain: tuple[NodeResult, ...] = field(default_factory=tuple)
    witnessed: Witnessing | None = None  # the cosigned checkpoint, when the policy wants one

    def to_json(self) -> dict[str, Any]:
        out = {
            "path": self.path,
            "verdict": "verified",
            "digest": self.manifest.ref,
            "artifact": self.artifact.to_json(),
            "scan": self.scan.summary(),
            "chain": [n.to_json() for n in self.chain],
        }
        if self.witnessed is not None:
            out["witnessed"] = self.witnessed.to_json()
        return out


def verify(
    path: str | Path,
    policy: Policy | str | Path,
    *,
    ledger: Ledger | str | None = None,
    name: str | None = None,
    ledger_verifier: NoteVerifier | None = None,
    allow_symlinks: bool = False,
    progress: ProgressCallback | None = None,
) -> VerificationReport:
    """Verify ``path`` against its ledger record and the whole upstream chain.

    ``policy`` is a :class:`Policy` or the path of a policy file. ``ledger`` is an open
    :class:`Ledger`, a ledger URL or path, or None for the ledger the CLI would use
    (``$CUSTODY_LEDGER``, else the nearest ``.custody/`` upward from the working directory).
    Every record on the chain must also be included in the ledger's newest checkpoint, signed by
    ``ledger_verifier``: by default the workspace's pinned ledger key (for an open Ledger, the
    key stored in the ledger).
    """
    source = Path(path)
    trusted = as_policy(policy)
    manifest = hash_path(source, allow_symlinks=allow_symlinks, progress=progress)
    with open_ledger(ledger) as (opened, pinned):
        return verify_manifest(source, source, manifest, trusted, ledger=opened, name=name,
                               ledger_verifier=ledger_verifier or pinned)


def as_policy(policy: Policy | str | Path) -> Policy:
    """A Policy, or the policy file at that path (validated)."""
    if isinstance(policy, Policy):
        return policy
    if not isinstance(policy, (str, Path)):
        raise UsageError(f"policy must be a custody.Policy or a policy file path, not "
                         f"{type(policy).__name__}",
                         hint="pass custody.Policy.from_key_files([...]) or 'policy.toml'")
    from custody.provenance.policy.file import load_policy

    return load_policy(Path(policy))


@contextmanager
def open_ledger(ledger: Ledger | str | Path | None
                ) -> Iterator[tuple[Ledger, NoteVerifier | None]]:
    """The ledger to verify against, and the pinned checkpoint key that goes with it.

    An open :class:`Ledger` is used as it is (no pinned key); a URL or path, or None, is found
    and opened the way the CLI does it, and closed afterwards.
    """
    if isinstance(ledger, Ledger):
        yield ledger, None
        return
    from custody.provenance.workspace import resolve

    workspace = resolve(str(ledger) if ledger is not None else None)
    opened = workspace.open_ledger()
    try:
        yield opened, workspace.ledger_verifier()
    finally:
        opened.close()


def verify_manifest(
    path: Path,
    scan_root: Path,
    manifest: Manifest,
    policy: Policy,
    *,
    ledger: Ledger,
    name: str | None = None,
    ledger_verifier: NoteVerifier | None = None,
) -> VerificationReport:
    """Verify already-hashed bytes: ``manifest`` was computed from ``scan_root`` (the path
    itself, or a private copy of it), which is what gets scanned."""
    version = find_record(ledger, manifest, name, str(path))
    walker = ChainWalker(ledger, policy, InclusionChecker(ledger, ledger_verifier))
    claims, signer, inclusion = walker.check_record(version, depth=0)
    if claims.manifest != manifest:
        raise VerificationError(
            f"{path}: the bytes do not match the signed manifest of {version.ref} "
            f"({diff_manifests(claims.manifest, manifest).describe()})",
            rule="artifact.manifest_mismatch",
            subject=str(path),
        )
    scan = scan_or_refuse(scan_root, manifest, policy, kind=version.kind, display=path)
    if version.kind == "dataset" and policy.expectation_suites:
        scan = _expectations(scan_root, scan, policy, display=path)
    node = NodeResult.of(version, claims, signer=signer, scan_verdict=scan.verdict.value,
                         depth=0, inclusion=inclusion)
    chain = walker.upstream_of(node, version, claims)
    witnessed = check_chain(policy, walker.inclusion, (node, *chain), subject=version.ref,
                            now=walker.now)
    return VerificationReport(str(path), manifest, node, scan, chain, witnessed)


def _expectations(root: Path, scan: ScanReport, policy: Policy, *, display: Path
                  ) -> ScanReport:
    """Run the policy's great-expectations suites on a dataset; a failure refuses."""
    from custody.validators.dataset.expectations import run_suite

    findings = [f for suite in policy.expectation_suites
                for f in run_suite(root, suite, path=str(display))]
    merged = ScanReport(scan.path, scan.findings + tuple(findings), scan.errored,
                        policy.threshold_for("dataset"), (*scan.scanners, "expectations"))
    if merged.refused:
        worst = merged.blocking()
        first = worst[0] if worst else None
        raise ScanRefusedError(
            f"{display}: the policy's expectation suites fail: "
            f"{first.message if first else 'a suite could not run'}",
            rule=first.rule_id if first else "expectation.error",
            hint="see `custody scan` with the suite, or fix the data", subject=str(display))
    return merged


def scan_or_refuse(path: Path, manifest: Manifest, policy: Policy, *, kind: str | None = None,
                   display: Path | None = None) -> ScanReport:
    threshold = policy.threshold_for(kind) if kind else policy.scan_threshold
    options = ScanOptions(extra_safe_globals=policy.extra_safe_globals,
                          pickle_profiles=policy.pickle_profiles)
    scan = scan_manifest(path, manifest, threshold=threshold, options=options)
    if scan.refused:
        worst = scan.blocking()
        detail = f"{worst[0].path}: {worst[0].message}" if worst else "a scanner failed"
        raise ScanRefusedError(
            f"{display or path}: scan found {len(worst)} finding(s) at or above "
            f"{threshold.label}; first: {detail}",
            rule=worst[0].rule_id if worst else "scan.error",
            hint="run `custody scan` for the full report; do not load this artifact",
            subject=str(display or path),
        )
    return scan


def find_record(
    ledger: Ledger, manifest: Manifest, name: str | None, display: str
) -> ArtifactVersionPublic:
    matches = ledger.find_by_digest(manifest.algorithm, manifest.digest)
    if name is not None:
        matches = [m for m in matches if m.name == name]
    if matches:
        return matches[-1]
    if name is not None:
        known = ledger.list_versions(name)
        if known:
            latest = known[-1]
            recorded = parse_claims(
                Statement.from_bytes(ledger.stored_record(latest).statement), source=latest.ref
            ).manifest
            raise VerificationError(
                f"{display} does not match any recorded version of {name}; against "
                f"{latest.ref}: {diff_manifests(recorded, manifest).describe()}",
                rule="artifact.modified",
                hint="the bytes changed since they were recorded: do not load them; record a "
                "new version if the change is intended",
                subject=display,
            )
    else:
        near = ledger.versions_sharing_files(f.sha256 for f in manifest.files)
        if manifest.is_directory and near:
            best = near[0]
            recorded = parse_claims(
                Statement.from_bytes(ledger.stored_record(best).statement), source=best.ref
            ).manifest
            raise VerificationError(
                f"{display} does not match any record; closest is {best.ref}: "
                f"{diff_manifests(recorded, manifest).describe()}",
                rule="artifact.modified",
                hint="the directory changed since it was recorded: do not load it",
                subject=display,
            )
    raise VerificationError(
        f"{display} ({manifest.ref}) is not recorded in the ledger"
        + (f" under the name {name}" if name else ""),
        rule="record.not_found",
        hint="these exact bytes were never recorded (or were modified): do not load them",
        subject=display,
    )
