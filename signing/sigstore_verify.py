"""Keyless (Fulcio + Rekor) bundle verification with sigstore-python, mapped to Custody errors.

All certificate, transparency-log and signature checks are sigstore-python's own
(``sigstore.verify.Verifier`` with ``sigstore.verify.policy`` objects); this module chooses the
trust root, builds the identity policy, and turns every sigstore exception into a
:class:`~custody.errors.VerificationError` with a rule:

``sigstore.identity``  certificate SAN or OIDC issuer does not match the policy
``sigstore.chain``     the certificate does not chain to the trust root (wrong instance?)
``sigstore.tlog``      bad/missing inclusion proof, checkpoint, SET, or inconsistent log entry
``sigstore.artifact``  the artifact's digest or signature does not match the bundle
``sigstore.signature`` the DSSE signature does not verify
``sigstore.bundle``    the bundle is malformed or of the wrong kind for the check asked
``sigstore.verify``    any other sigstore verification failure

sigstore-python verifies envelopes, not what they talk about: after :func:`verify_dsse`, compare
the statement's subjects with the digests actually computed using :func:`check_subjects`.
sigstore is imported inside functions only, so ``custody --help`` does not pay for it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509

from custody.errors import KeyMaterialError, UsageError, VerificationError
from custody.signing.bundle_info import (
    SIGSTORE_OTHERNAME,
    KeylessFacts,
    certificate_identity,
    certificate_issuer,
)
from custody.signing.dsse import INTOTO_PAYLOAD_TYPE
from custody.signing.interface import VerifiedPayload
from custody.signing.subjects import check_subjects

if TYPE_CHECKING:
    from sigstore.models import Bundle, TrustedRoot
    from sigstore.verify import Verifier
    from sigstore.verify.policy import VerificationPolicy

__all__ = ["IdentityPolicy", "IdentityRegexp", "Instance", "KeylessVerifiedPayload",
           "SigstoreTrust", "SigstoreVerifier", "check_subjects", "load_trusted_root",
           "verify_artifact", "verify_dsse"]

_TRUST_CONFIG_MEDIA_TYPE = "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json"


class Instance(StrEnum):
    PRODUCTION = "production"
    STAGING = "staging"


@dataclass(frozen=True)
class SigstoreTrust:
    """Where the Sigstore root of trust comes from.

    ``trusted_root`` pins a ``trusted_root.json`` (or a ClientTrustConfig JSON holding one) and
    is fully offline. Otherwise ``instance`` selects the public-good production or staging TUF
    repository, refreshed over the network unless ``offline`` (then the local TUF cache is used).
    """

    trusted_root: Path | None = None
    instance: Instance = Instance.PRODUCTION
    offline: bool = False

    def describe(self) -> str:
        if self.trusted_root is not None:
            return f"pinned trust root {self.trusted_root}"
        return f"Sigstore {self.instance.value} (TUF{', offline cache' if self.offline else ''})"


@dataclass(frozen=True)
class IdentityPolicy:
    """Who must have signed: an exact identity or an identity regexp, and an exact issuer.

    The regexp must match the whole SAN (``re.fullmatch``). The issuer is required: an identity
    without its issuer can be claimed through any OIDC provider Fulcio trusts.
    """

    issuer: str
    identity: str | None = None
    identity_regexp: str | None = None

    def __post_init__(self) -> None:
        if not self.issuer:
            raise UsageError("a keyless identity policy needs --issuer (the OIDC issuer URL)")
        if (self.identity is None) == (self.identity_regexp is None):
            raise UsageError("give exactly one of --identity and --identity-regexp")
        if self.identity_regexp is not None:
            try:
                re.compile(self.identity_regexp)
            except re.error as exc:
                raise UsageError(
                    f"--identity-regexp {self.identity_regexp!r} is not a valid regular "
                    f"expression: {exc}"
                ) from None

    def describe(self) -> str:
        who = self.identity if self.identity is not None else f"/{self.identity_regexp}/"
        return f"{who} from {self.issuer}"

    def to_sigstore(self) -> VerificationPolicy:
        from sigstore.verify.policy import Identity

        if self.identity is not None:
            return Identity(identity=self.identity, issuer=self.issuer)
        return IdentityRegexp(self.identity_regexp or "", issuer=self.issuer)


class IdentityRegexp:
    """A sigstore ``VerificationPolicy``: a SAN full-matches ``pattern``, the issuer is exact.

    sigstore-python 4.5 has no regexp policy; this one follows its ``Identity`` policy (same SAN
    types, issuer checked with sigstore's own ``OIDCIssuer``) and raises sigstore's
    ``VerificationError``, so the ``Verifier`` treats it like any built-in policy.
    """

    def __init__(self, pattern: str, *, issuer: str):
        from sigstore.verify.policy import OIDCIssuer

        self._pattern = re.compile(pattern)
        self._issuer = OIDCIssuer(issuer)

    def verify(self, cert: x509.Certificate) -> None:
        from sigstore.errors import VerificationError as SigstoreVerificationError

        self._issuer.verify(cert)
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            raise SigstoreVerificationError("Certificate has no SAN extension") from None
        sans: set[str] = set(san.get_values_for_type(x509.RFC822Name))
        sans.update(san.get_values_for_type(x509.UniformResourceIdentifier))
        sans.update(
            on.value.decode() for on in san.get_values_for_type(x509.OtherName)
            if on.type_id == SIGSTORE_OTHERNAME
        )
        if not any(self._pattern.fullmatch(s) for s in sans):
            raise SigstoreVerificationError(
                f"Certificate's SANs do not match /{self._pattern.pattern}/; actual SANs: {sans}"
            )


class _RecordingPolicy:
    """Wraps the identity policy so a refusal from it is known to be an identity refusal."""

    def __init__(self, inner: VerificationPolicy):
        self._inner = inner
        self.failure: str | None = None

    def verify(self, cert: x509.Certificate) -> None:
        from sigstore.errors import VerificationError as SigstoreVerificationError

        try:
            self._inner.verify(cert)
        except SigstoreVerificationError as exc:
            self.failure = str(exc)
            raise
        except x509.ExtensionNotFound as exc:
            self.failure = f"certificate lacks an identity extension: {exc}"
            raise SigstoreVerificationError(self.failure) from None


@dataclass(frozen=True)
class KeylessVerifiedPayload(VerifiedPayload):
    """A verified DSSE payload plus the keyless facts the ledger stores."""

    facts: KeylessFacts


def load_trusted_root(trust: SigstoreTrust) -> TrustedRoot:
    """The sigstore ``TrustedRoot`` for ``trust``; a pinned file never touches the network."""
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import ClientTrustConfig, TrustedRoot

    if trust.trusted_root is not None:
        path = trust.trusted_root
        try:
            text = path.read_text(encoding="utf-8")
            data = json.loads(text)
            if isinstance(data, dict) and data.get("mediaType") == _TRUST_CONFIG_MEDIA_TYPE:
                return ClientTrustConfig.from_json(text).trusted_root
            return TrustedRoot.from_file(str(path))
        except OSError as exc:
            raise KeyMaterialError(
                f"cannot read trust root {path}: {exc.strerror or exc}", subject=str(path)
            ) from None
        except (ValueError, SigstoreError) as exc:  # JSON, pydantic and media-type errors
            raise KeyMaterialError(
                f"{path} is not a Sigstore trusted_root.json or client trust config: "
                f"{_first_line(exc)}",
                hint="pass the trusted_root.json of the Sigstore instance that signed",
                subject=str(path),
            ) from None
    try:
        config = (ClientTrustConfig.staging(offline=trust.offline)
                  if trust.instance is Instance.STAGING
                  else ClientTrustConfig.production(offline=trust.offline))
        return config.trusted_root
    except SigstoreError as exc:  # TUFError, NetworkError, RootError, MetadataError
        raise KeyMaterialError(
            f"cannot load the Sigstore {trust.instance.value} trust root: {_first_line(exc)}",
            hint="check the network, or pin a root with --trusted-root FILE to verify offline",
        ) from None


class SigstoreVerifier:
    """Verifies keyless bundles against one trust root and one identity policy.

    Implements :class:`~custody.signing.interface.BundleVerifier` (DSSE bundles) and checks plain
    artifacts (hashedrekord bundles) with :meth:`verify_artifact`.
    """

    def __init__(self, policy: IdentityPolicy, trust: SigstoreTrust | None = None):
        self.policy = policy
        self.trust = trust or SigstoreTrust()
        self._verifier: Verifier | None = None

    def _sigstore(self) -> Verifier:
        if self._verifier is None:
            from sigstore.errors import Error as SigstoreError
            from sigstore.verify import Verifier

            root = load_trusted_root(self.trust)
            try:
                self._verifier = Verifier(trusted_root=root)
            except SigstoreError as exc:
                raise KeyMaterialError(
                    f"unusable Sigstore trust root ({self.trust.describe()}): {exc}"
                ) from None
        return self._verifier

    def verify_bundle(self, bundle_json: str | bytes, *, source: str) -> VerifiedPayload:
        return self.verify_dsse(bundle_json, source=source)

    def verify_dsse(self, bundle_json: str | bytes, *, source: str) -> KeylessVerifiedPayload:
        """Verify a DSSE bundle's certificate, log entry and envelope; return its payload.

        The payload's subjects are NOT compared with any artifact: call :func:`check_subjects`.
        """
        from sigstore.dsse import InvalidEnvelope
        from sigstore.errors import Error as SigstoreError
        from sigstore.errors import VerificationError as SigstoreVerificationError

        bundle = _load_bundle(bundle_json, source)
        recorder = _RecordingPolicy(self.policy.to_sigstore())
        verifier = self._sigstore()
        try:
            payload_type, payload = verifier.verify_dsse(bundle, recorder)
        except (SigstoreVerificationError, InvalidEnvelope) as exc:
            raise self._refusal(exc, recorder, source) from None
        except SigstoreError as exc:
            raise VerificationError(
                f"{source}: {_first_line(exc)}", rule="sigstore.bundle", subject=source
            ) from None
        if payload_type != INTOTO_PAYLOAD_TYPE:
            raise VerificationError(
                f"{source}: DSSE payload type is {payload_type!r}, not in-toto",
                rule="bundle.payload_type",
                subject=source,
            )
        facts = _facts(bundle)
        return KeylessVerifiedPayload(
            payload=payload,
            payload_type=payload_type,
            signer=f"{facts.identity} ({facts.issuer})",
            facts=facts,
        )

    def verify_artifact(self, artifact_sha256: str, bundle_json: str | bytes, *,
                        source: str) -> KeylessFacts:
        """Verify a message-signature (hashedrekord) bundle over the artifact whose SHA-256
        (hex) is ``artifact_sha256``: the caller hashes the bytes; signing never reads files."""
        from sigstore.errors import Error as SigstoreError
        from sigstore.errors import VerificationError as SigstoreVerificationError

        bundle = _load_bundle(bundle_json, source)
        recorder = _RecordingPolicy(self.policy.to_sigstore())
        verifier = self._sigstore()
        try:
            verifier.verify_artifact(_hashed(artifact_sha256), bundle, recorder)
        except SigstoreVerificationError as exc:
            raise self._refusal(exc, recorder, source) from None
        except SigstoreError as exc:
            raise VerificationError(
                f"{source}: {_first_line(exc)}", rule="sigstore.bundle", subject=source
            ) from None
        return _facts(bundle)

    def _refusal(self, exc: Exception, recorder: _RecordingPolicy, source: str
                 ) -> VerificationError:
        from sigstore.errors import CertValidationError

        message = _first_line(exc)
        if recorder.failure is not None:
            return VerificationError(
                f"{source} was not signed by {self.policy.describe()}: {recorder.failure}",
                rule="sigstore.identity",
                hint="check --identity/--identity-regexp and --issuer against the signer",
                subject=source,
            )
        if isinstance(exc, CertValidationError):
            return VerificationError(
                f"{source}: signing certificate does not chain to {self.trust.describe()}: "
                f"{message}",
                rule="sigstore.chain",
                hint="was it signed on another Sigstore instance? try --staging or the "
                "instance's --trusted-root",
                subject=source,
            )
        rule, hint = _classify(message)
        return VerificationError(f"{source}: {message}", rule=rule, hint=hint, subject=source)


_RULES: tuple[tuple[str, str, str | None], ...] = (
    ("invalid log entry", "sigstore.tlog",
     "the bundle's transparency-log proof was altered or belongs to another log"),
    ("log entry", "sigstore.tlog",
     "the transparency-log entry does not match this signature (CVE-2022-36056 pattern)"),
    ("transparency log", "sigstore.tlog", None),
    ("SCT", "sigstore.chain", "the certificate's SCT does not verify against this trust root"),
    ("message digest mismatch", "sigstore.artifact",
     "the file is not the one that was signed"),
    ("Signature is invalid for input", "sigstore.artifact",
     "the file is not the one that was signed"),
    ("Missing bundle message signature", "sigstore.bundle",
     "this is a DSSE (attestation) bundle: verify it as a statement, not as a plain file"),
    ("without a DSSE envelope", "sigstore.bundle",
     "this bundle signs a plain file: verify it with the file, not as a statement"),
    ("DSSE", "sigstore.signature", "the signed statement or its signature was altered"),
    ("expired at time of signing", "sigstore.chain", None),
    ("verified time", "sigstore.tlog", "the bundle has no verifiable signing time"),
)


def _classify(message: str) -> tuple[str, str | None]:
    for needle, rule, hint in _RULES:
        if needle in message:
            return rule, hint
    return "sigstore.verify", None


def _load_bundle(bundle_json: str | bytes, source: str) -> Bundle:
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import Bundle, InvalidBundle

    try:
        return Bundle.from_json(bundle_json)
    except InvalidBundle as exc:
        message = _first_line(exc)
        hint = ("this bundle is signed with a key or a certificate chain: verify it with --key "
                "or --ca-cert" if "expected certificate" in message else None)
        raise VerificationError(
            f"{source} is not a valid keyless Sigstore bundle: {message}",
            rule="sigstore.bundle",
            hint=hint,
            subject=source,
        ) from None
    except (SigstoreError, ValueError) as exc:
        raise VerificationError(
            f"{source} is not a valid Sigstore bundle: {_first_line(exc)}",
            rule="sigstore.bundle",
            subject=source,
        ) from None


def _hashed(artifact_sha256: str) -> Any:
    from sigstore.hashes import Hashed
    from sigstore_models.common.v1 import HashAlgorithm

    try:
        digest = bytes.fromhex(artifact_sha256)
    except ValueError:
        digest = b""
    if len(digest) != 32:
        raise UsageError(f"not a SHA-256 hex digest: {artifact_sha256!r}")
    return Hashed(algorithm=HashAlgorithm.SHA2_256, digest=digest)


def _facts(bundle: Bundle) -> KeylessFacts:
    from custody.signing.bundle_info import keyless_facts

    cert = bundle.signing_certificate
    facts = keyless_facts(bundle.to_json())
    # The certificate sigstore verified is authoritative for identity and issuer.
    return KeylessFacts(
        identity=certificate_identity(cert),
        issuer=certificate_issuer(cert),
        log_index=facts.log_index,
        integrated_time=facts.integrated_time,
        timestamp=facts.timestamp,
        entry_kind=facts.entry_kind,
    )


def verify_dsse(bundle_json: str | bytes, policy: IdentityPolicy,
                trust: SigstoreTrust | None = None, *, source: str = "bundle"
                ) -> KeylessVerifiedPayload:
    """Verify a keyless DSSE bundle; see :meth:`SigstoreVerifier.verify_dsse`."""
    return SigstoreVerifier(policy, trust).verify_dsse(bundle_json, source=source)


def verify_artifact(artifact_sha256: str, bundle_json: str | bytes, policy: IdentityPolicy,
                    trust: SigstoreTrust | None = None, *, source: str = "bundle"
                    ) -> KeylessFacts:
    """Verify a keyless message-signature bundle over the artifact of that SHA-256 (hex)."""
    return SigstoreVerifier(policy, trust).verify_artifact(artifact_sha256, bundle_json,
                                                           source=source)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
