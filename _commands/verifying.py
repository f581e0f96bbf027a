"""``custody verify``: against the ledger, a standalone bundle or receipt, or every output of a
DVC stage (registered by cli.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from custody._commands import render
from custody._commands.common import (
    CaCertsOpt,
    IdentityOpt,
    IdentityRegexpOpt,
    IssuerOpt,
    JsonOpt,
    LedgerVkeyOpt,
    NameOpt,
    PolicyFileOpt,
    SymlinkOpt,
    ThresholdOpt,
    TrustedRootOpt,
    TrustKeysOpt,
    TrustOptions,
    current_workspace,
    open_workspace_ledger,
    optional_workspace,
    read_bytes,
    read_text,
    size_hint,
    want_json,
)
from custody.errors import UsageError

if TYPE_CHECKING:
    from custody.provenance.log.checkpoint import NoteVerifier
    from custody.provenance.policy.core import Policy


def verify_cmd(
    path: Annotated[Path | None, typer.Argument(
        help="The file or directory about to be used (or --dvc-stage).")] = None,
    name: NameOpt = None,
    keys: TrustKeysOpt = None,
    identity: IdentityOpt = None,
    identity_regexp: IdentityRegexpOpt = None,
    issuer: IssuerOpt = None,
    ca_certs: CaCertsOpt = None,
    trusted_root: TrustedRootOpt = None,
    staging: Annotated[bool, typer.Option(
        "--staging", help="Trust Sigstore staging instead of production (TUF, online).")
    ] = False,
    bundle: Annotated[Path | None, typer.Option(
        "--bundle", metavar="FILE", help="Verify against this signature (Sigstore bundle, "
        "model.sig) instead of the ledger.")] = None,
    receipt: Annotated[Path | None, typer.Option(
        "--receipt", metavar="FILE", help="Verify offline against an inclusion receipt "
        "(`custody audit prove`).")] = None,
    ledger_vkey: LedgerVkeyOpt = None,
    dvc_stage: Annotated[str | None, typer.Option(
        "--dvc-stage", metavar="NAME", help="Verify every output of this DVC stage.")] = None,
    dvc_lock: Annotated[Path, typer.Option(
        "--dvc-lock", metavar="FILE", help="The dvc.lock of --dvc-stage.")] = Path("dvc.lock"),
    policy_file: PolicyFileOpt = None,
    threshold: ThresholdOpt = None,
    allow_symlinks: SymlinkOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Re-hash PATH and check its record, signature, scan and upstream chain (exit 1 refused).

    \b
    Examples:
      custody verify models/resnet
      custody verify models/resnet --bundle rn.sigstore --key keys/release.pub
      custody verify --dvc-stage train
    """
    from custody.provenance.log.checkpoint import NoteVerifier

    if bundle is not None and receipt is not None:
        raise UsageError("give --bundle or --receipt, not both")
    if (path is None) == (dvc_stage is None):
        raise UsageError("give PATH or --dvc-stage NAME (one of them)")
    if trusted_root is not None:  # a missing or invalid root is an error, whatever is verified
        from custody.provenance.policy.core import check_trusted_root
        from custody.signing.sigstore_verify import SigstoreTrust

        check_trusted_root(SigstoreTrust(trusted_root=trusted_root))
    standalone = bundle is not None or receipt is not None
    ws = optional_workspace() if standalone else current_workspace()
    policy = TrustOptions(keys, identity, identity_regexp, issuer, ca_certs, trusted_root,
                          policy_file, threshold, staging).policy(ws)
    # --ledger-vkey, else the pin the ledger carries ($CUSTODY_LEDGER_VKEY, the workspace's
    # ledger_vkey): never the key in the database; unpinned, verify refuses (ledger.key_unpinned)
    given = NoteVerifier.from_vkey(ledger_vkey) if ledger_vkey else None
    if dvc_stage is not None:
        _verify_dvc_stage(dvc_stage, dvc_lock, policy, given, as_json=want_json(as_json),
                          allow_symlinks=allow_symlinks)
        return
    assert path is not None  # noqa: S101 - checked above
    with render.progress("hashing", size_hint(path), enabled=not want_json(as_json)) as tick:
        if bundle is not None:
            from custody.provenance.verification.standalone import verify_standalone

            report = verify_standalone(path, read_text(bundle), policy, bundle_path=bundle,
                                       allow_symlinks=allow_symlinks)
        elif receipt is not None:
            from custody.provenance.verification.standalone import verify_receipt_file

            pinned = given or (ws.ledger_verifier() if ws else None)
            if pinned is None:
                from custody.errors import VerificationError
                from custody.provenance.ledger.store import UNPINNED_HINT

                raise VerificationError("checking a receipt needs the ledger's pinned key",
                                        rule="ledger.key_unpinned", hint=UNPINNED_HINT,
                                        subject=str(receipt))
            report = verify_receipt_file(path, read_bytes(receipt), policy, pinned,
                                         source=str(receipt), allow_symlinks=allow_symlinks)
        else:
            from custody.provenance.verification.verify import verify

            with open_workspace_ledger(current_workspace()) as ledger:
                report = verify(path, policy, ledger=ledger, name=name, ledger_verifier=given,
                                allow_symlinks=allow_symlinks, progress=tick)
    if want_json(as_json):
        render.emit_json({"ok": True, **report.to_json()})
        return
    render.verification(path, report)


def _verify_dvc_stage(stage: str, lock: Path, policy: Policy, pinned: NoteVerifier | None, *,
                      as_json: bool, allow_symlinks: bool) -> None:
    from custody.provenance.hashing.dvc import stage_outputs
    from custody.provenance.verification.verify import verify

    with open_workspace_ledger(current_workspace()) as ledger:
        reports = [verify(out, policy, ledger=ledger, ledger_verifier=pinned,
                          allow_symlinks=allow_symlinks) for out in stage_outputs(stage, lock)]
    if as_json:
        render.emit_json({"ok": True, "stage": stage, "outputs": [r.to_json() for r in reports]})
        return
    for report in reports:
        render.verification(Path(report.path), report)
