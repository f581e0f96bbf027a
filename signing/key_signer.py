"""Sign and verify DSSE envelopes with EC keys, producing Sigstore bundle v0.3 JSON."""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from custody.errors import VerificationError
from custody.signing.bundle import KeyBundle, load_key_bundle
from custody.signing.dsse import INTOTO_PAYLOAD_TYPE, Envelope, Signature, pae
from custody.signing.interface import VerifiedPayload
from custody.signing.keys import hash_for, key_hint, public_pem


class ECKeySigner:
    """Signs with a local EC private key (air-gapped sites, tests, the quickstart)."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey):
        self._key = private_key
        self._hint = key_hint(private_key.public_key())

    @property
    def identity(self) -> str:
        return f"key:{self._hint}"

    @property
    def public_key_pem(self) -> str | None:
        return public_pem(self._key.public_key()).decode("ascii")

    def sign_statement(self, statement: bytes) -> str:
        signature = self._key.sign(
            pae(INTOTO_PAYLOAD_TYPE, statement), ec.ECDSA(hash_for(self._key))
        )
        envelope = Envelope(
            payload=statement,
            payload_type=INTOTO_PAYLOAD_TYPE,
            signatures=(Signature(sig=signature),),
        )
        return KeyBundle(envelope=envelope, key_hint=self._hint).dumps()


class ECKeyVerifier:
    """Accepts a bundle only when a trusted public key verifies its DSSE signature."""

    def __init__(self, trusted_keys: Sequence[ec.EllipticCurvePublicKey]):
        self._keys = {key_hint(k): k for k in trusted_keys}

    def verify_bundle(self, bundle_json: str | bytes, *, source: str) -> VerifiedPayload:
        bundle = load_key_bundle(bundle_json, source=source)
        envelope = bundle.envelope
        if envelope.payload_type != INTOTO_PAYLOAD_TYPE:
            raise VerificationError(
                f"{source}: DSSE payload type is {envelope.payload_type!r}, not in-toto",
                rule="bundle.payload_type",
                subject=source,
            )
        if len(envelope.signatures) != 1:
            raise VerificationError(
                f"{source}: expected exactly one signature, found {len(envelope.signatures)}",
                rule="signature.count",
                subject=source,
            )
        key = self._keys.get(bundle.key_hint)
        if key is None:
            raise VerificationError(
                f"{source} is signed by key {bundle.key_hint[:16]}…, which is not trusted",
                rule="signature.untrusted_key",
                hint="pass the signer's public key with --key if you trust it",
                subject=source,
            )
        message = pae(envelope.payload_type, envelope.payload)
        try:
            key.verify(envelope.signatures[0].sig, message, ec.ECDSA(hash_for(key)))
        except InvalidSignature:
            raise VerificationError(
                f"{source}: signature does not verify with trusted key {bundle.key_hint[:16]}…",
                rule="signature.invalid",
                hint="the signed statement or its signature was altered",
                subject=source,
            ) from None
        return VerifiedPayload(
            payload=envelope.payload,
            payload_type=envelope.payload_type,
            signer=f"key:{bundle.key_hint}",
        )


def verify_envelope_with_key(bundle_json: str | bytes, key: ec.EllipticCurvePublicKey, *,
                             source: str) -> bytes:
    """Check a bundle's DSSE signature with a given key, whatever names the key in the bundle
    (a hint, or a certificate whose trust is decided elsewhere). Return the payload."""
    from custody.signing.bundle_info import load_bundle_json

    data = load_bundle_json(bundle_json, source=source)
    envelope = Envelope.from_json(data.get("dsseEnvelope"))
    if len(envelope.signatures) != 1:
        raise VerificationError(f"{source}: expected exactly one signature",
                                rule="signature.count", subject=source)
    try:
        key.verify(envelope.signatures[0].sig, pae(envelope.payload_type, envelope.payload),
                   ec.ECDSA(hash_for(key)))
    except InvalidSignature:
        raise VerificationError(f"{source}: the signature does not verify",
                                rule="signature.invalid", subject=source) from None
    return envelope.payload
