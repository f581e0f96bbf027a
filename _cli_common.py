"""Helpers shared by the CLI modules: global state, common options, workspace access."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from custody.errors import UsageError

if TYPE_CHECKING:
    from custody.provenance.ledger.store import Ledger
    from custody.provenance.policy import Policy
    from custody.provenance.workspace import Workspace
    from custody.signing.interface import Signer

STATE: dict[str, Any] = {"ledger": None, "json": False}

JsonOpt = Annotated[bool, typer.Option("--json", help="Write the report as JSON to stdout.")]
BaselineOpt = Annotated[str | None, typer.Option(
    "--baseline", metavar="PATH|REF", help="Datasets: compare with this snapshot (a path: "
    "schema, drift and poisoning; a REF: schema and drift; default for record: the previous "
    "version of NAME).")]
LabelOpt = Annotated[str | None, typer.Option(
    "--label", metavar="COLUMN", help="Datasets: the label column (else detected).")]
IdOpt = Annotated[str | None, typer.Option(
    "--id", metavar="COLUMN", help="Datasets: the row id column (else detected).")]
SymlinkOpt = Annotated[
    bool, typer.Option("--allow-symlinks", help="Follow symlinks that stay inside the artifact.")
]


def want_json(flag: bool) -> bool:
    return flag or bool(STATE["json"])


def current_workspace(ledger: str | None = None) -> Workspace:
    from custody.provenance.workspace import resolve

    return resolve(ledger or STATE["ledger"])


def optional_workspace() -> Workspace | None:
    """The workspace if there is one (standalone checks do not need it)."""
    try:
        return current_workspace()
    except UsageError:
        return None


def open_workspace_ledger(workspace: Workspace) -> Ledger:
    return workspace.open_ledger()


def parse_threshold(text: str) -> Any:
    from custody.validators.findings import Severity

    try:
        return Severity.parse(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def size_hint(path: Path) -> int | None:
    try:
        return path.stat().st_size if path.is_file() else None
    except OSError:
        return None


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}", subject=str(path)) from None


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}", subject=str(path)) from None


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

    from custody.provenance.policy import Policy
    from custody.provenance.policy_file import load_policy

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


def make_signer(
    ws: Workspace,
    *,
    key: Path | None,
    cert: Path | None,
    cert_chain: list[Path],
    sigstore: bool,
    staging: bool,
    trust_config: Path | None,
    identity_token: str | None,
) -> Signer:
    """The signer chosen by the record options: Sigstore keyless, X.509 chain, or an EC key."""
    import sys

    if sigstore:
        if key or cert:
            raise UsageError("--sigstore signs keylessly: drop --key and --cert")
        if staging and trust_config is not None:
            raise UsageError("give --staging or --trust-config, not both")
        from custody.signing.sigstore_sign import SigningTrust, SigstoreSigner
        from custody.signing.sigstore_verify import Instance

        trust = SigningTrust(instance=Instance.STAGING if staging else Instance.PRODUCTION,
                             trust_config=trust_config)
        return SigstoreSigner(trust, identity_token=identity_token,
                              interactive=sys.stdin.isatty())
    if staging or trust_config or identity_token:
        raise UsageError("--staging, --trust-config and --identity-token go with --sigstore")
    key_path = key or ws.signing_key
    if key_path is None:
        raise UsageError("no signing key", hint="pass --key FILE, --sigstore, or run "
                         "`custody init`")
    from custody.provenance.workspace import check_private_key_file

    check_private_key_file(key_path)
    if cert is not None:
        from custody.signing.cert_signer import CertChainSigner

        return CertChainSigner.from_files(key_path, cert, cert_chain)
    if cert_chain:
        raise UsageError("--cert-chain goes with --cert")
    from custody.signing.key_signer import ECKeySigner
    from custody.signing.keys import load_private_key

    return ECKeySigner(load_private_key(key_path))
