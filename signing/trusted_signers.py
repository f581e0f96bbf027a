"""One verifier for every bundle kind, configured by who is trusted.

A bundle is routed by its verification material, never by what it claims to be: key bundles go
to the trusted EC keys, certificate-chain bundles to the trusted CA roots, keyless bundles to
sigstore-python with each trusted identity in turn. A kind with nothing trusted is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from custody.errors import VerificationError
from custody.signing.bundle_info import BundleKind, classify_bundle
from custody.signing.interface import VerifiedPayload
from custody.signing.sigstore_verify import IdentityPolicy, SigstoreTrust


@dataclass(frozen=True)
class TrustedSigners:
    keys: tuple[ec.EllipticCurvePublicKey, ...] = ()
    identities: tuple[IdentityPolicy, ...] = ()
    ca_roots: tuple[x509.Certificate, ...] = ()
    sigstore: SigstoreTrust | None = None

    @property
    def empty(self) -> bool:
        return not (self.keys or self.identities or self.ca_roots)

    def describe(self) -> str:
        parts = []
        if self.keys:
            parts.append(f"{len(self.keys)} key(s)")
        parts.extend(i.describe() for i in self.identities)
        if self.ca_roots:
            parts.append(f"{len(self.ca_roots)} CA root(s)")
        return ", ".join(parts) or "nobody"

    def verify_bundle(self, bundle_json: str | bytes, *, source: str) -> VerifiedPayload:
        kind = classify_bundle(bundle_json, source=source)
        if kind is BundleKind.KEY:
            return self._key(bundle_json, source)
        if kind is BundleKind.X509_CHAIN:
            if not self.ca_roots:
                raise _untrusted(source, "a certificate chain", "--ca-cert PEM")
            from custody.signing.cert_signer import CertChainVerifier

            return CertChainVerifier(self.ca_roots).verify_bundle(bundle_json, source=source)
        if kind is BundleKind.KEYLESS_DSSE:
            return self._keyless(bundle_json, source)
        raise VerificationError(
            f"{source} signs a plain artifact (message signature), not an attestation",
            rule="bundle.unsupported",
            hint="verify it with `custody verify PATH --bundle FILE --identity ... --issuer ...`",
            subject=source,
        )

    def _key(self, bundle_json: str | bytes, source: str) -> VerifiedPayload:
        if not self.keys:
            raise _untrusted(source, "a public key", "--key PUB")
        from custody.signing.oms import OmsKeyVerifier

        return OmsKeyVerifier(self.keys).verify_bundle(bundle_json, source=source)

    def _keyless(self, bundle_json: str | bytes, source: str) -> VerifiedPayload:
        if not self.identities:
            raise _untrusted(source, "a Sigstore keyless identity",
                             "--identity ID --issuer URL (or --identity-regexp)")
        from custody.signing.sigstore_verify import SigstoreVerifier

        last: VerificationError | None = None
        for identity in self.identities:
            try:
                return SigstoreVerifier(identity, self.sigstore).verify_bundle(
                    bundle_json, source=source)
            except VerificationError as exc:
                if exc.rule != "sigstore.identity":
                    raise
                last = exc
        assert last is not None  # noqa: S101 - the loop ran at least once
        raise last


def _untrusted(source: str, what: str, option: str) -> VerificationError:
    return VerificationError(
        f"{source} is signed with {what}, and the policy trusts no signer of that kind",
        rule="signature.untrusted_kind",
        hint=f"trust the signer with {option}",
        subject=source,
    )


def _merge_keys(*groups: Sequence[ec.EllipticCurvePublicKey]) -> tuple[ec.EllipticCurvePublicKey,
                                                                       ...]:
    return tuple(k for group in groups for k in group)
