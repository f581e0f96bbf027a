"""The verification policy from command options or service settings, and the workspace.

One place decides which trust applies: explicit trust options (keys, identities, CA roots), else a
policy file, else the workspace's ``.custody/policy.toml``, else the workspace's trusted keys. The
CLI and the service both call :func:`build_policy`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from custody.errors import UsageError

if TYPE_CHECKING:
    from custody.provenance.policy.core import Policy
    from custody.provenance.workspace import Workspace


def parse_threshold(text: str) -> Any:
    from custody.validators.findings import Severity

    try:
        return Severity.parse(str(text))
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def build_policy(
    *,
    keys: list[Path],
    identity: str | None,
    identity_regexp: str | None,
    issuer: str | None,
    ca_certs: list[Path],
    trusted_root: Path | None,
    staging: bool,
    threshold: str | None,
    policy_file: Path | None = None,
    workspace: Workspace | None = None,
) -> Policy:
    """The verification policy: explicit trust options, else ``--policy FILE``, else the
    workspace's ``.custody/policy.toml``, else the workspace's trusted keys."""
    import dataclasses

    from custody.provenance.policy.core import Policy
    from custody.provenance.policy.file import load_policy

    explicit = bool(keys or identity or identity_regexp or issuer or ca_certs)
    if policy_file is None and not explicit and workspace is not None and workspace.home:
        default = workspace.home / "policy.toml"
        policy_file = default if default.is_file() else None
    if policy_file is not None:
        if explicit:
            raise UsageError("give trust options (--key, --identity, --ca-cert) or --policy, "
                             "not both")
        loaded = load_policy(policy_file)
        if threshold is not None:
            loaded = dataclasses.replace(loaded, scan_threshold=parse_threshold(threshold))
        return loaded
    if not explicit and workspace is not None:
        keys = list(workspace.trusted_keys)
    from custody.signing.cert_signer import load_certificates
    from custody.signing.keys import load_public_key
    from custody.signing.sigstore_verify import IdentityPolicy, Instance, SigstoreTrust

    identities: tuple[IdentityPolicy, ...] = ()
    if identity or identity_regexp or issuer:
        identities = (IdentityPolicy(issuer or "", identity=identity,
                                     identity_regexp=identity_regexp),)
    if staging and trusted_root is not None:
        raise UsageError("give --staging or --trusted-root, not both")
    trust = SigstoreTrust(trusted_root=trusted_root,
                          instance=Instance.STAGING if staging else Instance.PRODUCTION)
    return Policy(
        trusted_keys=tuple(load_public_key(p) for p in keys),
        identities=identities,
        ca_roots=tuple(load_certificates(ca_certs)),
        sigstore=trust,
        scan_threshold=parse_threshold(threshold or "medium"),
    )
