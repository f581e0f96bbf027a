"""What a verification trusts. ``verify_*`` functions take a Policy; it is never optional."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from custody.errors import UsageError
from custody.signing.interface import BundleVerifier
from custody.signing.keys import load_public_key
from custody.signing.sigstore_verify import IdentityPolicy, SigstoreTrust
from custody.signing.trusted_signers import TrustedSigners
from custody.validators.findings import Severity


@dataclass(frozen=True)
class Policy:
    """Trusted signers, the scan threshold, and how deep the upstream chain is checked.

    Signers are EC public keys, Sigstore keyless identities (with their issuer, verified against
    ``sigstore`` trust: a pinned trusted root offline, or the public instances), or CA roots for
    certificate-chain signatures. At least one signer must be trusted.
    """

    trusted_keys: tuple[ec.EllipticCurvePublicKey, ...] = ()
    identities: tuple[IdentityPolicy, ...] = ()
    ca_roots: tuple[x509.Certificate, ...] = ()
    sigstore: SigstoreTrust | None = None
    scan_threshold: Severity = Severity.MEDIUM
    max_depth: int = 64
    extra_safe_globals: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if self.signers().empty:
            raise UsageError(
                "the verification policy trusts no signer",
                hint="pass --key PUB, --identity/--issuer or --ca-cert, or list trusted_keys in "
                ".custody/config.toml",
            )
        if self.max_depth < 0:
            raise UsageError("max_depth must be zero or more")

    @classmethod
    def from_key_files(cls, paths: Iterable[Path], **options: object) -> Policy:
        keys = tuple(load_public_key(p) for p in paths)
        return cls(trusted_keys=keys, **options)  # type: ignore[arg-type]

    def signers(self) -> TrustedSigners:
        return TrustedSigners(self.trusted_keys, self.identities, self.ca_roots, self.sigstore)

    def verifier(self) -> BundleVerifier:
        return self.signers()
