"""verify: re-hash the bytes, find their record, check signature, scan and upstream chain.

``verify`` returns a :class:`VerificationReport` or raises
:class:`~custody.errors.VerificationError` (or :class:`~custody.errors.ScanRefusedError`) naming
the rule, the file or artifact, and what to do. It never returns a failed report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from custody.errors import ScanRefusedError, VerificationError
from custody.provenance.attestation import RecordClaims, parse_claims
from custody.provenance.checkpoint import NoteVerifier
from custody.provenance.hashing import ProgressCallback, hash_path
from custody.provenance.ledger.models import ArtifactVersionPublic
from custody.provenance.ledger.store import Ledger
from custody.provenance.manifest import Manifest, diff_manifests
from custody.provenance.policy import Policy
from custody.provenance.record import scan_manifest
from custody.provenance.transparency import InclusionChecker
from custody.signing.statement import Statement
from custody.validators.findings import ScanReport, Severity
from custody.validators.interface import ScanOptions


@dataclass(frozen=True)
class NodeResult:
    """One verified artifact version in the chain."""

    ref: str
    kind: str
    digest: str
    signer: str
    scan_verdict: str
    depth: int
    inputs: tuple[str, ...] = ()
    inclusion: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "kind": self.kind,
            "digest": self.digest,
            "signer": self.signer,
            "scan_verdict": self.scan_verdict,
            "depth": self.depth,
            "inputs": list(self.inputs),
            "inclusion": self.inclusion,
        }


@dataclass(frozen=True)
class VerificationReport:
    path: str
    manifest: Manifest
    artifact: NodeResult
    scan: ScanReport
    chain: tuple[NodeResult, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "verdict": "verified",
            "digest": self.manifest.ref,
            "artifact": self.artifact.to_json(),
            "scan": self.scan.summary(),
            "chain": [n.to_json() for n in self.chain],
        }


def verify(
    path: Path,
    policy: Policy,
    *,
    ledger: Ledger,
    name: str | None = None,
    ledger_verifier: NoteVerifier | None = None,
    allow_symlinks: bool = False,
    progress: ProgressCallback | None = None,
) -> VerificationReport:
    """Verify ``path`` against its ledger record and the whole upstream chain.

    Every record on the chain must also be included in the ledger's newest checkpoint, signed by
    ``ledger_verifier`` (the pinned ledger key; without one, the key stored in the ledger).
    """
    manifest = hash_path(path, allow_symlinks=allow_symlinks, progress=progress)
    version = _find_record(ledger, manifest, name, str(path))
    walker = _ChainWalker(ledger, policy, InclusionChecker(ledger, ledger_verifier))
    claims, signer, inclusion = walker.check_record(version, depth=0)
    if claims.manifest != manifest:
        raise VerificationError(
            f"{path}: the bytes do not match the signed manifest of {version.ref} "
            f"({diff_manifests(claims.manifest, manifest).describe()})",
            rule="artifact.manifest_mismatch",
            subject=str(path),
        )
    scan = scan_or_refuse(path, manifest, policy)
    node = NodeResult(
        ref=version.ref,
        kind=version.kind,
        digest=f"{version.digest_algorithm}:{version.digest}",
        signer=signer,
        scan_verdict=scan.verdict.value,
        depth=0,
        inputs=tuple(f"{i.name}@{i.version}" for i in claims.inputs),
        inclusion=inclusion,
    )
    walker.memo[version.id] = node
    walker.walk_inputs(version, claims, depth=1)
    chain = tuple(n for vid, n in walker.memo.items() if vid != version.id)
    return VerificationReport(str(path), manifest, node, scan, chain)


def scan_or_refuse(path: Path, manifest: Manifest, policy: Policy) -> ScanReport:
    options = ScanOptions(extra_safe_globals=policy.extra_safe_globals)
    scan = scan_manifest(path, manifest, threshold=policy.scan_threshold, options=options)
    if scan.refused:
        worst = scan.blocking()
        detail = f"{worst[0].path}: {worst[0].message}" if worst else "a scanner failed"
        raise ScanRefusedError(
            f"{path}: scan found {len(worst)} finding(s) at or above "
            f"{policy.scan_threshold.label}; first: {detail}",
            rule=worst[0].rule_id if worst else "scan.error",
            hint="run `custody scan` for the full report; do not load this artifact",
            subject=str(path),
        )
    return scan


def _find_record(
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


class _ChainWalker:
    """Checks records and walks upstream inputs, each version once."""

    def __init__(self, ledger: Ledger, policy: Policy, inclusion: InclusionChecker):
        self.ledger = ledger
        self.policy = policy
        self.verifier = policy.verifier()
        self.inclusion = inclusion
        self.memo: dict[int, NodeResult] = {}

    def check_record(
        self, version: ArtifactVersionPublic, *, depth: int
    ) -> tuple[RecordClaims, str, dict[str, Any]]:
        stored = self.ledger.stored_record(version)
        where = f"ledger record {version.ref}"
        included = self.inclusion.check(version.entry_idx, subject=where)
        entry = self.inclusion.entry_payload(version.entry_idx)
        if entry.get("bundle") != stored.bundle:
            raise VerificationError(
                f"{where}: the stored bundle is not the one in the signed log entry "
                f"{version.entry_idx}",
                rule="ledger.inconsistent",
                hint="the ledger database was edited; run `custody audit verify`",
                subject=version.ref,
            )
        verified = self.verifier.verify_bundle(stored.bundle, source=where)
        if verified.payload != stored.statement:
            raise VerificationError(
                f"{where}: the stored statement differs from the signed one",
                rule="ledger.inconsistent",
                hint="the ledger database was edited; run `custody audit verify`",
                subject=version.ref,
            )
        claims = parse_claims(Statement.from_bytes(verified.payload), source=where)
        signed = (claims.name, claims.kind, claims.version, claims.manifest.algorithm,
                  claims.manifest.digest)
        indexed = (version.name, version.kind, version.version, version.digest_algorithm,
                   version.digest)
        if signed != indexed:
            raise VerificationError(
                f"{where}: the ledger row says {indexed[0]}@{indexed[2]} "
                f"{indexed[3]}:{indexed[4][:16]}…, the signature covers {signed[0]}@{signed[2]} "
                f"{signed[3]}:{signed[4][:16]}…",
                rule="statement.subject_mismatch",
                hint="the record's bundle belongs to another artifact; the ledger was edited",
                subject=version.ref,
            )
        verdict = str(claims.scan.get("verdict", "error"))
        top = claims.scan.get("max_severity")
        if verdict != "clean" and (
            top is None or Severity.parse(str(top)) >= self.policy.scan_threshold
        ):
            label = "it" if depth == 0 else f"upstream input {version.ref} (depth {depth})"
            raise VerificationError(
                f"{label} was recorded with scan verdict {verdict!r} (max severity {top})",
                rule="chain.flagged" if depth else "scan.flagged",
                hint=f"inspect {version.ref} with `custody lineage` and its scan report",
                subject=version.ref,
            )
        return claims, verified.signer, included.to_json()

    def walk_inputs(self, version: ArtifactVersionPublic, claims: RecordClaims, depth: int
                    ) -> None:
        edges = self.ledger.edges([version.id], upstream=True)
        indexed = sorted((v.name, v.version, e.activity) for e, v in edges)
        signed = sorted((i.name, i.version, i.activity) for i in claims.inputs)
        if indexed != signed:
            raise VerificationError(
                f"ledger lineage of {version.ref} differs from its signed inputs "
                f"(ledger: {_refs(indexed)}; signed: {_refs(signed)})",
                rule="ledger.inconsistent",
                hint="the ledger database was edited; run `custody audit verify`",
                subject=version.ref,
            )
        if depth > self.policy.max_depth and claims.inputs:
            raise VerificationError(
                f"upstream chain of {version.ref} is deeper than the policy's maximum "
                f"({self.policy.max_depth})",
                rule="chain.too_deep",
                subject=version.ref,
            )
        by_ref = {(v.name, v.version): v for _, v in edges}
        for item in claims.inputs:
            upstream = by_ref[(item.name, item.version)]
            if (upstream.digest_algorithm, upstream.digest) != (item.algorithm, item.digest):
                raise VerificationError(
                    f"input {upstream.ref} of {version.ref} has digest {upstream.digest[:16]}… "
                    f"in the ledger but {item.digest[:16]}… in the signed record",
                    rule="chain.digest_mismatch",
                    subject=upstream.ref,
                )
            if upstream.id in self.memo:
                continue
            try:
                up_claims, signer, inclusion = self.check_record(upstream, depth=depth)
            except VerificationError as exc:
                if exc.rule.startswith("chain."):
                    raise
                raise VerificationError(
                    f"upstream input {upstream.ref} of {version.ref} (depth {depth}) is not "
                    f"trusted: {exc.message}",
                    rule=f"chain.{exc.rule}",
                    hint=exc.hint,
                    subject=upstream.ref,
                ) from exc
            self.memo[upstream.id] = NodeResult(
                ref=upstream.ref,
                kind=upstream.kind,
                digest=f"{upstream.digest_algorithm}:{upstream.digest}",
                signer=signer,
                scan_verdict=str(up_claims.scan.get("verdict")),
                depth=depth,
                inputs=tuple(f"{i.name}@{i.version}" for i in up_claims.inputs),
                inclusion=inclusion,
            )
            self.walk_inputs(upstream, up_claims, depth + 1)


def _refs(items: list[tuple[str, int, str]]) -> str:
    return ", ".join(f"{n}@{v} ({a})" for n, v, a in items) or "none"
