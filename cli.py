"""The ``custody`` command: one thin function per subcommand.

Exit codes everywhere: 0 success / verified / clean, 1 refused, 2 usage or operational error.
Heavy modules are imported inside the commands, so ``custody --help`` stays fast.
"""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from custody import __version__
from custody._commands import render
from custody._commands.audit import audit_app
from custody._commands.common import (
    STATE,
    ActivityOpt,
    IdOpt,
    JsonOpt,
    KeyOpt,
    KindOpt,
    LabelOpt,
    OutOpt,
    RecordBaselineOpt,
    ScanBaselineOpt,
    SymlinkOpt,
    Threshold,
    ThresholdOpt,
    choice,
    current_workspace,
    make_signer,
    one_of,
    open_workspace_ledger,
    optional_workspace,
    read_bytes,
    read_text,
    size_hint,
    use_custody_help,
    want_json,
)
from custody._commands.dvc import dvc_app
from custody._commands.fetch import fetch as fetch_cmd
from custody._commands.service import serve as serve_cmd
from custody._commands.service import token_app
from custody.domain import Activity
from custody.errors import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_REFUSED,
    CustodyError,
    ReportedOutcome,
    UsageError,
)
from custody.provenance.verification.policy_options import build_policy, parse_threshold

if TYPE_CHECKING:
    from custody.provenance.log.checkpoint import NoteVerifier
    from custody.provenance.policy.core import Policy
    from custody.provenance.recording.output_file import OutputFile

app = typer.Typer(
    name="custody",
    help="Hash, scan, sign, record and verify ML datasets and model files.\n\n"
    "Exit codes: 0 ok, 1 refused, 2 usage or operational error.\n\n"
    "\b\nExamples:\n"
    "  custody init\n"
    "  custody record data/train.parquet --name train --kind dataset\n"
    "  custody verify data/train.parquet\n"
    "  custody --ledger postgresql://custody@db/custody list",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(audit_app, name="audit")
app.add_typer(dvc_app, name="dvc")
app.add_typer(token_app, name="token")
app.command("serve")(serve_cmd)
app.command("fetch")(fetch_cmd)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"custody {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _global(
    ledger: Annotated[
        str | None,
        typer.Option("--ledger", metavar="URL",
                     help="Ledger database URL or path (else $CUSTODY_LEDGER, else the nearest "
                     ".custody/ upward)."),
    ] = None,
    as_json: JsonOpt = False,
    version: Annotated[bool, typer.Option(
        "--version", is_eager=True, expose_value=False, callback=_print_version,
        help="Print the version and exit.")] = False,
) -> None:
    STATE["ledger"] = ledger
    STATE["json"] = as_json


