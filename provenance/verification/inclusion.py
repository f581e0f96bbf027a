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

from custody.errors import CheckpointError, MerkleProofError, VerificationError
from custody.provenance.ledger.store import UNPINNED_HINT, Ledger, PinnedKey
from custody.provenance.log.checkpoint import Checkpoint, NoteVerifier, verify_checkpoint
from custody.provenance.log.merkle import leaf_hash, verify_inclusion
from custody.provenance.log.receipt import build_receipt, parse_receipt, verify_receipt


@dataclass(frozen=True)
class Inclusion:
    index: int
    tree_size: int
    root: str
    pinned: bool = True  # always: a verdict is never reached with a key read from the database

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "tree_size": self.tree_size, "root": self.root,
                "ledger_key_pinned": self.pinned}


def _pinned_head(ledger: Ledger, verifier: NoteVerifier | None, *, source: str = "--ledger-vkey"
                ) -> tuple[PinnedKey, Checkpoint, str]:
    """The pinned checkpoint key, and the newest checkpoint (and its note) verified with it.

    Refuses without a pin (``ledger.key_unpinned``: the key is never taken from the database),
    a head that the pinned key did not sign (``checkpoint.*``), and a database that names
    another checkpoint key than the pinned one (``ledger.key_mismatch``)."""
    pinned = ledger.checkpoint_key(verifier, source=source)
    if pinned is None:
        raise VerificationError(
            f"no ledger key is pinned for {ledger.display_url}: its checkpoints cannot be "
            "checked, and the key stored in the database proves nothing",
            rule="ledger.key_unpinned", hint=UNPINNED_HINT, subject=ledger.display_url)
    head = ledger.head()
    try:
        checkpoint = verify_checkpoint(head.note, pinned.verifier,
                                       subject="the ledger's newest checkpoint")
    except CheckpointError as exc:
        raise CheckpointError(
            f"{exc.message} (pinned by {pinned.source})", rule=exc.rule, subject=exc.subject,
            hint="this database is not the ledger the pinned key signs (it was re-keyed or "
            "swapped): restore it from a trusted copy, or pin the key of the ledger you meant"
            if exc.rule == "checkpoint.untrusted_key" else exc.hint) from None
    differs = ledger.stored_key_differs(pinned)
    if differs is not None:
        raise VerificationError(
            f"{differs}: ledger_meta was edited", rule="ledger.key_mismatch",
            hint="run `custody audit verify` and restore the database from a trusted copy",
            subject=ledger.display_url)
    return pinned, checkpoint, head.note


class InclusionChecker:
    """Checks entries against the newest checkpoint, fetched once and verified with the pinned
    ledger key (see :func:`pinned_head`)."""

    def __init__(self, ledger: Ledger, verifier: NoteVerifier | None):
        self.ledger = ledger
        self.key, self.checkpoint, self.note = _pinned_head(ledger, verifier)
        self.verifier = self.key.verifier
        self.pinned = True
        self._proved: dict[int, bytes] = {}

    def check(self, idx: int, *, subject: str) -> Inclusion:
        """Prove the stored entry ``idx`` is in the signed log; its bytes are then what
        :meth:`entry_payload` returns."""
        return self.check_payload(idx, None, subject=subject)

    def check_payload(self, idx: int, payload: bytes | None, *, subject: str) -> Inclusion:
        """Prove that ``payload`` (default: the stored entry ``idx``, read now) is entry
        ``idx`` of the log signed by the pinned key."""
        size = self.checkpoint.size
        if idx >= size:
            raise VerificationError(
                f"{subject}: ledger entry {idx} is not covered by the newest signed checkpoint "
                f"(size {size})",
                rule="ledger.not_included",
                hint="the entry was written around the log; run `custody audit verify`",
                subject=subject,
            )
        data = self.ledger.entry_bytes(idx) if payload is None else payload
        proof = self.ledger.prove_inclusion(idx, size)
        try:
            verify_inclusion(leaf_hash(data), idx, size, proof, self.checkpoint.root,
                             subject=subject)
        except MerkleProofError as exc:
            raise MerkleProofError(
                f"{subject}: ledger entry {idx} is not in the log signed by the ledger key "
                f"({exc.message})",
                rule=exc.rule, hint="the ledger database was edited; run `custody audit verify`",
                subject=subject,
            ) from None
        self._proved[idx] = data
        return Inclusion(idx, size, self.checkpoint.root.hex())

    def proved(self, idx: int) -> bytes:
        """The exact bytes of entry ``idx`` that :meth:`check` proved."""
        data = self._proved.get(idx)
        if data is None:
            raise VerificationError(f"ledger entry {idx} was read before it was proved",
                                    rule="ledger.not_included", subject=f"ledger entry {idx}")
        return data

    def entry_payload(self, idx: int) -> dict[str, Any]:
        """The entry proved by :meth:`check` (its exact bytes, not a second read)."""
        data = self.proved(idx)
        try:
            entry = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            entry = None
        if not isinstance(entry, dict):
            raise VerificationError(
                f"ledger entry {idx} is not a JSON object", rule="ledger.inconsistent",
                hint="run `custody audit verify`", subject=f"ledger entry {idx}")
        return entry


def export_receipt(ledger: Ledger, idx: int, verifier: NoteVerifier | None = None) -> bytes:
    """A self-contained receipt for entry ``idx`` under the newest checkpoint, which is first
    verified with the pinned ledger key, as is the entry's inclusion."""
    checker = InclusionChecker(ledger, verifier)
    checker.check(idx, subject=f"ledger entry {idx}")
    proof = ledger.prove_inclusion(idx, checker.checkpoint.size)
    return build_receipt(idx, proof, checker.note.encode("utf-8"), extra=checker.proved(idx))


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
