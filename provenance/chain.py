"""Walking the upstream chain: every record checked once against the policy.

For each version: its log entry is included under the signed checkpoint, its bundle is the one
in that entry and verifies with the signers the policy trusts for its kind and name, the signed
statement says what the index rows say, its recorded scan verdict passes the kind's threshold,
it is not revoked, not older than the policy allows, and (for models, when required) it was
trained on at least one dataset. The first failure is raised with the node and the rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from custody.errors import VerificationError
from custody.provenance.attestation import RecordClaims, parse_claims
from custody.provenance.ledger.models import ArtifactVersionPublic
from custody.provenance.ledger.store import Ledger
from custody.provenance.policy import Policy
from custody.provenance.transparency import InclusionChecker
from custody.signing.statement import Statement
from custody.validators.findings import Severity


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

    @classmethod
    def of(cls, version: ArtifactVersionPublic, claims: RecordClaims, *, signer: str,
           scan_verdict: str, depth: int, inclusion: dict[str, Any] | None) -> NodeResult:
        return cls(
            ref=version.ref,
            kind=version.kind,
            digest=f"{version.digest_algorithm}:{version.digest}",
            signer=signer,
            scan_verdict=scan_verdict,
            depth=depth,
            inputs=tuple(f"{i.name}@{i.version}" for i in claims.inputs),
            inclusion=inclusion,
        )

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


class ChainWalker:
    """Checks records and walks upstream inputs, each version once."""

    def __init__(self, ledger: Ledger, policy: Policy, inclusion: InclusionChecker):
        self.ledger = ledger
        self.policy = policy
        self.inclusion = inclusion
        self.now = datetime.now(UTC)
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
        verifier = self.policy.verifier_for(version.kind, version.name)
        verified = verifier.verify_bundle(stored.bundle, source=where)
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
        self._policy_checks(version, claims, depth)
        verdict = str(claims.scan.get("verdict", "error"))
        top = claims.scan.get("max_severity")
        if verdict != "clean" and (
            top is None or Severity.parse(str(top)) >= self.policy.threshold_for(version.kind)
        ):
            label = "it" if depth == 0 else f"upstream input {version.ref} (depth {depth})"
            raise VerificationError(
                f"{label} was recorded with scan verdict {verdict!r} (max severity {top})",
                rule="chain.flagged" if depth else "scan.flagged",
                hint=f"inspect {version.ref} with `custody lineage` and its scan report",
                subject=version.ref,
            )
        return claims, verified.signer, included.to_json()

    def _policy_checks(self, version: ArtifactVersionPublic, claims: RecordClaims,
                       depth: int) -> None:
        label = "it" if depth == 0 else f"upstream input {version.ref} (depth {depth})"
        revoked = self.ledger.revocations([version.id]).get(version.id)
        if revoked is not None:
            raise VerificationError(
                f"{label} was revoked (ledger entry {revoked.entry_idx}): {revoked.reason}",
                rule="chain.revoked" if depth else "revoked",
                hint=f"see `custody lineage {version.ref} --downstream` for what it affects",
                subject=version.ref,
            )
        age = self.policy.max_age_days
        if age is not None and self.now - version.recorded_at > timedelta(days=age):
            raise VerificationError(
                f"{label} was recorded {(self.now - version.recorded_at).days} days ago; the "
                f"policy allows {age}",
                rule="policy.max_age", hint="record a fresh version", subject=version.ref,
            )
        if self.policy.require_baseline and version.kind == "dataset":
            compared = claims.dataset or {}
            if not compared.get("schema_fingerprint") or (
                    version.version > 1 and not compared.get("baseline")):
                raise VerificationError(
                    f"{label} is a dataset recorded without a baseline comparison",
                    rule="policy.baseline_required",
                    hint="record it with --baseline PATH|REF (or after a previous version)",
                    subject=version.ref,
                )
        if (self.policy.require_trained_on and version.kind == "model"
                and not any(i.activity == "trained_on" for i in claims.inputs)):
            raise VerificationError(
                f"{label} is a model with no trained_on dataset in its record",
                rule="policy.trained_on_required",
                hint="record the model with --input DATASET --activity trained_on",
                subject=version.ref,
            )

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
            self.memo[upstream.id] = NodeResult.of(
                upstream, up_claims, signer=signer,
                scan_verdict=str(up_claims.scan.get("verdict")), depth=depth,
                inclusion=inclusion)
            self.walk_inputs(upstream, up_claims, depth + 1)


def _refs(items: list[tuple[str, int, str]]) -> str:
    return ", ".join(f"{n}@{v} ({a})" for n, v, a in items) or "none"

