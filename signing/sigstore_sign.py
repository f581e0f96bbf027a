"""Sigstore keyless signing (Fulcio certificate + Rekor entry) with sigstore-python.

The OIDC identity token comes from, in order: an explicit token (``--identity-token``, or the
``SIGSTORE_ID_TOKEN`` environment variable), ambient credentials (GitHub Actions, GitLab, Google
Cloud, ... via ``detect_credential``), or an interactive browser flow with the instance's OIDC
provider. The trust configuration (Fulcio, Rekor, TSA URLs and the trust root) is production or
staging via TUF, or a ClientTrustConfig file for a private instance.

The signer's identity is the certificate SAN Fulcio issues, which is the token's identity claim.
Everything here needs the network; tests are marked ``online``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from custody.errors import KeyMaterialError, SigningError, UsageError
from custody.signing.bundle_info import (
    KeylessFacts,
    certificate_identity,
    certificate_issuer,
    keyless_facts,
)
from custody.signing.sigstore_verify import Instance

if TYPE_CHECKING:
    from cryptography import x509
    from sigstore.models import ClientTrustConfig
    from sigstore.oidc import IdentityToken
    from sigstore.sign import Signer as SigstorePythonSigner

_TOKEN_ENV = "SIGSTORE_ID_TOKEN"  # noqa: S105 - the variable's name, not a token


@dataclass(frozen=True)
class SigningTrust:
    """Which Sigstore instance signs: production, staging, or a ClientTrustConfig file."""

    instance: Instance = Instance.PRODUCTION
    trust_config: Path | None = None

    def describe(self) -> str:
        if self.trust_config is not None:
            return f"trust config {self.trust_config}"
        return f"Sigstore {self.instance.value}"


def load_client_trust_config(trust: SigningTrust) -> ClientTrustConfig:
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import ClientTrustConfig

    if trust.trust_config is not None:
        path = trust.trust_config
        try:
            return ClientTrustConfig.from_json(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise KeyMaterialError(f"cannot read trust config {path}: {exc.strerror or exc}",
                                   subject=str(path)) from None
        except (ValueError, SigstoreError) as exc:
            raise KeyMaterialError(
                f"{path} is not a Sigstore ClientTrustConfig: {_reason(exc)}",
                hint='the file needs "mediaType": '
                '"application/vnd.dev.sigstore.clienttrustconfig.v0.1+json", a trustedRoot '
                "and a signingConfig",
                subject=str(path),
            ) from None
    try:
        if trust.instance is Instance.STAGING:
            return ClientTrustConfig.staging()
        return ClientTrustConfig.production()
    except SigstoreError as exc:
        raise SigningError(
            f"cannot fetch the Sigstore {trust.instance.value} trust configuration: "
            f"{_reason(exc)}",
            hint="keyless signing needs the network; sign with --key offline",
        ) from None


def _obtain_identity_token(trust_config: ClientTrustConfig, *, token: str | None = None,
                          interactive: bool = True) -> IdentityToken:
    """An explicit token, else ambient CI credentials, else the interactive browser flow."""
    from sigstore.errors import Error as SigstoreError
    from sigstore.oidc import ExpiredIdentity, IdentityToken, Issuer, IssuerError, detect_credential

    raw = token or os.environ.get(_TOKEN_ENV)
    try:
        if not raw:
            raw = detect_credential()
        if raw:
            return IdentityToken(raw)
        if not interactive:
            raise UsageError(
                "no OIDC identity token for keyless signing",
                hint=f"pass --identity-token, set {_TOKEN_ENV}, run in CI with OIDC "
                "permissions (id-token: write), or sign interactively",
            )
        issuer = Issuer(trust_config.signing_config.get_oidc_url())
        return issuer.identity_token()
    except (SigstoreError, ExpiredIdentity, IssuerError) as exc:
        raise SigningError(f"cannot obtain an OIDC identity token: {_reason(exc)}",
                           hint="check the token's audience (sigstore) and expiry") from None


class SigstoreSigner:
    """Signs statements keylessly; the bundle holds the Fulcio certificate and Rekor entry.

    The first use obtains the identity token and a Fulcio certificate for an ephemeral key; the
    certificate is reused (and renewed once it expires) for every statement signed.
    """

    def __init__(self, trust: SigningTrust | None = None, *, identity_token: str | None = None,
                 interactive: bool = True):
        self.trust = trust or SigningTrust()
        self._raw_token = identity_token
        self._interactive = interactive
        self._config: ClientTrustConfig | None = None
        self._token: IdentityToken | None = None
        self._inner: SigstorePythonSigner | None = None
        self._certificate: x509.Certificate | None = None
        self.last_facts: KeylessFacts | None = None

    def _ensure(self) -> tuple[ClientTrustConfig, IdentityToken]:
        if self._config is None:
            self._config = load_client_trust_config(self.trust)
        if self._token is None:
            self._token = _obtain_identity_token(self._config, token=self._raw_token,
                                                interactive=self._interactive)
        return self._config, self._token

    def _signer(self, *, renew: bool = False) -> tuple[SigstorePythonSigner, x509.Certificate]:
        from sigstore.sign import Signer, SigningContext

        if self._inner is None or self._certificate is None or renew:
            config, token = self._ensure()
            with _signing_errors(self.trust):
                context = SigningContext.from_trust_config(config)
                self._inner = Signer(token, context, cache=True)  # requests the certificate
                self._certificate = self._inner._signing_cert()
        return self._inner, self._certificate

    @property
    def public_key_pem(self) -> str | None:
        """None: the public key travels in the bundle's certificate."""
        return None

    @property
    def identity(self) -> str:
        """The certificate SAN Fulcio issued (the identity verifiers must pin)."""
        return certificate_identity(self._signer()[1])

    @property
    def issuer(self) -> str:
        """The OIDC issuer Fulcio recorded in the certificate."""
        return certificate_issuer(self._signer()[1])

    def sign_statement(self, statement: bytes) -> str:
        from sigstore._internal.fulcio.client import ExpiredCertificate
        from sigstore.dsse import Statement as SigstoreStatement

        with _signing_errors(self.trust):
            payload = SigstoreStatement(statement)
            try:
                bundle = self._signer()[0].sign_dsse(payload)
            except ExpiredCertificate:
                bundle = self._signer(renew=True)[0].sign_dsse(payload)
        text: str = bundle.to_json()
        self.last_facts = keyless_facts(text, source="new bundle")
        return text


@contextmanager
def _signing_errors(trust: SigningTrust) -> Iterator[None]:
    from sigstore._internal.fulcio.client import ExpiredCertificate, FulcioClientError
    from sigstore._internal.rekor import RekorClientError
    from sigstore.errors import Error as SigstoreError
    from sigstore.oidc import ExpiredIdentity

    try:
        yield
    except (SigstoreError, ExpiredIdentity, ExpiredCertificate, FulcioClientError,
            RekorClientError) as exc:
        raise SigningError(
            f"keyless signing with {trust.describe()} failed: {_reason(exc)}",
            hint="check the network and that the identity token has not expired",
        ) from None


def _signing_facts(bundle_json: str | bytes) -> KeylessFacts:
    """Identity, issuer, log index and integrated time of a keyless bundle, for the ledger."""
    return keyless_facts(bundle_json, source="bundle")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
