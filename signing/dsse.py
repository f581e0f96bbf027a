"""DSSE (Dead Simple Signing Envelope) v1: the pre-authentication encoding and the envelope."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from custody.errors import VerificationError

INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


def pae(payload_type: str, payload: bytes) -> bytes:
    """``DSSEv1 SP LEN(type) SP type SP LEN(body) SP body`` (lengths in ASCII decimal)."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


@dataclass(frozen=True)
class Signature:
    sig: bytes
    keyid: str = ""


@dataclass(frozen=True)
class Envelope:
    payload: bytes
    payload_type: str
    signatures: tuple[Signature, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "payload": base64.b64encode(self.payload).decode("ascii"),
            "payloadType": self.payload_type,
            "signatures": [
                {"sig": base64.b64encode(s.sig).decode("ascii"), "keyid": s.keyid}
                for s in self.signatures
            ],
        }

    @classmethod
    def from_json(cls, data: Any) -> Envelope:
        try:
            sigs = tuple(
                Signature(sig=_b64(s["sig"]), keyid=str(s.get("keyid", "")))
                for s in data["signatures"]
            )
            return cls(
                payload=_b64(data["payload"]),
                payload_type=str(data["payloadType"]),
                signatures=sigs,
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise VerificationError(
                f"malformed DSSE envelope: missing or wrong field {exc}",
                rule="bundle.malformed",
            ) from None


def _b64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise VerificationError("malformed DSSE envelope: base64 field is not a string",
                                rule="bundle.malformed")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise VerificationError("malformed DSSE envelope: invalid base64",
                                rule="bundle.malformed") from None
