"""Look inside a Sigstore bundle without trusting it: what kind it is, and who it says signed.

``classify_bundle`` tells the verifier which path a standalone bundle takes (key, X.509 chain,
keyless DSSE, keyless message signature). ``keyless_facts`` extracts what the ledger stores next
to a keyless bundle: certificate identity and issuer, Rekor log index, integrated time (Rekor v1)
or RFC 3161 time (Rekor v2). Facts are read from the bundle as-is: only call ``keyless_facts`` on
a bundle that has been verified (or that Custody has just signed).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

from custody.errors import VerificationError

# Fulcio certificate extensions (https://github.com/sigstore/fulcio/blob/main/docs/oid-info.md)
_OIDC_ISSUER_V1 = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")  # raw string value
_OIDC_ISSUER_V2 = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")  # DER UTF8String
SIGSTORE_OTHERNAME = ObjectIdentifier("1.3.6.1.4.1.57264.1.7")


class BundleKind(StrEnum):
    KEY = "key"  # verificationMaterial.publicKey (hint or rawBytes), DSSE
    X509_CHAIN = "x509-chain"  # verificationMaterial.x509CertificateChain, no tlog entry
    KEYLESS_DSSE = "keyless-dsse"  # Fulcio certificate + Rekor entry, DSSE envelope
    KEYLESS_ARTIFACT = "keyless-artifact"  # Fulcio certificate + Rekor entry, messageSignature


@dataclass(frozen=True)
class KeylessFacts:
    """What the ledger stores next to a keyless bundle."""

    identity: str
    issuer: str
    log_index: int | None
    integrated_time: datetime | None  # Rekor v1 integrated time
    timestamp: datetime | None  # the first RFC 3161 signed time, if any (Rekor v2 bundles)
    entry_kind: str  # "dsse/0.0.1", "hashedrekord/0.0.2", ...

    @property
    def signed_at(self) -> datetime | None:
        return self.integrated_time or self.timestamp

    def to_json(self) -> dict[str, Any]:
        return {
            "identity": self.identity,
            "issuer": self.issuer,
            "log_index": self.log_index,
            "integrated_time": _iso(self.integrated_time),
            "timestamp": _iso(self.timestamp),
            "entry_kind": self.entry_kind,
        }


def load_bundle_json(text: str | bytes, *, source: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VerificationError(
            f"{source} is not a Sigstore bundle (not JSON: {exc})",
            rule="bundle.malformed",
            subject=source,
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("verificationMaterial"), dict):
        raise VerificationError(
            f"{source} is not a Sigstore bundle (no verificationMaterial)",
            rule="bundle.malformed",
            subject=source,
        )
    return data


def classify_bundle(text: str | bytes, *, source: str = "bundle") -> BundleKind:
    """Which verification path a bundle needs, judged by its verification material."""
    data = load_bundle_json(text, source=source)
    material = data["verificationMaterial"]
    if "publicKey" in material:
        return BundleKind.KEY
    if "certificate" in material or data.get("mediaType", "").endswith("version=0.1"):
        return (BundleKind.KEYLESS_DSSE if "dsseEnvelope" in data
                else BundleKind.KEYLESS_ARTIFACT)
    if "x509CertificateChain" in material:
        # Old (v0.1/v0.2) keyless bundles carry the Fulcio leaf in a "chain" too; they always
        # have a transparency-log entry, which key/chain bundles (model_signing's) never do.
        if material.get("tlogEntries"):
            return (BundleKind.KEYLESS_DSSE if "dsseEnvelope" in data
                    else BundleKind.KEYLESS_ARTIFACT)
        return BundleKind.X509_CHAIN
    raise VerificationError(
        f"{source} carries no public key, certificate or certificate chain",
        rule="bundle.malformed",
        subject=source,
    )


def certificate_identity(cert: x509.Certificate) -> str:
    """The first identity SAN (email, URI or Sigstore other-name) of a Fulcio certificate."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ""
    values: list[str] = list(san.get_values_for_type(x509.RFC822Name))
    values += san.get_values_for_type(x509.UniformResourceIdentifier)
    values += [
        on.value.decode("utf-8", "replace")
        for on in san.get_values_for_type(x509.OtherName)
        if on.type_id == SIGSTORE_OTHERNAME
    ]
    return values[0] if values else ""


