"""``custody list`` and ``custody lineage``: what the ledger holds (registered by cli.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from custody._commands import render
from custody._commands.common import (
    JsonOpt,
    current_workspace,
    one_of,
    open_workspace_ledger,
    want_json,
)
from custody.provenance.verification.policy_options import build_policy


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
