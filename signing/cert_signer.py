"""Sign and verify DSSE envelopes with an EC key and its X.509 certificate chain.

The bundle is the one OpenSSF Model Signing writes for certificate signing: Sigstore bundle v0.3
with ``verificationMaterial.x509CertificateChain`` (leaf first, then intermediates, DER in
base64) and no transparency-log entry. Verification builds the chain to a CA root the verifier
trusts with ``cryptography.x509.verification`` (the RFC 5280 path builder), at the current time
unless told otherwise: such bundles carry no trusted signing time.

The profile follows model_signing's (OpenSSL) acceptance, not the Web PKI's: CAs must be CAs
(Web PKI CA rules), while the signing certificate needs no SAN and may assert ``cA`` (the
model-transparency test chain does). It must allow digital signatures (KeyUsage) or code signing
(ExtendedKeyUsage), and it may not itself be one of the trust anchors: pass the CA root.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from custody.errors import KeyMaterialError, VerificationError
from custody.signing.bundle import BUNDLE_V03
from custody.signing.bundle_info import load_bundle_json
from custody.signing.dsse import INTOTO_PAYLOAD_TYPE, Envelope, Signature, pae
from custody.signing.interface import VerifiedPayload
from custody.signing.keys import hash_for, load_private_key


def certificate_name(cert: x509.Certificate) -> str:
    """How Custody names a certificate signer: ``x509:<subject DN>``."""
    return f"x509:{cert.subject.rfc4514_string()}"


def load_certificates(paths: Sequence[Path]) -> list[x509.Certificate]:
    """Every PEM certificate in ``paths``, in order."""
    certs: list[x509.Certificate] = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise KeyMaterialError(
                f"cannot read certificate {path}: {exc.strerror or exc}", subject=str(path)
            ) from None
        try:
            certs.extend(x509.load_pem_x509_certificates(data))
        except ValueError as exc:
            raise KeyMaterialError(
                f"{path} holds no PEM certificate ({exc})",
                hint="pass PEM certificates (-----BEGIN CERTIFICATE-----)",
                subject=str(path),
            ) from None
    return certs


class CertChainSigner:
    """Signs with an EC private key whose certificate (and chain) goes into the bundle."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate,
                 chain: Sequence[x509.Certificate] = ()):
        if certificate.public_key() != private_key.public_key():
            raise KeyMaterialError(
                "the signing certificate does not certify this private key",
                hint="pass the certificate issued for the key you sign with",
                subject=certificate_name(certificate),
            )
        self._key = private_key
        self._certs = (certificate, *chain)

    @classmethod
    def from_files(cls, key: Path, certificate: Path, chain: Sequence[Path] = ()
                   ) -> CertChainSigner:
        leaf = load_certificates([certificate])
        return cls(load_private_key(key), leaf[0], [*leaf[1:], *load_certificates(chain)])

    @property
    def public_key_pem(self) -> str | None:
        """None: the public key travels in the bundle's certificate."""
        return None

    @property
    def identity(self) -> str:
        return certificate_name(self._certs[0])

    def sign_statement(self, statement: bytes) -> str:
        signature = self._key.sign(
            pae(INTOTO_PAYLOAD_TYPE, statement), ec.ECDSA(hash_for(self._key))
        )
        envelope = Envelope(payload=statement, payload_type=INTOTO_PAYLOAD_TYPE,
                            signatures=(Signature(sig=signature),))
        bundle = {
            "mediaType": BUNDLE_V03,
            "verificationMaterial": {
                "x509CertificateChain": {"certificates": [
                    {"rawBytes": base64.b64encode(
                        c.public_bytes(serialization.Encoding.DER)).decode("ascii")}
                    for c in self._certs
                ]},
                "tlogEntries": [],
            },
            "dsseEnvelope": envelope.to_json(),
        }
        return json.dumps(bundle, indent=2, sort_keys=True) + "\n"


