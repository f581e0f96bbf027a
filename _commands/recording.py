"""``custody record``, ``revoke`` and ``bundle``: signed entries in, their bundles out (registered
by cli.py)."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from custody import __version__
from custody._commands import render
from custody._commands.common import (
    ActivityOpt,
    IdOpt,
    JsonOpt,
    KeyOpt,
    KindOpt,
    LabelOpt,
    OutOpt,
    RecordBaselineOpt,
    SymlinkOpt,
    Threshold,
    choice,
    current_workspace,
    make_signer,
    one_of,
    open_workspace_ledger,
    size_hint,
    want_json,
)
from custody.domain import Activity
from custody.errors import CustodyError, UsageError
from custody.provenance.verification.policy_options import parse_threshold

if TYPE_CHECKING:
    from custody.provenance.recording.output_file import OutputFile


def record_cmd(
    path: Annotated[str, typer.Argument(
        metavar="PATH|URI", help="The dataset or model file or directory, or an object-store "
        "URI (its locations and identities are signed with the record).")],
    name: Annotated[str, typer.Option("--name", metavar="NAME",
                                      help="Artifact name; versions are 1, 2, 3...")],
    kind: KindOpt,
    inputs: Annotated[list[str] | None, typer.Option(
        "--input", metavar="REF", help="Input it was made from: NAME@VERSION, NAME or "
        "sha256:HEX (repeatable).")] = None,
    activity: ActivityOpt = Activity.TRAINED_ON,
    key: KeyOpt = None,
    cert: Annotated[Path | None, typer.Option(
        "--cert", metavar="PEM", help="Sign with --key and this X.509 certificate.")] = None,
    cert_chain: Annotated[list[Path] | None, typer.Option(
        "--cert-chain", metavar="PEM", help="Intermediate certificates for --cert.")] = None,
    sigstore: Annotated[bool, typer.Option(
        "--sigstore", help="Sign keylessly with Sigstore (Fulcio + Rekor; needs the network).")
    ] = False,
    staging: Annotated[bool, typer.Option("--staging", help="Use Sigstore staging.")] = False,
    trust_config: Annotated[Path | None, typer.Option(
        metavar="FILE", help="Sigstore ClientTrustConfig JSON (a private instance).")] = None,
    identity_token: Annotated[str | None, typer.Option(
        metavar="TOKEN", help="OIDC identity token for keyless signing (else ambient CI "
        "credentials, else a browser flow).")] = None,
    threshold: Annotated[Threshold | None, typer.Option(
        "--threshold", metavar="SEVERITY",
        parser=choice(Threshold, "severity", fold_case=True),
        help=f"Lowest severity that refuses: {one_of(Threshold)} (default: medium for models, "
        "high for datasets).")] = None,
    allow_flagged: Annotated[bool, typer.Option(
        "--allow-flagged", help="Record even if the scan flags it (verify will refuse it).")
    ] = False,
    baseline: RecordBaselineOpt = None,
    label: LabelOpt = None,
    id_column: IdOpt = None,
    oms: Annotated[bool, typer.Option(
        "--oms/--no-oms", help="Models: also sign in OpenSSF Model Signing form.")] = True,
    bundle_out: Annotated[Path | None, typer.Option(
        "--bundle-out", metavar="FILE", help="Also write the Sigstore bundle to this sidecar "
        "file.")] = None,
    oms_out: Annotated[Path | None, typer.Option(
        "--oms-out", metavar="FILE", help="Models: also write the OMS signature (model.sig) "
        "here.")] = None,
    allow_symlinks: SymlinkOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Hash, scan, sign and append PATH to the ledger; print NAME@VERSION and the digest.

    Every output is validated before anything else, written under the append lock and renamed
    into place after the commit (see custody.provenance.recording.record): a bad --bundle-out or
    --oms-out exits 2 with nothing appended.

    \b
    Examples:
      custody record data/train.parquet --name train --kind dataset
      custody record models/resnet --name resnet --kind model --input train@1
      custody record models/resnet --name resnet --kind model --sigstore --bundle-out rn.sigstore
      custody record s3://bucket/models/resnet/ --name resnet --kind model
    """
    from contextlib import ExitStack

    from custody.provenance.hashing.locations import is_uri
    from custody.provenance.recording.output_file import OutputFile, check_distinct
    from custody.provenance.recording.record import record
    from custody.provenance.scanning.step import DatasetOptions

    source: str | Path = path if is_uri(path) else Path(path)

    if oms_out is not None and kind != "model":
        raise UsageError(f"--oms-out is for models; this is a {kind}", subject=str(oms_out),
                         hint="drop --oms-out (use --bundle-out for the Sigstore bundle)")
    if oms_out is not None and not oms:
        raise UsageError("--oms-out needs the OMS signature that --no-oms turns off",
                         subject=str(oms_out), hint="drop --no-oms or --oms-out")
    check_distinct(("--bundle-out", bundle_out), ("--oms-out", oms_out))
    with ExitStack() as stack:
        bundle_file = stack.enter_context(OutputFile.prepare(bundle_out, option="--bundle-out")
                                          ) if bundle_out is not None else None
        oms_file = stack.enter_context(OutputFile.prepare(oms_out, option="--oms-out")
                                       ) if oms_out is not None else None
        ws = current_workspace()
        signer = make_signer(ws, key=key, cert=cert, cert_chain=cert_chain or [],
                             sigstore=sigstore, staging=staging, trust_config=trust_config,
                             identity_token=identity_token)

        def write_outputs(bundle: str, oms_bundle: str | None) -> None:
            if bundle_file is not None:
                bundle_file.write(bundle)
            if oms_file is not None and oms_bundle is not None:
                oms_file.write(oms_bundle)

        with ws.open_ledger(append=True) as ledger, render.progress(
                "hashing", size_hint(source) if isinstance(source, Path) else None,
                enabled=not want_json(as_json)) as tick:
            result = record(source, name=name, kind=kind.value, ledger=ledger, signer=signer,
                            inputs=inputs or [], activity=activity.value,
                            threshold=parse_threshold(threshold) if threshold else None,
                            allow_flagged=allow_flagged, allow_symlinks=allow_symlinks,
                            oms=oms, progress=tick, tool_version=__version__,
                            dataset=DatasetOptions(baseline, label, id_column),
                            on_signed=write_outputs, scan_options=ws.scan_options())
        for written in (bundle_file, oms_file):
            if written is not None:
                _commit_output(written, result.version.ref)
    if want_json(as_json):
        render.emit_json(result.to_json())
    else:
        render.out().print(f"{result.version.ref} {result.manifest.ref}", markup=False)
        render.err().print(f"[dim]scan: {result.scan.verdict.value}; signed by "
                           f"{render.esc(result.version.signer)}; "
                           f"ledger entry #{result.version.entry_idx}[/]")


