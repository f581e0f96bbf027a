"""Inclusion receipts: C2SP tlog-proof v1 text, checkable offline with only the log's public key.

::

    c2sp.org/tlog-proof@v1
    extra <base64>            (optional, unauthenticated)
    index 1041
    <base64 proof hash>       (one per line, the leaf's sibling first)
    ...
                              (blank line)
    <signed checkpoint, verbatim>

:func:`verify_receipt` checks the checkpoint's signature, then the inclusion of the entry's
leaf hash at ``index`` under the checkpoint's root, and raises on any failure.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass

from custody.errors import ReceiptError
from custody.provenance.log.checkpoint import (
    Checkpoint,
    NoteVerifier,
    b64decode_strict,
    parse_checkpoint_unverified,
    verify_checkpoint,
)
from custody.provenance.log.merkle import HASH_SIZE, verify_inclusion

HEADER = "c2sp.org/tlog-proof@v1"
_MAX_RECEIPT_BYTES = 1 << 20
_INDEX_RE = re.compile(r"index (0|[1-9][0-9]{0,19})")


@dataclass(frozen=True)
class Receipt:
    """A parsed receipt: leaf index, inclusion proof, signed checkpoint note, extra data."""

    index: int
    proof: tuple[bytes, ...]
    checkpoint_note: bytes
    extra: bytes | None = None

    def to_bytes(self) -> bytes:
        lines = [HEADER]
        if self.extra is not None:
            lines.append("extra " + base64.b64encode(self.extra).decode())
        lines.append(f"index {self.index}")
        lines.extend(base64.b64encode(h).decode() for h in self.proof)
        return ("\n".join(lines) + "\n\n").encode() + self.checkpoint_note


def build_receipt(
    index: int, proof: Sequence[bytes], checkpoint_note: bytes, *, extra: bytes | None = None
) -> bytes:
    """Receipt text for leaf ``index`` with its inclusion ``proof`` and the signed checkpoint the
    proof leads to. The checkpoint is parsed (not verified) to catch an obvious mismatch."""
    if index < 0:
        raise ValueError(f"leaf index must not be negative, got {index}")
    if any(len(h) != HASH_SIZE for h in proof):
        raise ValueError("every proof hash must be 32 bytes")
    if index >= parse_checkpoint_unverified(checkpoint_note).size:
        raise ValueError(f"leaf {index} is not in the tree of the checkpoint")
    return Receipt(index, tuple(proof), checkpoint_note, extra).to_bytes()


def parse_receipt(data: bytes | str, *, subject: str | None = None) -> Receipt:
    """Parse receipt text; verify nothing. Raises :class:`ReceiptError` if it is malformed."""
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > _MAX_RECEIPT_BYTES:
        raise ReceiptError(f"receipt is larger than {_MAX_RECEIPT_BYTES} bytes", subject=subject)
    head, sep, note = raw.partition(b"\n\n")
    if not sep or not note:
        raise ReceiptError("receipt has no blank line followed by a checkpoint", subject=subject)
    try:
        lines = head.decode("ascii").split("\n")
    except UnicodeDecodeError:
        raise ReceiptError("receipt header is not ASCII", subject=subject) from None
    if lines[0] != HEADER:
        raise ReceiptError(f"receipt does not start with {HEADER!r}", subject=subject)
    pos, extra = 1, None
    if len(lines) > pos and lines[pos].startswith("extra "):
        extra = b64decode_strict(lines[pos].removeprefix("extra "))
        if extra is None:
            raise ReceiptError("receipt's extra line is not base64", subject=subject)
        pos += 1
    match = _INDEX_RE.fullmatch(lines[pos]) if len(lines) > pos else None
    if match is None:
        raise ReceiptError("receipt has no 'index N' line", subject=subject)
    proof = []
    for number, line in enumerate(lines[pos + 1 :], 1):
        h = b64decode_strict(line)
        if h is None or len(h) != HASH_SIZE:
            raise ReceiptError(
                f"receipt proof line {number} is not a base64 SHA-256 hash", subject=subject
            )
        proof.append(h)
    return Receipt(int(match.group(1)), tuple(proof), note, extra)


@dataclass(frozen=True)
class VerifiedReceipt:
    receipt: Receipt
    checkpoint: Checkpoint


def verify_receipt(
    data: bytes | str | Receipt,
    leaf_hash: bytes,
    verifiers: NoteVerifier | Sequence[NoteVerifier],
    *,
    origin: str | None = None,
    subject: str | None = None,
) -> VerifiedReceipt:
    """Check offline that the entry with ``leaf_hash`` is in the log the receipt's checkpoint
    commits to: the checkpoint must be signed by a trusted key (and name ``origin`` if given),
    and the proof must lead from ``leaf_hash`` at ``index`` to its root. Raises on failure."""
    receipt = data if isinstance(data, Receipt) else parse_receipt(data, subject=subject)
    checkpoint = verify_checkpoint(
        receipt.checkpoint_note, verifiers, origin=origin, subject=subject
    )
    verify_inclusion(
        leaf_hash, receipt.index, checkpoint.size, receipt.proof, checkpoint.root, subject=subject
    )
    return VerifiedReceipt(receipt, checkpoint)
