"""``custody audit witness`` and ``custody audit witness-keygen``: a witness of the ledger's log
(C2SP tlog-witness), registered on the ``audit`` group by _commands/audit.py.

The witness checks that the ledger's newest checkpoint, signed by the pinned ledger key, extends
the last one it cosigned (a consistency proof from the ledger), cosigns it, saves that in its
state directory (which must be its own: the ledger's administrator must not be able to write
it) and writes the cosigned checkpoint out. Rollback, fork or inconsistency refuse (exit 1)
without advancing the state.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from custody._commands import render
from custody._commands.common import JsonOpt, OutOpt, current_workspace, read_text, want_json
from custody.errors import KeyMaterialError, OutputError, UsageError

if TYPE_CHECKING:
    from custody.provenance.log.checkpoint import NoteVerifier
    from custody.provenance.log.witness import WitnessKey
    from custody.provenance.workspace import Workspace

witness_app = typer.Typer(rich_markup_mode=None)


@witness_app.command("witness")
def witness_cmd(
    key: Annotated[Path, typer.Option(
        "--key", metavar="FILE", help="The witness's private key (`custody audit "
        "witness-keygen`).")],
    state: Annotated[Path, typer.Option(
        "--state", metavar="DIR", help="The witness's state directory: the last checkpoint it "
        "cosigned per log. Only the witness's user may write it.")],
    ledger: Annotated[str | None, typer.Option(
        "--ledger", metavar="URL", help="The ledger database URL or path (else the global "
        "--ledger, $CUSTODY_LEDGER, or the nearest .custody/).")] = None,
    ledger_vkey: Annotated[str | None, typer.Option(
        "--ledger-vkey", metavar="VKEY", help="The ledger's checkpoint key (default: the "
        "workspace's ledger_vkey); never read from the ledger database.")] = None,
    out: OutOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Cosign the ledger's newest checkpoint once it is shown to extend the last one cosigned.

    \b
    Examples:
      custody audit witness --key w1.skey --state ~/.witness --out cosigned/w1.note
      custody audit witness --key w1.skey --state ~/.witness --ledger-vkey VKEY
    """
    from custody.provenance.log.witness import Witness
    from custody.provenance.recording.output_file import OutputFile

    witness_key = _load_key(key)
    ws = current_workspace(ledger)
    pinned = _pinned(ws, ledger_vkey)
    witness = Witness(witness_key, state)
    with OutputFile.prepare(out) if out is not None else nullcontext() as target:
        with ws.open_ledger() as opened:
            head = opened.head().note
            done = witness.witness(head, opened.prove_consistency, pinned, datetime.now(UTC))
        if target is not None:
            target.write(done.note)
            target.commit()
    cp = done.checkpoint
    if want_json(as_json):
        render.emit_json({
            "ok": True, "origin": cp.origin, "size": cp.size, "root": cp.root.hex(),
            "witness": done.cosignature.label, "cosigned_at": done.cosignature.iso,
            "previous_size": done.previous_size, "first_use": done.first_use,
            "out": None if out is None else str(out),
            "note": done.note.decode() if out is None else None})
        return
    if out is None:
        render.export(done.note, out=None, as_json=False)
    render.err().print(render.esc(done.message)
                       + ("" if out is None else f"; wrote {render.esc(out)}"))


@witness_app.command("witness-keygen")
def witness_keygen(
    name: Annotated[str, typer.Argument(
        metavar="NAME", help="The witness's name, e.g. witness.example.com/w1 (no spaces or "
        "'+'): its cosignatures carry it.")],
    out: Annotated[Path, typer.Option(
        "--out", metavar="FILE", help="Where to write the private key (created with mode "
        "600; an existing file is never overwritten).")],
    as_json: JsonOpt = False,
) -> None:
    """Make a witness key: the private key goes to FILE, its vkey (for policies) to stdout.

    \b
    Example:
      custody audit witness-keygen witness.example.com/w1 --out w1.skey
    """
    from custody.provenance.log.witness import WitnessKey

    try:
        key = WitnessKey.generate(name)
    except ValueError as exc:
        raise UsageError(str(exc), hint="use a name without spaces or '+', such as "
                         "witness.example.com/w1") from None
    _write_secret(out, key.skey + "\n")
    vkey = key.verifier().vkey
    if want_json(as_json):
        render.emit_json({"ok": True, "name": name, "vkey": vkey, "key_file": str(out)})
        return
    render.export(vkey + "\n", out=None, as_json=False)
    render.err().print(f"wrote the private key of witness {render.esc(name)} to "
                       f"{render.esc(out)} (keep it secret); its vkey is above: list it in "
                       "the policy's \\[witness] table")


def _load_key(path: Path) -> WitnessKey:
    from custody.provenance.log.witness import WitnessKey
    from custody.provenance.workspace import check_private_key_file

    check_private_key_file(path)
    try:
        return WitnessKey.from_skey(read_text(path))
    except KeyMaterialError as exc:
        raise KeyMaterialError(f"{path}: {exc.message}", subject=str(path), hint=exc.hint or
                               "pass the file `custody audit witness-keygen` wrote") from None


def _pinned(ws: Workspace, vkey: str | None) -> NoteVerifier:
    from custody.provenance.log.checkpoint import NoteVerifier

    pinned = NoteVerifier.from_vkey(vkey) if vkey else ws.ledger_verifier()
    if pinned is None:
        raise UsageError(
            "the witness needs the ledger's checkpoint key pinned; it never takes it from the "
            "ledger database", hint="pass --ledger-vkey VKEY (the ledger_vkey line of the "
            "ledger's .custody/config.toml, checked out of band) or run inside a workspace that "
            "pins it")
    return pinned


def _write_secret(path: Path, text: str) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise UsageError(f"{path} exists; a key file is never overwritten", subject=str(path),
                         hint="choose another --out, or move the old key aside first") from None
    except OSError as exc:
        raise OutputError(f"cannot create {path}: {exc.strerror or exc}", subject=str(path),
                          hint="choose a --out in a folder you can write") from None
    with os.fdopen(fd, "w", encoding="utf-8") as stream:
        stream.write(text)