@app.command()
def init(
    ledger: Annotated[str | None, typer.Option("--ledger", metavar="URL",
                                               help="Use this database instead of SQLite.")] = None,
    directory: Annotated[Path, typer.Option("--dir", metavar="DIR",
                                            help="Where to create .custody/.")] = Path(),
    ledger_key: Annotated[Path | None, typer.Option(
        "--ledger-key", metavar="FILE", help="Joining an existing --ledger: its checkpoint key "
        "(keys/ledger.skey of the workspace that created it), needed to append.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create .custody/ here: config, signing key and ledger (SQLite unless --ledger).

    \b
    Examples:
      custody init
      custody init --dir project --ledger postgresql://custody@db/custody
    """
    from custody.provenance.ledger.engine import redact
    from custody.provenance.workspace import init_workspace

    ws = init_workspace(directory, ledger=ledger or STATE["ledger"], ledger_key=ledger_key)
    data = {"home": str(ws.home), "ledger": redact(ws.ledger_url),
            "signing_key": str(ws.signing_key), "trusted_keys": [str(p) for p in ws.trusted_keys]}
    if want_json(as_json):
        render.emit_json(data)
    else:
        render.err().print(f"initialised {render.esc(ws.home)}\n  ledger: "
                           f"{render.esc(data['ledger'])}\n  signing key: "
                           f"{render.esc(ws.signing_key)}")
    if ws.ledger_key is None:
        render.err().print("  joined an existing ledger read-only: to append, run `custody init "
                           "--ledger URL --ledger-key FILE` with its keys/ledger.skey",
                           markup=False)


@app.command()
def keygen(
    out: Annotated[Path, typer.Option("--out", metavar="PREFIX",
                                      help="Write PREFIX.key (mode 0600) and PREFIX.pub.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Generate an EC P-256 signing key pair.

    \b
    Example:
      custody keygen --out keys/release
    """
    from custody.signing.keys import generate_key_pair, key_hint, load_public_key

    key_path, pub_path = generate_key_pair(out, overwrite=force)
    hint = key_hint(load_public_key(pub_path))
    if want_json(as_json):
        render.emit_json({"private_key": str(key_path), "public_key": str(pub_path),
                          "hint": hint})
    else:
        render.err().print(f"wrote {render.esc(key_path)} (private, 0600) and "
                           f"{render.esc(pub_path)}\n  key hint: {hint}")


@app.command("hash")
def hash_cmd(
    path: Annotated[str, typer.Argument(
        metavar="PATH|URI", help="A file or directory, or an object-store URI: s3://, gs://, "
        "az://, hf://, https://, file://, memory:// (docs/object-stores.md).")],
    allow_symlinks: SymlinkOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Print the manifest of PATH: per-file relpath, size, sha256, and the root digest.

    For a URI, also each object's location and identity (version id / ETag / generation).

    \b
    Examples:
      custody hash models/resnet
      custody hash data/train.parquet --json
      custody hash s3://bucket/models/resnet/
    """
    from custody.provenance.hashing.locations import is_uri

    if is_uri(path):
        from custody.provenance.hashing.objects import hash_uri

        with render.progress("hashing", None, enabled=not want_json(as_json)) as tick:
            hashed = hash_uri(path, progress=tick)
        if want_json(as_json):
            render.emit_json(hashed.to_json())
        else:
            render.manifest_table(hashed.manifest)
            render.err().print(f"source: {hashed.source} ({len(hashed.locations.objects)} "
                               "object(s), identities in --json)", markup=False)
        return
    from custody.provenance.hashing.files import hash_path

    local = Path(path)
    with render.progress("hashing", size_hint(local), enabled=not want_json(as_json)) as tick:
        manifest = hash_path(local, allow_symlinks=allow_symlinks, progress=tick)
    if want_json(as_json):
        render.emit_json(manifest.to_json())
    else:
        render.manifest_table(manifest)


@app.command()
def scan(
    path: Annotated[str, typer.Argument(
        metavar="PATH|URI", help="A file or directory to scan, or an object-store URI (read "
        "once into a private copy, which is scanned).")],
    threshold: ThresholdOpt = None,
    policy_file: Annotated[Path | None, typer.Option(
        "--policy", metavar="FILE", help="Policy file: threshold and allowed pickle globals.")
    ] = None,
    sarif: Annotated[Path | None, typer.Option(
        "--sarif", metavar="FILE", help="Also write the findings as SARIF 2.1.0.")] = None,
    baseline: ScanBaselineOpt = None,
    label: LabelOpt = None,
    id_column: IdOpt = None,
    rows_out: Annotated[Path | None, typer.Option(
        "--rows-out", metavar="FILE", help="Datasets: write every row a poisoning finding "
        "names (row, id, rule, label, score, what the baseline predicts) to FILE, .parquet or "
        ".csv; the JSON evidence lists at most 1,000 rows per finding.")] = None,
    allow_symlinks: SymlinkOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Scan PATH for dangerous content without loading it (exit 1 on a finding).

    With --baseline (or --label, --id), PATH is a table whose rows are checked as well.

    \b
    Examples:
      custody scan models/model.pkl
      custody scan models --threshold high --sarif scan.sarif
      custody scan data/new.parquet --baseline train@1
      custody scan s3://bucket/models/model.pkl
    """
    from custody.provenance.hashing.locations import is_uri
    from custody.provenance.scanning.step import (
        DatasetOptions,
        scan_objects,
        scan_path,
        with_dataset_checks,
    )
    from custody.validators.findings import ScanReport
    from custody.validators.interface import ScanOptions

    limit = parse_threshold(threshold or "medium")
    options = ScanOptions()
    if policy_file is not None:
        from custody.provenance.policy.file import load_policy

        policy = load_policy(policy_file)
        limit = parse_threshold(threshold) if threshold else policy.scan_threshold
        options = ScanOptions(extra_safe_globals=policy.extra_safe_globals,
                              pickle_profiles=policy.pickle_profiles)

    def finish(report: ScanReport, table: Path, shown: str) -> None:
        """Dataset checks, SARIF and the report (``table``: the bytes that were read)."""
        extra: dict[str, object] = {}
        if baseline is not None or label is not None or id_column is not None \
                or rows_out is not None:
            ws = optional_workspace()
            ledger = ws.open_ledger() if ws is not None else None
            try:
                report, assessment = with_dataset_checks(
                    report, table, ledger=ledger, name=None,
                    dataset=DatasetOptions(baseline=baseline, label=label, id_column=id_column))
            finally:
                if ledger is not None:
                    ledger.close()
            if assessment is None:
                raise UsageError(f"{shown} is not a Parquet or CSV table")
            if rows_out is not None:
                from custody.provenance.scanning.datasets import write_rows_out

                write_rows_out(assessment, rows_out)
            extra = {"schema_fingerprint": assessment.claims.get("schema_fingerprint"),
                     "baseline": assessment.claims.get("baseline")}
        if sarif is not None:
            import json

            from custody.validators.sarif import to_sarif

            sarif.write_text(json.dumps(to_sarif(report, base=shown, tool_version=__version__),
                                        indent=2) + "\n", encoding="utf-8")
        if want_json(as_json):
            render.emit_json({**report.to_json(), **extra})
        else:
            render.scan_table(report)
        if report.exit_code != EXIT_OK:
            raise ReportedOutcome(report.exit_code)

    if is_uri(path):
        from custody.provenance.hashing.objects import fetch_private

        with render.progress("reading", None, enabled=not want_json(as_json)) as tick, \
                fetch_private(path, progress=tick) as fetched:
            assert fetched.copy is not None  # noqa: S101 - fetch_private always makes it
            finish(scan_objects(fetched, threshold=limit, options=options), fetched.copy,
                   fetched.source)
        return
    local = Path(path)
    with render.progress("scanning", size_hint(local), enabled=not want_json(as_json)):
        report = scan_path(local, threshold=limit, options=options, allow_symlinks=allow_symlinks)
    finish(report, local, path)


@app.command("record")
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


@app.command("verify")
def verify_cmd(
    path: Annotated[Path | None, typer.Argument(
        help="The file or directory about to be used (or --dvc-stage).")] = None,
    name: Annotated[str | None, typer.Option("--name", metavar="NAME",
                                             help="Expected artifact name.")] = None,
    keys: Annotated[list[Path] | None, typer.Option(
        "--key", metavar="PUB", help="Trusted public key (repeatable; default: the workspace's "
        "trusted_keys).")] = None,
    identity: Annotated[str | None, typer.Option(
        metavar="IDENTITY", help="Trusted Sigstore keyless identity (certificate SAN), exact.")
    ] = None,
    identity_regexp: Annotated[str | None, typer.Option(
        metavar="REGEX", help="Trusted keyless identity as a regular expression (full match).")
    ] = None,
    issuer: Annotated[str | None, typer.Option(
        metavar="URL", help="OIDC issuer of the keyless identity, exact (required with "
        "--identity*).")] = None,
    ca_certs: Annotated[list[Path] | None, typer.Option(
        "--ca-cert", metavar="PEM", help="Trusted CA root for certificate-chain signatures.")
    ] = None,
    trusted_root: Annotated[Path | None, typer.Option(
        metavar="FILE", help="Pinned Sigstore trusted_root.json (fully offline).")] = None,
    staging: Annotated[bool, typer.Option(
        "--staging", help="Trust Sigstore staging instead of production (TUF, online).")
    ] = False,
    bundle: Annotated[Path | None, typer.Option(
        "--bundle", metavar="FILE", help="Verify against this signature (Sigstore bundle, "
        "model.sig) instead of the ledger.")] = None,
    receipt: Annotated[Path | None, typer.Option(
        "--receipt", metavar="FILE", help="Verify offline against an inclusion receipt "
        "(`custody audit prove`).")] = None,
    ledger_vkey: Annotated[str | None, typer.Option(
        "--ledger-vkey", metavar="VKEY", help="The ledger's checkpoint key (default: the "
        "workspace's ledger_vkey).")] = None,
    dvc_stage: Annotated[str | None, typer.Option(
        "--dvc-stage", metavar="NAME", help="Verify every output of this DVC stage.")] = None,
    dvc_lock: Annotated[Path, typer.Option(
        "--dvc-lock", metavar="FILE", help="The dvc.lock of --dvc-stage.")] = Path("dvc.lock"),
    policy_file: Annotated[Path | None, typer.Option(
        "--policy", metavar="FILE", help="Policy file (default: .custody/policy.toml if it "
        "exists).")] = None,
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
    explicit = bool(keys or identity or identity_regexp or issuer or ca_certs)
    standalone = bundle is not None or receipt is not None
    ws = optional_workspace() if standalone else current_workspace()
    policy = build_policy(
        keys=keys or [], identity=identity, identity_regexp=identity_regexp, issuer=issuer,
        ca_certs=ca_certs or [], trusted_root=trusted_root, staging=staging,
        threshold=threshold.value if threshold else None, policy_file=policy_file,
        workspace=None if explicit else ws)
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


@app.command("lineage")
def lineage_cmd(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION, NAME (latest) or sha256:HEX.")],
    upstream: Annotated[bool, typer.Option(
        "--upstream/--downstream", help="Walk inputs (default) or what was made from it.")
    ] = True,
    depth: Annotated[int, typer.Option(metavar="N", min=1, max=1000, help="Maximum hops.")
                     ] = 10,
    fmt: Annotated[render.LineageFormat | None, typer.Option(
        "--format", metavar="FORMAT", help=f"{one_of(render.LineageFormat)} (default: table; "
        "json with --json). --json combines only with the JSON formats: --json --format dot is "
        "a usage error.")] = None,
    as_of: Annotated[int | None, typer.Option(
        "--as-of", metavar="CHECKPOINT_SIZE", min=0,
        help="The graph as it was at that checkpoint (entries below that index).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show what REF was made from (upstream) or what was made from it (downstream).

    \b
    Examples:
      custody lineage resnet@1
      custody lineage train@1 --downstream --format dot
    """
    from custody.provenance.verification.lineage import lineage

    fmt = render.lineage_format(fmt, as_json=want_json(as_json))
    ws = current_workspace()
    policy = build_policy(keys=[], identity=None, identity_regexp=None, issuer=None,
                          ca_certs=[], trusted_root=None, staging=False, threshold=None,
                          workspace=ws)  # marks come from verify's evaluation, same policy
    with open_workspace_ledger(ws) as ledger:
        graph = lineage(ledger, ref, upstream=upstream, depth=depth, as_of=as_of,
                        policy=policy, ledger_verifier=ws.ledger_verifier())
    render.lineage_render(graph, fmt)


@app.command("list")
def list_cmd(
    name: Annotated[str | None, typer.Argument(help="Only versions of this artifact.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List recorded artifact versions.

    \b
    Examples:
      custody list
      custody list resnet --json
    """
    with open_workspace_ledger(current_workspace()) as ledger:
        rows = ledger.list_versions(name)
    if want_json(as_json):
        render.emit_json([r.model_dump(mode="json") | {"ref": r.ref} for r in rows])
        return
    from rich.table import Table

    console = render.out()
    table = Table()
    for col in ("ref", "kind", "digest", "files", "scan", "signer", "recorded"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(render.plain(r.ref), r.kind,
                      f"{r.digest_algorithm}:{render.clip(r.digest, 16, console)}",
                      str(r.file_count), r.scan_verdict,
                      render.plain(render.clip(r.signer, 28, console)),
                      r.recorded_at.isoformat(timespec="seconds"))
    console.print(table)


@app.command("bundle")
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


@app.command()
def quickstart(
    directory: Annotated[Path, typer.Option("--dir", metavar="DIR", help="Folder to work in.")
                         ] = Path(),
    as_json: JsonOpt = False,
) -> None:
    """Run the whole flow on the bundled sample data: record, verify, lineage, refusals.

    \b
    Example:
      custody quickstart --dir /tmp/custody-demo
    """
    from custody.provenance.quickstart import run_quickstart

    console = render.err()
    step = [0]

    def say(text: str) -> None:
        step[0] += 1
        console.print(f"[bold cyan]{step[0]:>2}.[/] {render.esc(text)}")

    result = run_quickstart(directory, say, version=__version__)
    if not want_json(as_json):
        say("upstream lineage of the model:")
        render.lineage_render(result.graph, render.LineageFormat.TABLE)
    for exc in result.refusals:
        say("refused, as it should be:")
        render.error(exc, as_json=False)
    expected = 3
    if want_json(as_json):
        render.emit_json({
            "ok": len(result.refusals) == expected,
            "dataset": result.dataset.to_json(),
            "model": result.model.to_json(),
            "verified": result.verified.to_json(),
            "lineage": result.graph.to_json(),
            "refusals": [e.diagnostic() for e in result.refusals],
        })
    if len(result.refusals) != expected:
        console.print("[bold red]quickstart: a tampered or malicious file was NOT refused[/]")
        raise ReportedOutcome(EXIT_REFUSED)
    console.print("[bold green]quickstart complete[/]: the model and its training data verify; "
                  "tampered, malicious and poisoned files are refused.")


@app.command()
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


policy_app = typer.Typer(help="Validate verification policy files.\n\n\b\nExample:\n"
                         "  custody policy check .custody/policy.toml", no_args_is_help=True,
                         rich_markup_mode=None)
app.add_typer(policy_app, name="policy")


@policy_app.command("check")
def policy_check(
    path: Annotated[Path, typer.Argument(help="The policy file (TOML).")],
    as_json: JsonOpt = False,
) -> None:
    """Validate a policy file: unknown keys, wrong types and missing files are errors.

    \b
    Example:
      custody policy check .custody/policy.toml
    """
    from custody.provenance.policy.file import load_policy

    policy = load_policy(path)
    rules = [{"kind": r.kind, "name": r.name, "signers": r.signers.describe()}
             for r in policy.rules]
    summary = {
        "ok": True, "policy": str(path), "rules": rules,
        "scan_threshold": policy.scan_threshold.label,
        "kind_thresholds": {k: v.label for k, v in policy.kind_thresholds.items()},
        "max_depth": policy.max_depth, "require_trained_on": policy.require_trained_on,
        "max_age_days": policy.max_age_days,
        "allowed_pickle_globals": sorted(policy.extra_safe_globals),
    }
    if want_json(as_json):
        render.emit_json(summary)
    else:
        render.out().print(f"policy {render.esc(path)} is valid: {len(policy.rules)} trust "
                           "rule(s)")
        for rule in rules:
            render.err().print(f"  {rule['kind'] or 'any kind'} {render.esc(rule['name'] or '*')}: "
                               f"{render.esc(rule['signers'])}")


@app.command()
def migrate(as_json: JsonOpt = False) -> None:
    """Upgrade the ledger's schema to this version of Custody (Alembic; back up first).

    \b
    Example:
      custody --ledger postgresql://custody@db/custody migrate
    """
    from custody.provenance.ledger.engine import make_engine, redact
    from custody.provenance.ledger.migrate import current_revision, head_revision, upgrade

    url = current_workspace().ledger_url
    engine = make_engine(url)
    try:
        before = current_revision(engine)
        upgrade(engine)
    finally:
        engine.dispose()
    data = {"ledger": redact(url), "from": before, "to": head_revision()}
    if want_json(as_json):
        render.emit_json(data)
    else:
        render.err().print(f"ledger {render.esc(data['ledger'])}: schema {before} → {data['to']}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app and map outcomes to exit codes 0 / 1 / 2."""
    try:
        app(args=argv, prog_name="custody")
    except SystemExit as exc:  # usage errors (2), typer.Exit, --help
        code = exc.code
        return code if isinstance(code, int) else (EXIT_OK if code is None else EXIT_ERROR)
    except ReportedOutcome as exc:  # the command has shown its report
        return exc.exit_code
    except CustodyError as exc:
        render.error(exc, as_json=bool(STATE["json"]) or "--json" in (argv or sys.argv))
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_ERROR
    except Exception:  # noqa: BLE001 - a crash must not exit 1, which means "refused"
        import traceback

        traceback.print_exc()
        render.err().print("[red]internal error[/]: this is a bug in Custody; please report it "
                           "with the traceback above")
        return EXIT_ERROR
    return EXIT_OK


use_custody_help(app)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
