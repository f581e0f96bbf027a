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

STATE: dict[str, Any] = {"ledger": None, "json": False}

JsonOpt = Annotated[bool, typer.Option("--json", help="Write the report as JSON to stdout.")]
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
    threshold: str,
) -> Policy:
    """The verification policy from command-line trust options."""
    from custody.provenance.policy import Policy
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
        scan_threshold=parse_threshold(threshold),
    )
