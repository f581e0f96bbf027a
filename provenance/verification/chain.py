"""Walking the upstream chain: every record checked once against the policy.

For each version: its log entry is included under the signed checkpoint, its bundle is the one
in that entry and verifies with the signers the policy trusts for its kind and name, the signed
statement says what the index rows say, its recorded scan verdict passes the kind's threshold,
it is not revoked, not older than the policy allows, and (for models, when required) it was
trained on at least one dataset. The first failure is raised with the node and the rule.

Every fact comes from the signed log, never from a table an administrator could edit alone: a
revocation is a ``revocation`` entry of the log (found with one query per batch of versions,
:meth:`Ledger.revocation_entries`) proved under the pinned checkpoint before it is honoured, and
a record's age is its signed statement's ``recordedAt``, not the ``recorded_at`` column.

``record`` walks its inputs with the same walker in *flags only* mode (``policy=None``): no
signer trust or policy requirements, only what the signed log says about each upstream version:
its revocation, its signed scan verdict, and the ``upstream_flag`` a version recorded with
``--allow-flagged`` from a flagged or revoked input carries in its signed scan summary. The
first such flag found is kept in :attr:`ChainWalker.flag` before it is raised.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from custody.errors import VerificationError
from custody.provenance.ledger.models import ArtifactVersionPublic
from custody.provenance.ledger.store import Ledger, SignedRevocation
from custody.provenance.policy.core import Policy
from custody.provenance.verification.attestation import RecordClaims, parse_claims
from custody.provenance.verification.inclusion import InclusionChecker
from custody.signing.bundle_info import load_bundle_json
from custody.signing.dsse import Envelope
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


@dataclass(frozen=True)
class UpstreamFlag:
    """Why a version cannot be trusted because of itself or something upstream (signed data)."""

    ref: str  # the revoked or flagged version
    depth: int  # hops from the version being checked (0: itself)
    revoked: bool
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"ref": self.ref, "depth": self.depth, "revoked": self.revoked,
                "reason": self.reason}

    @classmethod
    def from_json(cls, data: Any, *, depth: int) -> UpstreamFlag | None:
        """The ``upstream_flag`` of a signed scan summary, seen ``depth`` hops away."""
        if not isinstance(data, dict):
            return None
        return cls(ref=str(data.get("ref")), depth=depth + int(data.get("depth", 0)),
                   revoked=bool(data.get("revoked")), reason=str(data.get("reason")))

    def describe(self) -> str:
        what = "revoked" if self.revoked else "flagged"
        where = "it" if self.depth == 0 else f"upstream input {self.ref} (depth {self.depth})"
        return f"{where} was {what}: {self.reason}"


class ChainWalker:
    """Checks records and walks upstream inputs, each version once.

    With ``policy=None`` only flags are checked (see the module docstring)."""

    def __init__(self, ledger: Ledger, policy: Policy | None, inclusion: InclusionChecker):
        self.ledger = ledger
        self.policy = policy
        self.inclusion = inclusion
        self.now = datetime.now(UTC)
        self.memo: dict[int, NodeResult] = {}
        self.flag: UpstreamFlag | None = None
        self._revocations: dict[int, SignedRevocation | None] = {}  # by version id, proved

    def prefetch_revocations(self, versions: Iterable[ArtifactVersionPublic]) -> None:
        """Read the signed revocations of these versions (one query for all of them)."""
        missing = {v.id: v for v in versions if v.id not in self._revocations}
        if not missing:
            return
        found = self.ledger.revocation_entries(list(missing.values()),
                                               below=self.inclusion.checkpoint.size)
        for vid in missing:
            self._revocations[vid] = found.get(vid)

    def revocation(self, version: ArtifactVersionPublic, *, prove: bool = True
                   ) -> SignedRevocation | None:
        """The signed revocation of ``version``, proved included in the log signed by the pinned
        ledger key (a revocation entry that is not refuses: the log was edited). ``prove=False``
        only reads what the entry states (for display next to a verdict)."""
        self.prefetch_revocations([version])
        revocation = self._revocations[version.id]
        if revocation is not None and prove:
            self.inclusion.check_payload(revocation.entry_idx, revocation.payload,
                                         subject=f"the revocation of {version.ref}")
        return revocation

    def evaluate(self, version: ArtifactVersionPublic) -> VerificationError | None:
        """Why verify would refuse ``version`` on the chain (its bytes aside), or None.

        Each call walks afresh (``memo`` also holds nodes whose own inputs then failed)."""
        self.memo, self.flag = {}, None
        try:
            claims, _, _ = self.check_record(version, depth=0)
            self.walk_inputs(version, claims, depth=1)
        except VerificationError as exc:
            return exc
        return None

    def first_flag(self, inputs: list[ArtifactVersionPublic]) -> UpstreamFlag | None:
        """Flags-only walk from the inputs of a version about to be recorded (at depth 1)."""
        self.flag = None
        try:
            self.prefetch_revocations(inputs)
            for version in inputs:
                if version.id in self.memo:
                    continue
                claims, signer, inclusion = self.check_record(version, depth=1)
                self.memo[version.id] = NodeResult.of(
                    version, claims, signer=signer, scan_verdict=str(claims.scan.get("verdict")),
                    depth=1, inclusion=inclusion)
                self.walk_inputs(version, claims, depth=2)
        except VerificationError:
            if self.flag is None:
                raise
        return self.flag

    def upstream_of(self, node: NodeResult, version: ArtifactVersionPublic,
                    claims: RecordClaims) -> tuple[NodeResult, ...]:
        """Walk the inputs of a version already checked as ``node``; every upstream node once."""
        self.memo[version.id] = node
        self.walk_inputs(version, claims, depth=1)
        return tuple(n for vid, n in self.memo.items() if vid != version.id)

    def _raise_flag(self, flag: UpstreamFlag, *, subject: str) -> None:
        self.flag = flag
        if flag.depth:
            rule = "chain.revoked" if flag.revoked else "chain.flagged"
        else:
            rule = "revoked" if flag.revoked else "scan.flagged"
        raise VerificationError(
            flag.describe(),
            rule=rule,
            hint=f"see `custody lineage {flag.ref} --downstream` for what it affects"
            if flag.revoked else f"inspect {flag.ref} with `custody lineage {flag.ref}` and "
            "its scan report",
            subject=subject,
        )

    def _signed_payload(self, bundle: str, where: str) -> bytes:
        """The statement inside a bundle of the signed log, without judging its signer."""
        data = load_bundle_json(bundle, source=where)
        return Envelope.from_json(data.get("dsseEnvelope")).payload

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
        if self.policy is None:
            payload, signer = self._signed_payload(stored.bundle, where), version.signer
        else:
            verifier = self.policy.verifier_for(version.kind, version.name)
            verified = verifier.verify_bundle(stored.bundle, source=where)
            payload, signer = verified.payload, verified.signer
        if payload != stored.statement:
            raise VerificationError(
                f"{where}: the stored statement differs from the signed one",
                rule="ledger.inconsistent",
                hint="the ledger database was edited; run `custody audit verify`",
                subject=version.ref,
            )
        claims = parse_claims(Statement.from_bytes(payload), source=where)
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
        revoked = self.revocation(version)
        if revoked is not None:
            self._raise_flag(UpstreamFlag(version.ref, depth, True, f"{revoked.reason} (ledger "
                                          f"entry {revoked.entry_idx})"), subject=version.ref)
        if self.policy is not None:
            self._policy_checks(version, claims, depth, self.policy)
        marked = UpstreamFlag.from_json(claims.scan.get("upstream_flag"), depth=depth)
        if marked is not None:
            self._raise_flag(marked, subject=version.ref)
        verdict = str(claims.scan.get("verdict", "error"))
        top = claims.scan.get("max_severity")
        if verdict != "clean" and (self.policy is None or top is None or Severity.parse(
                str(top)) >= self.policy.threshold_for(version.kind)):
            self._raise_flag(UpstreamFlag(version.ref, depth, False, f"recorded with scan "
                                          f"verdict {verdict!r} (max severity {top})"),
                             subject=version.ref)
        return claims, signer, included.to_json()

    def _policy_checks(self, version: ArtifactVersionPublic, claims: RecordClaims,
                       depth: int, policy: Policy) -> None:
        label = "it" if depth == 0 else f"upstream input {version.ref} (depth {depth})"
        age = policy.max_age_days
        if age is not None:
            recorded = _signed_time(claims, version.ref)  # the signature's time, not the column's
            if self.now - recorded > timedelta(days=age):
                raise VerificationError(
                    f"{label} was recorded {(self.now - recorded).days} days ago (signed "
                    f"recordedAt {claims.recorded_at}); the policy allows {age}",
                    rule="policy.max_age", hint="record a fresh version", subject=version.ref,
                )
        if policy.require_baseline and version.kind == "dataset":
            compared = claims.dataset or {}
            if not compared.get("schema_fingerprint") or (
                    version.version > 1 and not compared.get("baseline")):
                raise VerificationError(
                    f"{label} is a dataset recorded without a baseline comparison",
                    rule="policy.baseline_required",
                    hint="record it with --baseline PATH|REF (or after a previous version)",
                    subject=version.ref,
                )
        if (policy.require_trained_on and version.kind == "model"
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
        if self.policy is not None and depth > self.policy.max_depth and claims.inputs:
            raise VerificationError(
                f"upstream chain of {version.ref} is deeper than the policy's maximum "
                f"({self.policy.max_depth})",
                rule="chain.too_deep",
                subject=version.ref,
            )
        by_ref = {(v.name, v.version): v for _, v in edges}
        self.prefetch_revocations(by_ref.values())
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


def _signed_time(claims: RecordClaims, ref: str) -> datetime:
    """The signed statement's ``recordedAt`` as an aware UTC datetime (naive means UTC)."""
    try:
        moment = datetime.fromisoformat(claims.recorded_at)
    except ValueError:
        raise VerificationError(
            f"the signed record of {ref} has recordedAt {claims.recorded_at[:40]!r}, which is "
            "not a time", rule="statement.malformed", subject=ref) from None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _refs(items: list[tuple[str, int, str]]) -> str:
    return ", ".join(f"{n}@{v} ({a})" for n, v, a in items) or "none"

