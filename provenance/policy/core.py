"""What a verification trusts and requires. ``verify_*`` take a Policy; it is never optional.

A Policy is built from command-line options (``--key``, ``--identity``...), from the workspace's
trusted keys, or from a policy file (:mod:`custody.provenance.policy.file`, docs/policy.md).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from custody.errors import KeyMaterialError, UsageError, VerificationError
from custody.provenance.log.witness import WitnessVerifier
from custody.signing.interface import BundleVerifier
from custody.signing.keys import load_public_key
from custody.signing.sigstore_verify import IdentityPolicy, SigstoreTrust
from custody.signing.trusted_signers import TrustedSigners
from custody.validators.findings import Severity


@dataclass(frozen=True)
class SignerRule:
    """``[[trust]]``: the signers trusted for artifacts of this kind and name pattern."""

    kind: str | None
    name: str | None  # an fnmatch glob, e.g. "fraud-*"
    signers: TrustedSigners

    def matches(self, kind: str, name: str) -> bool:
        return (self.kind is None or self.kind == kind) and (
            self.name is None or fnmatch.fnmatchcase(name, self.name))


@dataclass(frozen=True)
class WitnessPolicy:
    """``[witness]``: every artifact verified must be covered by a checkpoint of the ledger that
    ``quorum`` of ``witnesses`` cosigned, each counted cosignature at most ``max_age`` old (None:
    any age). ``cosigned`` are the files, or directories of files, holding cosigned checkpoints
    (``custody audit witness --out``); every one of them must also agree with the ledger's head
    (no rollback, no fork)."""

    witnesses: tuple[WitnessVerifier, ...]
    quorum: int
    cosigned: tuple[Path, ...]
    max_age: timedelta | None = None

    def __post_init__(self) -> None:
        if not self.witnesses:
            raise UsageError("a witness policy names no witness",
                             hint="list each witness's name and vkey (docs/policy.md, [witness])")
        if len({w.public_key.public_bytes_raw() for w in self.witnesses}) != len(self.witnesses):
            raise UsageError("two witnesses of the policy share one public key",
                             hint="list each witness's vkey once")
        if not 1 <= self.quorum <= len(self.witnesses):
            raise UsageError(f"a witness quorum of {self.quorum} cannot be met by "
                             f"{len(self.witnesses)} witness(es)",
                             hint=f"set the quorum between 1 and {len(self.witnesses)}")
        if not self.cosigned:
            raise UsageError("a witness policy says nowhere to find cosigned checkpoints",
                             hint="set cosigned to the file or directory that `custody audit "
                             "witness --out` writes to")
        if self.max_age is not None and self.max_age <= timedelta(0):
            raise UsageError("a witness max_age must be positive")


@dataclass(frozen=True)
class Policy:
    """Trusted signers, scan thresholds, lineage and age requirements.

    Signers are EC public keys, Sigstore keyless identities (with their issuer, verified against
    ``sigstore`` trust: a pinned trusted root offline, or the public instances), or CA roots for
    certificate-chain signatures. ``rules`` pick signers per artifact kind and name; without a
    matching rule the default signers (the flat fields) apply; with neither, it is a refusal.
    """

    trusted_keys: tuple[ec.EllipticCurvePublicKey, ...] = ()
    identities: tuple[IdentityPolicy, ...] = ()
    ca_roots: tuple[x509.Certificate, ...] = ()
    sigstore: SigstoreTrust | None = None
    rules: tuple[SignerRule, ...] = ()
    scan_threshold: Severity = Severity.MEDIUM
    kind_thresholds: Mapping[str, Severity] = field(default_factory=dict)
    max_depth: int = 64
    require_trained_on: bool = False
    require_baseline: bool = False
    expectation_suites: tuple[Path, ...] = ()
    extra_safe_globals: frozenset[str] = field(default_factory=frozenset)
    pickle_profiles: tuple[str, ...] | None = None  # [pickle] profiles; None: all of them
    max_age_days: int | None = None
    witness: WitnessPolicy | None = None  # require cosigned checkpoints ([witness])
    source: str = "command line"

    def __post_init__(self) -> None:
        if self.signers().empty and not self.rules:
            raise UsageError(
                "the verification policy trusts no signer",
                hint="pass --key PUB, --identity/--issuer, --ca-cert or --policy FILE, or list "
                "trusted_keys in .custody/config.toml",
            )
        if self.max_depth < 0:
            raise UsageError("max_depth must be zero or more")
        if self.sigstore is not None:
            check_trusted_root(self.sigstore)

    @classmethod
    def from_key_files(cls, paths: Iterable[Path], **options: object) -> Policy:
        keys = tuple(load_public_key(p) for p in paths)
        return cls(trusted_keys=keys, **options)  # type: ignore[arg-type]

    def signers(self) -> TrustedSigners:
        """The default signers (used when no rule matches)."""
        return TrustedSigners(self.trusted_keys, self.identities, self.ca_roots, self.sigstore)

    def signers_for(self, kind: str, name: str) -> TrustedSigners:
        for rule in self.rules:
            if rule.matches(kind, name):
                return rule.signers
        default = self.signers()
        if default.empty:
            raise VerificationError(
                f"the policy ({self.source}) has no [[trust]] rule for {kind} {name!r}",
                rule="policy.no_signer",
                hint="add a [[trust]] rule that covers it, or a catch-all rule",
                subject=name,
            )
        return default

    def verifier(self) -> BundleVerifier:
        """Every signer the policy trusts for anything (for bundles not yet tied to an
        artifact); check the artifact's own signers with :meth:`verifier_for` afterwards."""
        if not self.rules:
            return self.signers()
        groups = [self.signers(), *(r.signers for r in self.rules)]
        return TrustedSigners(
            keys=tuple(k for g in groups for k in g.keys),
            identities=tuple(i for g in groups for i in g.identities),
            ca_roots=tuple(c for g in groups for c in g.ca_roots),
            sigstore=self.sigstore,
        )

    def verifier_for(self, kind: str, name: str) -> BundleVerifier:
        return self.signers_for(kind, name)

    def threshold_for(self, kind: str) -> Severity:
        return self.kind_thresholds.get(kind, self.scan_threshold)


def check_trusted_root(trust: SigstoreTrust) -> None:
    """A pinned trusted root must be a readable Sigstore trust root now, not at the first
    keyless bundle: raise :class:`~custody.errors.KeyMaterialError` naming the file."""
    if trust.trusted_root is None:
        return
    from custody.signing.sigstore_verify import load_trusted_root

    try:
        load_trusted_root(trust)
    except KeyMaterialError as exc:
        raise KeyMaterialError(
            exc.message, subject=str(trust.trusted_root),
            hint=exc.hint or "check the path (a policy's paths are relative to the policy "
            "file): it must be the trusted_root.json of the Sigstore instance that signed",
        ) from None
