"""What the service can check without the bytes: a recorded version and its upstream chain.

A client that holds the bytes sends their digest (or their manifest); the service finds the
record and checks everything ``custody verify`` checks on the ledger side: the bundle against
the policy's signers, that the stored statement is the signed one, inclusion under the newest
signed checkpoint, the recorded scan verdict, and every upstream input. It cannot re-hash or
re-scan bytes it never saw; reports say so (``bytes_checked: false``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from custody.errors import UsageError, VerificationError
from custody.provenance.hashing.manifest import Manifest, diff_manifests
from custody.provenance.ledger.models import ArtifactVersionPublic
from custody.provenance.ledger.store import Ledger
from custody.provenance.log.checkpoint import NoteVerifier
from custody.provenance.policy.core import Policy
from custody.provenance.verification.attestation import RecordClaims
from custody.provenance.verification.chain import ChainWalker, NodeResult
from custody.provenance.verification.inclusion import InclusionChecker
from custody.provenance.verification.verify import find_record
from custody.provenance.verification.witnessing import check_chain

_DIGEST_RE = re.compile(r"^(sha256(?:-manifest-v1)?):([0-9a-f]{64})$")
_BYTES_NOTE = ("the service checked the ledger record and its chain, not the bytes: run "
              "`custody verify PATH` (or open_verified) where the bytes are loaded")


@dataclass(frozen=True)
class RecordCheck:
    node: NodeResult
    chain: tuple[NodeResult, ...]
    claims: RecordClaims

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": "verified",
            "ref": self.node.ref,
            "digest": self.node.digest,
            "artifact": self.node.to_json(),
            "chain": [n.to_json() for n in self.chain],
            "bytes_checked": False,
            "note": _BYTES_NOTE,
        }


def check_version(ledger: Ledger, policy: Policy, verifier: NoteVerifier | None,
                  version: ArtifactVersionPublic) -> RecordCheck:
    """Check one recorded version and its whole upstream chain; raise a RefusedError if not."""
    walker = ChainWalker(ledger, policy, InclusionChecker(ledger, verifier))
    claims, signer, inclusion = walker.check_record(version, depth=0)
    node = NodeResult.of(version, claims, signer=signer,
                         scan_verdict=str(claims.scan.get("verdict")), depth=0,
                         inclusion=inclusion)
    chain = walker.upstream_of(node, version, claims)
    check_chain(policy, walker.inclusion, (node, *chain), subject=version.ref, now=walker.now)
    return RecordCheck(node, chain, claims)


def _parse_digest(text: str) -> tuple[str, str]:
    match = _DIGEST_RE.match(text.strip())
    if not match:
        raise UsageError(f"invalid digest {text[:80]!r}",
                         hint="use sha256:HEX or sha256-manifest-v1:HEX (64 lower-case hex)")
    return match.group(1), match.group(2)


def verify_digest(ledger: Ledger, policy: Policy, verifier: NoteVerifier | None, *,
                  digest: str | None = None, manifest: dict[str, Any] | None = None,
                  name: str | None = None) -> RecordCheck:
    """Verify the record of a digest, or of a manifest (then the signed manifest must equal it)."""
    if (digest is None) == (manifest is None):
        raise UsageError("give exactly one of digest and manifest")
    if manifest is not None:
        try:
            wanted = Manifest.from_json(manifest)
        except VerificationError as exc:  # the client's manifest, not a signed one
            raise UsageError(f"the manifest sent is unusable: {exc.message}",
                             hint="send the JSON of `custody hash PATH --json`") from None
        version = find_record(ledger, wanted, name, f"manifest {wanted.ref}")
        result = check_version(ledger, policy, verifier, version)
        if result.claims.manifest != wanted:
            raise VerificationError(
                f"manifest {wanted.ref} does not match the signed manifest of {version.ref} "
                f"({diff_manifests(result.claims.manifest, wanted).describe()})",
                rule="artifact.manifest_mismatch", subject=version.ref)
        return result
    assert digest is not None  # noqa: S101 - checked above
    algorithm, value = _parse_digest(digest)
    matches = ledger.find_by_digest(algorithm, value)
    if name is not None:
        matches = [m for m in matches if m.name == name]
    if not matches:
        raise VerificationError(
            f"{algorithm}:{value} is not recorded in the ledger"
            + (f" under the name {name}" if name else ""),
            rule="record.not_found",
            hint="these exact bytes were never recorded (or were modified): do not load them",
            subject=f"{algorithm}:{value}")
    return check_version(ledger, policy, verifier, matches[-1])
