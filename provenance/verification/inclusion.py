"""Inclusion of ledger entries in the signed log: checked by verify, exported as receipts.

A receipt is a C2SP tlog-proof (index, inclusion proof, signed checkpoint) whose ``extra`` field
carries the entry's canonical payload, so ``custody verify PATH --receipt FILE`` needs neither
the ledger nor the network: the payload's leaf hash must be included under a checkpoint signed by
the pinned ledger key, and the payload's bundle must verify and be about PATH's bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from custody.errors import MerkleProofError, VerificationError
from custody.provenance.ledger.store import Ledger
from custody.provenance.ledger.tree import META_ORIGIN, META_VKEY
from custody.provenance.log.checkpoint import NoteVerifier, verify_checkpoint
from custody.provenance.log.merkle import leaf_hash, verify_inclusion
from custody.provenance.log.receipt import build_receipt, parse_receipt, verify_receipt


@dataclass(frozen=True)
class Inclusion:
    index: int
    tree_size: int
    root: str
    pinned: bool  # False when the ledger key came from the database, not from local config

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "tree_size": self.tree_size, "root": self.root,
                "ledger_key_pinned": self.pinned}


class InclusionChecker:
    """Checks entries against the newest checkpoint, fetched and verified once."""

    def __init__(self, ledger: Ledger, verifier: NoteVerifier | None):
        meta = ledger.meta()
        self.pinned = verifier is not None
        self.verifier = verifier or NoteVerifier.from_vkey(meta.get(META_VKEY, ""))
        self.origin = meta.get(META_ORIGIN, "")
        self.ledger = ledger
        head = ledger.head()
        self.checkpoint = verify_checkpoint(head.note, self.verifier, origin=self.origin,
                                            subject="the ledger's newest checkpoint")

    def check(self, idx: int, *, subject: str) -> Inclusion:
        size = self.checkpoint.size
        if idx >= size:
            raise VerificationError(
                f"{subject}: ledger entry {idx} is not covered by the newest signed checkpoint "
                f"(size {size})",
                rule="ledger.not_included",
                hint="the entry was written around the log; run `custody audit verify`",
                subject=subject,
            )
        entry = self.ledger.entry(idx)
        proof = self.ledger.prove_inclusion(idx, size)
        try:
            verify_inclusion(leaf_hash(entry.payload.encode("utf-8")), idx, size, proof,
                             self.checkpoint.root, subject=subject)
        except MerkleProofError as exc:
            raise MerkleProofError(
                f"{subject}: ledger entry {idx} is not in the log signed by the ledger key "
                f"({exc.message})",
                rule=exc.rule, hint="the ledger database was edited; run `custody audit verify`",
                subject=subject,
            ) from None
        return Inclusion(idx, size, self.checkpoint.root.hex(), self.pinned)

    def entry_payload(self, idx: int) -> dict[str, Any]:
        return dict(json.loads(self.ledger.entry(idx).payload))


def export_receipt(ledger: Ledger, idx: int) -> bytes:
    """A self-contained receipt for entry ``idx`` under the newest checkpoint."""
    head = ledger.head()
    entry = ledger.entry(idx)
    proof = ledger.prove_inclusion(idx, head.size)
    return build_receipt(idx, proof, head.note.encode("utf-8"),
                         extra=entry.payload.encode("utf-8"))


def open_receipt(data: bytes, verifier: NoteVerifier, *, subject: str) -> dict[str, Any]:
    """Verify a receipt offline and return the entry payload it proves."""
    receipt = parse_receipt(data, subject=subject)
    if receipt.extra is None:
        raise VerificationError(f"{subject} carries no ledger entry", rule="receipt.malformed",
                                subject=subject)
    verify_receipt(receipt, leaf_hash(receipt.extra), [verifier], subject=subject)
    try:
        payload = json.loads(receipt.extra)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise VerificationError(f"{subject}: the proven entry is not JSON",
                                rule="receipt.malformed", subject=subject) from None
    if not isinstance(payload, dict) or payload.get("type") != "artifact_version":
        raise VerificationError(f"{subject} does not prove an artifact record",
                                rule="receipt.malformed", subject=subject)
    return payload