def certificate_issuer(cert: x509.Certificate) -> str:
    """The OIDC issuer Fulcio recorded (extension 1.8 preferred, legacy 1.1 otherwise)."""
    for oid in (_OIDC_ISSUER_V2, _OIDC_ISSUER_V1):
        try:
            ext = cert.extensions.get_extension_for_oid(oid).value
        except x509.ExtensionNotFound:
            continue
        raw = ext.value if isinstance(ext, x509.UnrecognizedExtension) else b""
        if oid == _OIDC_ISSUER_V2:
            raw = _der_utf8(raw)
        return raw.decode("utf-8", "replace")
    return ""


def keyless_facts(text: str | bytes, *, source: str = "bundle") -> KeylessFacts:
    """Identity, issuer, log index and times of a keyless bundle (read, not verified)."""
    data = load_bundle_json(text, source=source)
    material = data["verificationMaterial"]
    cert_der = _leaf_der(material, source)
    try:
        cert = x509.load_der_x509_certificate(cert_der)
    except ValueError as exc:
        raise VerificationError(
            f"{source}: signing certificate is not valid DER ({exc})",
            rule="bundle.malformed",
            subject=source,
        ) from None
    entries = material.get("tlogEntries") or []
    entry: dict[str, Any] = entries[0] if entries and isinstance(entries[0], dict) else {}
    kind = entry.get("kindVersion") or {}
    integrated = _int_or_none(entry.get("integratedTime"))
    return KeylessFacts(
        identity=certificate_identity(cert),
        issuer=certificate_issuer(cert),
        log_index=_int_or_none(entry.get("logIndex")),
        integrated_time=datetime.fromtimestamp(integrated, UTC) if integrated else None,
        timestamp=_rfc3161_time(material),
        entry_kind=f"{kind.get('kind', '?')}/{kind.get('version', '?')}",
    )


def _leaf_der(material: dict[str, Any], source: str) -> bytes:
    raw: Any = None
    if isinstance(material.get("certificate"), dict):
        raw = material["certificate"].get("rawBytes")
    elif isinstance(material.get("x509CertificateChain"), dict):
        certs = material["x509CertificateChain"].get("certificates") or [{}]
        raw = certs[0].get("rawBytes") if isinstance(certs[0], dict) else None
    if not isinstance(raw, str):
        raise VerificationError(
            f"{source} has no signing certificate", rule="bundle.malformed", subject=source
        )
    try:
        return base64.b64decode(raw, validate=True)
    except binascii.Error:
        raise VerificationError(
            f"{source}: certificate is not valid base64", rule="bundle.malformed", subject=source
        ) from None


def _rfc3161_time(material: dict[str, Any]) -> datetime | None:
    tvd = material.get("timestampVerificationData")
    stamps = tvd.get("rfc3161Timestamps") if isinstance(tvd, dict) else None
    if not stamps:
        return None
    from rfc3161_client import decode_timestamp_response

    try:
        response = decode_timestamp_response(base64.b64decode(stamps[0]["signedTimestamp"]))
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    gen_time: datetime = response.tst_info.gen_time
    return gen_time


def _der_utf8(raw: bytes) -> bytes:
    # A short-form DER UTF8String: tag 0x0c, one length byte (Fulcio issuer URLs are < 128 bytes);
    # long-form lengths are handled for completeness.
    if len(raw) < 2 or raw[0] != 0x0C:
        return raw
    length, offset = raw[1], 2
    if length & 0x80:
        count = length & 0x7F
        length, offset = int.from_bytes(raw[2:2 + count], "big"), 2 + count
    return raw[offset:offset + length]


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def signing_certificate(text: str | bytes, *, source: str = "bundle") -> x509.Certificate:
    """The leaf certificate of a certificate-chain or keyless bundle (not verified here)."""
    data = load_bundle_json(text, source=source)
    try:
        return x509.load_der_x509_certificate(_leaf_der(data["verificationMaterial"], source))
    except (KeyError, ValueError) as exc:
        raise VerificationError(f"{source}: no readable signing certificate ({exc})",
                                rule="bundle.malformed", subject=source) from None