class CertChainVerifier:
    """Accepts a chain bundle whose leaf chains to a trusted CA root and signed the envelope."""

    def __init__(self, roots: Sequence[x509.Certificate], *, at: datetime | None = None):
        if not roots:
            raise KeyMaterialError("certificate verification needs at least one CA root")
        self._roots = list(roots)
        self._at = at

    @classmethod
    def from_files(cls, roots: Sequence[Path], *, at: datetime | None = None
                   ) -> CertChainVerifier:
        return cls(load_certificates(roots), at=at)

    def verify_bundle(self, bundle_json: str | bytes, *, source: str) -> VerifiedPayload:
        data = load_bundle_json(bundle_json, source=source)
        certs = _chain(data, source)
        if "dsseEnvelope" not in data:
            raise VerificationError(f"{source} has no DSSE envelope", rule="bundle.malformed",
                                    subject=source)
        envelope = Envelope.from_json(data["dsseEnvelope"])
        if envelope.payload_type != INTOTO_PAYLOAD_TYPE:
            raise VerificationError(
                f"{source}: DSSE payload type is {envelope.payload_type!r}, not in-toto",
                rule="bundle.payload_type", subject=source,
            )
        if len(envelope.signatures) != 1:
            raise VerificationError(
                f"{source}: expected exactly one signature, found {len(envelope.signatures)}",
                rule="signature.count", subject=source,
            )
        leaf = self._verify_chain(certs, source)
        key = leaf.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise VerificationError(
                f"{source}: the signing certificate's key is not an EC key",
                rule="cert.unsupported", subject=source,
            )
        try:
            key.verify(envelope.signatures[0].sig, pae(envelope.payload_type, envelope.payload),
                       ec.ECDSA(hash_for(key)))
        except (InvalidSignature, KeyMaterialError):
            raise VerificationError(
                f"{source}: signature does not verify with the key of "
                f"{certificate_name(leaf)}",
                rule="signature.invalid",
                hint="the signed statement or its signature was altered",
                subject=source,
            ) from None
        return VerifiedPayload(payload=envelope.payload, payload_type=envelope.payload_type,
                               signer=certificate_name(leaf))

    def _verify_chain(self, certs: list[x509.Certificate], source: str) -> x509.Certificate:
        from cryptography.x509.verification import (
            Criticality,
            ExtensionPolicy,
            PolicyBuilder,
            Store,
        )
        from cryptography.x509.verification import VerificationError as X509VerificationError

        leaf, intermediates = certs[0], certs[1:]
        if leaf in self._roots:
            raise VerificationError(
                f"{source}: the signing certificate {certificate_name(leaf)} is itself given as "
                "the trust root",
                rule="cert.chain",
                hint="pass the CA root certificate that issued the chain with --ca-cert",
                subject=source,
            )
        agnostic = Criticality.AGNOSTIC
        ee_policy = (ExtensionPolicy.webpki_defaults_ee()
                     .may_be_present(x509.SubjectAlternativeName, agnostic, None)
                     .may_be_present(x509.BasicConstraints, agnostic, None)
                     .may_be_present(x509.ExtendedKeyUsage, agnostic, None)
                     .may_be_present(x509.KeyUsage, agnostic, None))
        when = self._at or datetime.now(UTC)
        verifier = (PolicyBuilder().store(Store(self._roots)).time(when)
                    .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(),
                                        ee_policy=ee_policy)
                    .build_client_verifier())
        try:
            verifier.verify(leaf, intermediates)
        except X509VerificationError as exc:
            raise VerificationError(
                f"{source}: certificate chain of {certificate_name(leaf)} does not verify "
                f"against the trusted CA root(s) at {when:%Y-%m-%d %H:%M} UTC: {exc}",
                rule="cert.chain",
                hint="pass the CA root that issued the signer's chain with --ca-cert; check "
                "that no certificate has expired",
                subject=source,
            ) from None
        if not _may_sign(leaf):
            raise VerificationError(
                f"{source}: certificate {certificate_name(leaf)} is not allowed to sign "
                "(neither KeyUsage digitalSignature nor ExtendedKeyUsage codeSigning)",
                rule="cert.usage", subject=source,
            )
        return leaf


def _may_sign(cert: x509.Certificate) -> bool:
    try:
        if cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature:
            return True
    except x509.ExtensionNotFound:
        pass
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return ExtendedKeyUsageOID.CODE_SIGNING in eku


def _chain(data: dict[str, Any], source: str) -> list[x509.Certificate]:
    material = data["verificationMaterial"]
    chain = material.get("x509CertificateChain")
    entries = chain.get("certificates") if isinstance(chain, dict) else None
    if not isinstance(entries, list) or not entries:
        raise VerificationError(
            f"{source} carries no X.509 certificate chain",
            rule="bundle.unsupported",
            hint="key-signed bundles are verified with --key, keyless ones with --identity",
            subject=source,
        )
    certs: list[x509.Certificate] = []
    for entry in entries:
        try:
            raw = base64.b64decode(entry["rawBytes"], validate=True)
            certs.append(x509.load_der_x509_certificate(raw))
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise VerificationError(
                f"{source}: certificate chain entry is malformed ({exc})",
                rule="bundle.malformed", subject=source,
            ) from None
    return certs
