"""``custody audit ...``: prove the ledger was not rewritten (registered by cli.py)."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from custody._commands import render
from custody._commands.common import JsonOpt, OutOpt, current_workspace, read_bytes, want_json
from custody.errors import CustodyError

if TYPE_CHECKING:
    from custody.provenance.log.checkpoint import NoteVerifier
from custody._commands.witness import witness_app

audit_app = typer.Typer(help="Check the ledger's Merkle log, export checkpoints and receipts."
                        "\n\n\b\nExamples:\n"
                        "  custody audit checkpoint --out checkpoint-2026-12.txt\n"
                        "  custody audit verify --checkpoint checkpoint-2026-12.txt",
                        no_args_is_help=True, rich_markup_mode=None)

LedgerVkeyOpt = Annotated[str | None, typer.Option(
    "--ledger-vkey", metavar="VKEY", help="The ledger's checkpoint verifier key "
    "(NAME+KEYID+BASE64; default: $CUSTODY_LEDGER_VKEY, else the workspace's ledger_vkey). "
    "Never taken from the database: without a pin the command refuses.")]


def _pinned(vkey: str | None) -> NoteVerifier | None:
    """``--ledger-vkey``, else the workspace's pin (``$CUSTODY_LEDGER_VKEY``, ``ledger_vkey``)
    as the ledger it opens carries it."""
    if vkey is None:
        return None
    from custody.errors import UsageError
    from custody.provenance.log.checkpoint import NoteVerifier

    try:
        return NoteVerifier.from_vkey(vkey)
    except CustodyError as exc:
        raise UsageError(f"--ledger-vkey: {exc.message}",
                         hint="a verifier key reads NAME+KEYID+BASE64: the ledger_vkey line of "
                         "the .custody/config.toml of the workspace that created the ledger"
                         ) from None


@audit_app.command("verify")
def audit_verify(
    checkpoints: Annotated[list[Path] | None, typer.Option(
        "--checkpoint", metavar="FILE", help="A checkpoint saved earlier: prove the ledger "
        "still extends it (repeatable).")] = None,
    ledger_vkey: LedgerVkeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Recompute every leaf and root, check every signature and checkpoint (exit 1 if tampered).

    \b
    Examples:
      custody audit verify
      custody audit verify --checkpoint checkpoint-2026-12.txt
      custody --ledger postgresql+psycopg://db/ledger audit verify --ledger-vkey VKEY
    """
    from custody.provenance.ledger.audit import audit_ledger

    pinned = _pinned(ledger_vkey)
    with current_workspace().open_ledger() as ledger:
        report = audit_ledger(ledger, pinned,
                              saved_checkpoints=tuple(read_bytes(p) for p in checkpoints or []))
    if want_json(as_json):
        render.emit_json(report.to_json())
        return
    render.out().print(f"[green]AUDIT PASSED[/]: {report.entries} entries, "
                       f"{report.checkpoints} signed checkpoints, {report.signatures} "
                       f"signatures; tree size {report.size}, root {report.root}")
    for size in report.consistent_with:
        render.err().print(f"  consistent with the saved checkpoint of size {size}")
    render.err().print(f"  checkpoints checked with the pinned ledger key {report.ledger_key}",
                       markup=False)


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
    ledger_vkey: LedgerVkeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print an inclusion receipt for REF that `custody verify --receipt` checks offline.

    The newest checkpoint and REF's inclusion are verified with the pinned ledger key first.

    \b
    Example:
      custody audit prove resnet@1 --out resnet.receipt
    """
    from custody.provenance.recording.output_file import OutputFile
    from custody.provenance.verification.inclusion import export_receipt

    pinned = _pinned(ledger_vkey)
    with OutputFile.prepare(out) if out is not None else nullcontext() as target:
        with current_workspace().open_ledger() as ledger:
            version = ledger.resolve(ref)
            receipt = export_receipt(ledger, version.entry_idx, pinned)
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