def _commit_output(output: OutputFile, ref: str) -> None:
    """Rename a record output into place; the entry is already committed, so say how to redo it."""
    try:
        output.commit()
    except CustodyError as exc:
        exc.hint = (f"{ref} was recorded; export it again with `custody bundle {ref} "
                    f"{'--oms ' if output.option == '--oms-out' else ''}--out FILE`")
        raise


def bundle_cmd(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION, NAME (latest) or sha256:HEX.")],
    out: OutOpt = None,
    oms: Annotated[bool, typer.Option(
        "--oms", help="The OpenSSF Model Signing signature (model.sig) instead.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Export the Sigstore bundle recorded for REF (a sidecar for `verify --bundle`).

    \b
    Examples:
      custody bundle resnet@1 --out resnet.sigstore
      custody bundle resnet --oms --out model.sig
    """
    from custody.provenance.recording.output_file import OutputFile

    with OutputFile.prepare(out) if out is not None else nullcontext() as target:
        with open_workspace_ledger(current_workspace()) as ledger:
            stored = ledger.stored_record(ledger.resolve(ref))
        text = stored.oms_bundle if oms else stored.bundle
        if text is None:
            raise UsageError(f"{stored.version.ref} has no OMS signature (only models get one)",
                             subject=stored.version.ref, hint="drop --oms for a dataset")
        meta = {"ref": stored.version.ref, "format": "oms" if oms else "sigstore-bundle"}
        if target is None:
            render.export(text, out=None, as_json=want_json(as_json), **meta)
            return
        target.write(text)
        target.commit()
    if want_json(as_json):
        render.export(text, out=out, as_json=True, **meta)
        return
    render.err().print(f"wrote the bundle of {stored.version.ref} to {render.esc(out)}")


def revoke(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION, NAME (latest) or sha256:HEX.")],
    reason: Annotated[str, typer.Option("--reason", metavar="TEXT",
                                        help="Why: recorded and shown to users.")],
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Append a signed revocation: verify refuses REF and everything made from it.

    \b
    Example:
      custody revoke train@2 --reason "label leakage found in rows 1200-1300"
    """
    from custody.provenance.recording.revocation import revoke as do_revoke

    ws = current_workspace()
    signer = make_signer(ws, key=key, cert=None, cert_chain=[], sigstore=False, staging=False,
                         trust_config=None, identity_token=None)
    with ws.open_ledger(append=True) as ledger:
        result = do_revoke(ledger, ref, reason=reason, signer=signer)
    if want_json(as_json):
        render.emit_json(result.to_json())
    else:
        render.out().print(f"revoked {result.target.ref}", markup=False)
        render.err().print(f"[dim]ledger entry #{result.entry_idx}; see the blast radius with "
                           f"`custody lineage {render.esc(result.target.ref)} --downstream`[/]")
