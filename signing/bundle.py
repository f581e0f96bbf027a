"""Sigstore bundle v0.3 JSON for DSSE envelopes signed with a key (no transparency log entry).

Keyless bundles (Fulcio certificate, Rekor entry) are read and verified by sigstore-python; this
module only builds and reads the key-based form that OpenSSF Model Signing also writes:
``verificationMaterial.publicKey.hint`` names the key, ``tlogEntries`` is empty.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from custody.errors import VerificationError
from custody.signing.bundle_info import load_bundle_json
from custody.signing.dsse import Envelope

BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
_KNOWN_MEDIA_TYPES = frozenset(
    {BUNDLE_V03, "application/vnd.dev.sigstore.bundle+json;version=0.3"}
)


@dataclass(frozen=True)
class KeyBundle:
    envelope: Envelope
    key_hint: str

    def to_json(self) -> dict[str, Any]:
        return {
            "mediaType": BUNDLE_V03,
            "verificationMaterial": {"publicKey": {"hint": self.key_hint}, "tlogEntries": []},
            "dsseEnvelope": self.envelope.to_json(),
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n"


def load_key_bundle(text: str | bytes, *, source: str = "bundle") -> KeyBundle:
    """Parse a key-signed bundle; refuse anything that is not exactly that shape."""
    data = load_bundle_json(text, source=source)
    if data.get("mediaType") not in _KNOWN_MEDIA_TYPES:
        raise VerificationError(
            f"{source} is not a Sigstore bundle v0.3", rule="bundle.malformed", subject=source
        )
    material = data["verificationMaterial"]
    if "dsseEnvelope" not in data:
        raise VerificationError(
            f"{source} has no verification material or no DSSE envelope",
            rule="bundle.malformed",
            subject=source,
        )
    public_key = material.get("publicKey")
    if not isinstance(public_key, dict) or not isinstance(public_key.get("hint"), str):
        raise VerificationError(
            f"{source} is not signed with a public key (no publicKey.hint)",
            rule="bundle.unsupported",
            hint="keyless (certificate) bundles are verified with --identity/--issuer",
            subject=source,
        )
    return KeyBundle(envelope=Envelope.from_json(data["dsseEnvelope"]), key_hint=public_key["hint"])
