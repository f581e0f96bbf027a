"""``custody audit witness`` and ``custody audit witness-keygen``: a witness of the ledger's log
(C2SP tlog-witness), registered on the ``audit`` group by _commands/audit.py.

The witness checks that the ledger's newest checkpoint, signed by the pinned ledger key, extends
the last one it cosigned (a consistency proof from the ledger), cosigns it, saves that in its
state directory (which must be its own: the ledger's administrator must not be able to write
it) and writes the cosigned checkpoint out. Rollback, fork or inconsistency refuse (exit 1)
without advancing the state. The ledger is a database (``--ledger URL``, the workspace's) or a
Custody service (``--ledger https://...``: ``GET /v1/checkpoint`` and
``/v1/proofs/consistency``); ``--publish URL`` posts the result to a service's
``POST /v1/checkpoint/cosignatures``.
"""

from __future__ import annotations

import base64
import json
import os
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from custody._commands import render
from custody._commands.common import JsonOpt, OutOpt, current_workspace, read_text, want_json
from custody.errors import (
    KeyMaterialError,
    LedgerError,
    NotFoundError,
    OutputError,
    UsageError,
    VerificationError,
)

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
        "--ledger, $CUSTODY_LEDGER, or the nearest .custody/), or a Custody service "
        "(https://HOST[:PORT]).")] = None,
    ledger_vkey: Annotated[str | None, typer.Option(
        "--ledger-vkey", metavar="VKEY", help="The ledger's checkpoint key (default: the "
        "workspace's ledger_vkey); never read from the ledger database.")] = None,
    publish: Annotated[str | None, typer.Option(
        "--publish", metavar="URL", help="Also post the cosigned checkpoint to this Custody "
        "service (a publisher token).")] = None,
    token: Annotated[str | None, typer.Option(
        "--token", metavar="TOKEN", envvar="CUSTODY_TOKEN", help="The service's bearer token "
        "(default: $CUSTODY_TOKEN): reader to fetch, publisher to --publish.")] = None,
    out: OutOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Cosign the ledger's newest checkpoint once it is shown to extend the last one cosigned.

    \b
    Examples:
      custody audit witness --key w1.skey --state ~/.witness --out cosigned/w1.note
      custody audit witness --key w1.skey --state ~/.witness --ledger-vkey VKEY
      custody audit witness --key w1.skey --state ~/.witness --ledger https://custody.example.com
    """
    from custody.provenance.log.witness import Witness
    from custody.provenance.recording.output_file import OutputFile

    witness_key = _load_key(key)
    remote = _Service(ledger, token) if ledger and _is_http(ledger) else None
    ws = None if remote is not None else current_workspace(ledger)
    pinned = _pinned(ws, ledger_vkey)
    sink = _Service(publish, token) if publish else None
    witness = Witness(witness_key, state)
    with OutputFile.prepare(out) if out is not None else nullcontext() as target:
        if remote is not None:
            done = witness.witness(remote.head(), remote.prove_consistency, pinned,
                                   datetime.now(UTC))
        else:
            assert ws is not None  # noqa: S101 - no service, so a workspace
            with ws.open_ledger() as opened:
                done = witness.witness(opened.head().note, opened.prove_consistency, pinned,
                                       datetime.now(UTC))
        if target is not None:
            target.write(done.note)
            target.commit()
    posted = sink.post(done.note, witness_key.verifier().vkey) if sink is not None else None
    cp = done.checkpoint
    if want_json(as_json):
        render.emit_json({
            "ok": True, "origin": cp.origin, "size": cp.size, "root": cp.root.hex(),
            "witness": done.cosignature.label, "cosigned_at": done.cosignature.iso,
            "previous_size": done.previous_size, "first_use": done.first_use,
            "out": None if out is None else str(out), "published": posted,
            "note": done.note.decode() if out is None else None})
        return
    if out is None:
        render.export(done.note, out=None, as_json=False)
    render.err().print(render.esc(done.message)
                       + ("" if out is None else f"; wrote {render.esc(out)}"))
    if posted is not None:
        render.err().print(f"posted to {render.esc(publish)}: the checkpoint of size "
                           f"{posted.get('size')} now has {posted.get('cosignatures')} "
                           "cosignature(s) there")


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


def _pinned(ws: Workspace | None, vkey: str | None) -> NoteVerifier:
    from custody.provenance.log.checkpoint import NoteVerifier

    pinned = NoteVerifier.from_vkey(vkey) if vkey else (
        ws.ledger_verifier() if ws is not None else None)
    if pinned is None:  # refused (exit 1), as verify and audit refuse an unpinned ledger
        raise VerificationError(
            "the witness needs the ledger's checkpoint key pinned; it never takes it from the "
            "ledger database", rule="ledger.key_unpinned", subject="--ledger-vkey",
            hint="pass --ledger-vkey VKEY (the ledger_vkey line of the ledger's "
            ".custody/config.toml, checked out of band) or run inside a workspace that pins it")
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


def _is_http(url: str) -> bool:
    return url.startswith(("https://", "http://"))


class _Service:
    """The endpoints of a Custody service a witness uses (urllib; JSON bodies)."""

    def __init__(self, base: str, token: str | None):
        if not _is_http(base):
            raise UsageError(f"{base!r} is not a service URL",
                             hint="give the service as https://HOST[:PORT]")
        self.base, self.token = base.rstrip("/"), token

    def head(self) -> str:
        note = self._call("GET", "/v1/checkpoint", {"format": "note"}, raw=True)
        assert isinstance(note, str)  # noqa: S101 - raw=True
        return note

    def prove_consistency(self, first: int, second: int) -> list[bytes]:
        body = self._call("GET", "/v1/proofs/consistency", {"from": str(first),
                                                           "to": str(second)})
        proof = body.get("proof") if isinstance(body, dict) else None
        if not isinstance(proof, list) or not all(isinstance(p, str) for p in proof):
            raise LedgerError(f"{self.base} answered no consistency proof from {first} to "
                              f"{second}", hint="check that the URL is a Custody service")
        try:
            return [base64.b64decode(p, validate=True) for p in proof]
        except ValueError:
            raise LedgerError(f"{self.base} answered a consistency proof that is not base64",
                              hint="check that the URL is a Custody service") from None

    def post(self, note: bytes, vkey: str) -> dict[str, Any]:
        body = self._call("POST", "/v1/checkpoint/cosignatures", None,
                          data={"note": note.decode(), "witness": vkey})
        return body if isinstance(body, dict) else {}

    def _call(self, method: str, path: str, query: dict[str, str] | None, *,
              raw: bool = False, data: dict[str, Any] | None = None) -> Any:
        import urllib.error
        import urllib.parse
        import urllib.request

        url = self.base + path + ("?" + urllib.parse.urlencode(query) if query else "")
        headers = {"Accept": "text/plain" if raw else "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        payload = None
        if data is not None:
            payload, headers["Content-Type"] = json.dumps(data).encode(), "application/json"
        request = urllib.request.Request(url, data=payload, headers=headers, method=method)  # noqa: S310 - http(s) checked
        try:
            with urllib.request.urlopen(request, timeout=60) as reply:  # noqa: S310
                text = reply.read(1 << 22).decode("utf-8")
        except urllib.error.HTTPError as exc:
            raise _http_error(url, exc.code, exc.read(1 << 16)) from None
        except (urllib.error.URLError, OSError, UnicodeDecodeError) as exc:
            raise LedgerError(f"cannot reach the Custody service at {self.base}: "
                              f"{getattr(exc, 'reason', None) or exc}",
                              hint="check the URL and that `custody serve` runs there") from None
        if raw:
            return text
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            raise LedgerError(f"{url} did not answer JSON",
                              hint="check that the URL is a Custody service") from None


def _http_error(url: str, status: int, raw: bytes) -> Exception:
    """The service's error body as the error it stands for (a refusal keeps its rule)."""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        body = {}
    body = body if isinstance(body, dict) else {}
    message = f"{url} answered {status}: {body.get('message') or 'no details'}"
    hint = body.get("hint") if isinstance(body.get("hint"), str) else None
    if isinstance(body.get("rule"), str):
        return VerificationError(message, rule=body["rule"], hint=hint,
                                 subject=body.get("subject"))
    if status == 404:
        return NotFoundError(message, hint=hint)
    if status in (401, 403) or 400 <= status < 500:
        return UsageError(message, hint=hint or "pass a token with --token or $CUSTODY_TOKEN")
    return LedgerError(message, hint=hint)
