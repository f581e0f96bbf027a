"""The signing concept: a Signer turns statement bytes into a bundle; a Verifier checks one.

Verifiers return the verified statement payload and who signed it, or raise
:class:`~custody.errors.VerificationError`. They never return a boolean.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class VerifiedPayload:
    """The DSSE payload whose signature checked out, and the identity that made it."""

    payload: bytes
    payload_type: str
    signer: str  # "key:<hint>" for keys, the certificate identity for keyless


class Signer(Protocol):
    @property
    def identity(self) -> str: ...

    @property
    def public_key_pem(self) -> str | None:
        """The PEM public key for key signers (kept in the ledger entry); None for keyless."""
        ...

    def sign_statement(self, statement: bytes) -> str:
        """Sign in-toto statement bytes; return the Sigstore bundle JSON text."""
        ...


class BundleVerifier(Protocol):
    def verify_bundle(self, bundle_json: str | bytes, *, source: str) -> VerifiedPayload: ...
