"""``custody dvc ...``: DVC pipelines as signed lineage (registered by cli.py).

The DVC code is imported inside the commands; it never imports or runs the ``dvc`` application,
so there are no DVC usage analytics to turn off and ``os.environ`` is left alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from custody import __version__
from custody._commands import render
from custody._commands.common import (
    JsonOpt,
    KeyOpt,
    Threshold,
    choice,
    current_workspace,
    make_signer,
    one_of,
    want_json,
)
from custody.errors import EXIT_REFUSED, ReportedOutcome, UsageError
from custody.provenance.verification.policy_options import parse_threshold

dvc_app = typer.Typer(help="DVC pipelines: import dvc.lock as signed lineage, check tracked "
                      "paths against their .dvc files.\n\n\b\nExamples:\n"
                      "  custody dvc import dvc.lock --model-out 'models/*'\n"
                      "  custody dvc status", no_args_is_help=True,
                      rich_markup_mode=None)


@dvc_app.command("import")
def dvc_import(
    lockfile: Annotated[Path, typer.Argument(help="The DVC lock file.")
                        ] = Path("dvc.lock"),
    model_outs: Annotated[list[str] | None, typer.Option(
        "--model-out", metavar="GLOB", help="Record outs matching GLOB as models, trained on "
        "the stage's deps (repeatable; a GLOB without / also matches the file name).")] = None,
    exclude: Annotated[list[str] | None, typer.Option(
        "--exclude", metavar="GLOB", help="Leave deps and outs matching GLOB out of the "
        "lineage, e.g. source code (repeatable).")] = None,
    key: KeyOpt = None,
    sigstore: Annotated[bool, typer.Option(
        "--sigstore", help="Sign keylessly with Sigstore (needs the network).")] = False,
    staging: Annotated[bool, typer.Option("--staging", help="Use Sigstore staging.")] = False,
    identity_token: Annotated[str | None, typer.Option(
        metavar="TOKEN", help="OIDC identity token for keyless signing.")] = None,
    threshold: Annotated[Threshold, typer.Option(
        "--threshold", metavar="SEVERITY",
        parser=choice(Threshold, "severity", fold_case=True),
        help=f"Lowest severity that refuses: {one_of(Threshold)}.")] = Threshold.MEDIUM,
    allow_flagged: Annotated[bool, typer.Option(
        "--allow-flagged", help="Record flagged artifacts as flagged instead of stopping.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Record every stage of LOCKFILE (deps → outs, with command and params) as lineage.

    \b
    Examples:
      custody dvc import
      custody dvc import dvc.lock --model-out 'models/*' --exclude 'src/*'
    """
    from custody.provenance.integrations.dvc_lock import import_dvc_lock

    ws = current_workspace()
    signer = make_signer(ws, key=key, cert=None, cert_chain=[], sigstore=sigstore,
                         staging=staging, trust_config=None, identity_token=identity_token)
    with ws.open_ledger(append=True) as ledger:
        result = import_dvc_lock(lockfile, ledger=ledger, signer=signer,
                                 model_outs=model_outs or (), exclude=exclude or (),
                                 threshold=parse_threshold(threshold),
                                 allow_flagged=allow_flagged, tool_version=__version__)
    if want_json(as_json):
        render.emit_json(result.to_json())
        return
    console = render.out()
    for stage in result.stages:
        inputs = ", ".join(i.ref for i in stage.inputs) or "(no inputs)"
        for output in stage.outputs:
            mark = "recorded" if output.created else "already recorded"
            console.print(f"{stage.name}: {inputs} → {output.ref} {output.digest} ({mark})",
                          markup=False)
    if result.skipped:
        render.err().print(f"[dim]not recorded (external or excluded): "
                           f"{render.esc(', '.join(result.skipped))}[/]")
    render.err().print(f"[dim]{result.lockfile}: {len(result.stages)} stage(s), "
                       f"{result.created} new record(s)[/]")


@dvc_app.command("status")
def dvc_status(
    path: Annotated[Path, typer.Argument(help="A folder inside the DVC repository.")] = Path(),
    as_json: JsonOpt = False,
) -> None:
    """Check every DVC-tracked path against its .dvc file or dvc.lock (exit 1 if one differs).

    \b
    Examples:
      custody dvc status
      custody dvc status data --json
    """
    from custody.provenance.hashing.dvc import check_out, find_repo_root, iter_tracked
    from custody.provenance.hashing.dvc.md5 import IgnoreRules

    root = find_repo_root(path)
    if root is None:
        raise UsageError(f"{path} is not inside a DVC repository (no .dvc/ folder above it)",
                         subject=str(path), hint="run it inside a DVC repository")
    ignore = IgnoreRules(root)
    statuses = [check_out(out, root, ignore=ignore) for out in iter_tracked(root)]
    bad = [s for s in statuses if not s.ok]
    if want_json(as_json):
        render.emit_json({"ok": not bad, "repository": str(root),
                          "paths": [s.to_json() for s in statuses]})
    else:
        console = render.out()
        for s in statuses:
            colour = "green" if s.ok else "red"
            detail = f": {render.esc(s.detail)}" if s.detail else ""
            console.print(f"[{colour}]{s.state:>8}[/] {render.esc(s.path)} "
                          f"[dim]({render.esc(s.out.source)})[/]{detail}")
        if not statuses:
            render.err().print("no DVC-tracked paths")
    if bad:
        raise ReportedOutcome(EXIT_REFUSED)
