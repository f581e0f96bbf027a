"""``custody audit ...``: prove the ledger was not rewritten (registered by cli.py)."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer

from custody._commands import render
from custody._commands.common import JsonOpt, OutOpt, current_workspace, read_bytes, want_json
from custody._commands.witness import witness_app

audit_app = typer.Typer(help="Check the ledger's Merkle log, export checkpoints and receipts."
                        "\n\n\b\nExamples:\n"
                        "  custody audit checkpoint --out checkpoint-2026-12.txt\n"
                        "  custody audit verify --checkpoint checkpoint-2026-12.txt",
                        no_args_is_help=True, rich_markup_mode=None)


@audit_app.command("verify")
def audit_verify(
    checkpoints: Annotated[list[Path] | None, typer.Option(
        "--checkpoint", metavar="FILE", help="A checkpoint saved earlier: prove the ledger "
        "still extends it (repeatable).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Recompute every leaf and root, check every signature and checkpoint (exit 1 if tampered).

    \b
    Examples:
      custody audit verify
      custody audit verify --checkpoint checkpoint-2026-12.txt
    """
    from custody.provenance.ledger.audit import audit_ledger

    ws = current_workspace()
    with ws.open_ledger() as ledger:
        report = audit_ledger(ledger, ws.ledger_verifier(),
                              saved_checkpoints=tuple(read_bytes(p) for p in checkpoints or []))
    if want_json(as_json):
        render.emit_json(report.to_json())
        return
    render.out().print(f"[green]AUDIT PASSED[/]: {report.entries} entries, "
                       f"{report.checkpoints} signed checkpoints, {report.signatures} "
                       f"signatures; tree size {report.size}, root {report.root}")
    for size in report.consistent_with:
        render.err().print(f"  consistent with the saved checkpoint of size {size}")
    if not report.ledger_key_pinned:
        render.err().print("[yellow]warning[/]: no pinned ledger key (ledger_vkey) in this "
                           "workspace; checkpoints were checked with the key stored in the ledger")


@audit_app.command("checkpoint")
def audit_checkpoint(
    out: OutOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Export the newest signed checkpoint (keep it: it lets you prove later rewrites).

    \b
    Example:
      custody audit checkpoint --out checkpoint-2026-12.txt
    """
    from custody.provenance.recording.output_file import OutputFile

    with OutputFile.prepare(out) if out is not None else nullcontext() as target:
        with current_workspace().open_ledger() as ledger:
            head = ledger.head()
        if target is None:
            render.export(head.note, out=None, as_json=want_json(as_json), size=head.size)
            return
        target.write(head.note)
        target.commit()
    if want_json(as_json):
        render.export(head.note, out=out, as_json=True, size=head.size)
        return
    render.err().print(f"wrote the checkpoint of size {head.size} to {render.esc(out)}")


@audit_app.command("prove")
def audit_prove(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION, NAME (latest) or sha256:HEX.")],
    out: OutOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print an inclusion receipt for REF that `custody verify --receipt` checks offline.

    \b
    Example:
      custody audit prove resnet@1 --out resnet.receipt
    """
    from custody.provenance.recording.output_file import OutputFile
    from custody.provenance.verification.inclusion import export_receipt

    with OutputFile.prepare(out) if out is not None else nullcontext() as target:
        with current_workspace().open_ledger() as ledger:
            version = ledger.resolve(ref)
            receipt = export_receipt(ledger, version.entry_idx)
        meta = {"ref": version.ref, "entry": version.entry_idx}
        if target is None:
            render.export(receipt, out=None, as_json=want_json(as_json), **meta)
            return
        target.write(receipt)
        target.commit()
    if want_json(as_json):
        render.export(receipt, out=out, as_json=True, **meta)
        return
    render.err().print(f"wrote the receipt of {version.ref} (entry {version.entry_idx}) to "
                       f"{render.esc(out)}")


audit_app.registered_commands += witness_app.registered_commands  # audit witness[-keygen]
