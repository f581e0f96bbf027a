"""Revocation: a signed statement withdrawing trust in one recorded version.

``verify`` refuses a revoked version and everything downstream of it. A revocation is honoured
whoever signed it (a revocation can only make verification stricter: fail closed). What counts
is the signed ``revocation`` entry of the log, never the ``revocations`` table (a cache):
``custody audit verify`` checks that the entry's signature is intact and that the table's row
says what the entry says.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from custody.errors import UsageError
from custody.provenance.ledger.models import ArtifactVersionPublic
from custody.provenance.ledger.store import Ledger
from custody.signing.interface import Signer
from custody.signing.statement import Statement, Subject

_REVOCATION_PREDICATE = "https://custody.dev/revocation/v1"


@dataclass(frozen=True)
class RevocationResult:
    target: ArtifactVersionPublic
    reason: str
    entry_idx: int
    signer: str

    def to_json(self) -> dict[str, Any]:
        return {"revoked": self.target.ref, "reason": self.reason,
                "ledger_index": self.entry_idx, "signer": self.signer}


def _revocation_statement(target: ArtifactVersionPublic, reason: str, when: datetime
                         ) -> Statement:
    return Statement(
        subjects=(Subject(name=target.name, digest={"sha256": target.digest}),),
        predicate_type=_REVOCATION_PREDICATE,
        predicate={
            "target": {"name": target.name, "version": target.version,
                       "digest": {"algorithm": target.digest_algorithm,
                                  "value": target.digest}},
            "reason": reason,
            "revokedAt": when.isoformat(timespec="seconds"),
        },
    )


def revoke(ledger: Ledger, ref: str, *, reason: str, signer: Signer) -> RevocationResult:
    reason = reason.strip()
    if not reason:
        raise UsageError("a revocation needs a reason", hint="pass --reason TEXT")
    target = ledger.resolve(ref)
    already = ledger.revocation_entries([target]).get(target.id)
    if already is not None:
        raise UsageError(f"{target.ref} is already revoked (ledger entry {already.entry_idx}: "
                         f"{already.reason})",
                         hint=f"see `custody lineage {target.ref} --downstream` for what it "
                         "affects")
    statement = _revocation_statement(target, reason, datetime.now(UTC)).to_bytes()
    bundle = signer.sign_statement(statement)
    idx = ledger.append_revocation(target, reason=reason, bundle=bundle,
                                   signer=signer.identity, signer_key=signer.public_key_pem)
    return RevocationResult(target, reason, idx, signer.identity)
