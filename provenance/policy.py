"""What a verification trusts. ``verify_*`` functions take a Policy; it is never optional."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from custody.errors import UsageError
from custody.signing.interface import BundleVerifier
from custody.signing.key_signer import ECKeyVerifier
from custody.signing.keys import load_public_key
from custody.validators.findings import Severity


@dataclass(frozen=True)
class Policy:
    """Trusted signers, the scan threshold, and how deep the upstream chain is checked."""

    trusted_keys: tuple[ec.EllipticCurvePublicKey, ...]
    scan_threshold: Severity = Severity.MEDIUM
    max_depth: int = 64
    extra_safe_globals: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if not self.trusted_keys:
            raise UsageError(
                "the verification policy trusts no signer",
                hint="pass --key PUB (repeatable), or list trusted_keys in .custody/config.toml",
            )
        if self.max_depth < 0:
            raise UsageError("max_depth must be zero or more")

    @classmethod
    def from_key_files(cls, paths: Iterable[Path], **options: object) -> Policy:
        keys = tuple(load_public_key(p) for p in paths)
        return cls(trusted_keys=keys, **options)  # type: ignore[arg-type]

    def verifier(self) -> BundleVerifier:
        return ECKeyVerifier(self.trusted_keys)
