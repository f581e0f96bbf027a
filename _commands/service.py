"""``custody serve`` and ``custody token ...``: the HTTP service and its bearer tokens
(registered by cli.py; FastAPI and uvicorn are imported only when ``serve`` runs)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from custody._commands import render
from custody._commands.common import (
    STATE,
    JsonOpt,
    RoleOpt,
    current_workspace,
    want_json,
)
from custody.errors import UsageError

token_app = typer.Typer(
    help="Create, list and revoke the bearer tokens that `custody serve` accepts. They live in "
    "the ledger database (as their SHA-256 only), so every replica of the service sees them at "
    "once; a token's role says what it may do.\n\n"
    "\b\nExamples:\n"
    "  custody token create --role publisher --label ci\n"
    "  custody token list\n"
    "  custody token revoke 3",
    no_args_is_help=True, rich_markup_mode=None)


def serve(
    host: Annotated[str, typer.Option("--host", metavar="ADDRESS", help="Address to listen on.")
                    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", metavar="PORT", help="TCP port.", min=1,
                                      max=65535)] = 8471,
    ledger: Annotated[str | None, typer.Option(
        "--ledger", metavar="URL", help="Ledger database URL or path (else the global --ledger, "
        "$CUSTODY_LEDGER, or the nearest .custody/).")] = None,
    policy: Annotated[Path | None, typer.Option(
        "--policy", metavar="FILE", help="Verification policy file (else .custody/policy.toml, "
        "else the workspace's trusted keys).")] = None,
    tls_cert: Annotated[Path | None, typer.Option(
        "--tls-cert", metavar="PEM", help="PEM certificate chain (serve HTTPS).")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", metavar="PEM",
                                                 help="PEM private key.")] = None,
    workers: Annotated[int, typer.Option("--workers", metavar="N", min=1, max=64,
                                         help="Worker processes.")] = 1,
    max_body: Annotated[int | None, typer.Option(
        "--max-body", metavar="BYTES", help="Largest request body accepted (default 16 MiB).")
    ] = None,
) -> None:
    """Run the HTTP API (FastAPI on uvicorn): verify, records, lineage, proofs, admission.

    \b
    Examples:
      custody serve
      custody serve --host 0.0.0.0 --port 8443 --tls-cert cert.pem --tls-key key.pem
    """
    if (tls_cert is None) != (tls_key is None):
        raise UsageError("give --tls-cert and --tls-key together")
    for path in (tls_cert, tls_key, policy):
        if path is not None and not path.is_file():
            raise UsageError(f"{path} is not a file", subject=str(path))
    chosen = ledger or STATE["ledger"]
    if chosen:
        os.environ["CUSTODY_LEDGER"] = chosen
    if policy is not None:
        os.environ["CUSTODY_POLICY"] = str(policy.absolute())
    if max_body is not None:
        os.environ["CUSTODY_SERVICE_MAX_BODY"] = str(max_body)
    from custody.provenance.service.settings import ServiceContext, Settings

    ServiceContext.open(Settings.from_env()).close()  # fail here, not in every worker
    import uvicorn

    render.line(f"custody service on {'https' if tls_cert else 'http'}://{host}:{port} "
                f"({workers} worker(s))", stderr=True)
    uvicorn.run("custody.provenance.service.app:create_app_from_env", factory=True, host=host,
                port=port, workers=workers, log_level="info", server_header=False,
                ssl_certfile=str(tls_cert) if tls_cert else None,
                ssl_keyfile=str(tls_key) if tls_key else None)


@token_app.command("create")
def token_create(
    role: RoleOpt,
    label: Annotated[str, typer.Option("--label", metavar="TEXT",
                                       help="Who or what holds it.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Create a bearer token; it is printed once and stored only as its SHA-256.

    \b
    Examples:
      custody token create --role reader --label dashboard
      custody token create --role admin --json
    """
    from custody.provenance.service.tokens import create_token

    with current_workspace().open_ledger() as ledger:
        token, info = create_token(ledger.engine, role.value, label)
    if want_json(as_json):
        render.emit_json({"token": token, **info.to_json()})
        return
    sys.stdout.write(token + "\n")
    render.err().print(f"created {info.role} token #{info.id}; it is not shown again")


@token_app.command("list")
def token_list(as_json: JsonOpt = False) -> None:
    """List tokens (id, role, label, created, revoked); never the tokens themselves.

    \b
    Example:
      custody token list --json
    """
    from custody.provenance.service.tokens import list_tokens

    with current_workspace().open_ledger() as ledger:
        tokens = list_tokens(ledger.engine)
    if want_json(as_json):
        render.emit_json({"tokens": [t.to_json() for t in tokens]})
        return
    for t in tokens:
        state = "revoked" if t.revoked else "active"
        render.line(f"{t.id}\t{t.role}\t{state}\t"
                    f"{t.created_at.isoformat(timespec='seconds')}\t{t.label}")


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[int, typer.Argument(metavar="ID", help="The token's id (`custody token "
                                            "list`).")],
    as_json: JsonOpt = False,
) -> None:
    """Revoke a token by id (it stops working at once).

    \b
    Example:
      custody token revoke 3
    """
    from custody.provenance.service.tokens import revoke_token

    with current_workspace().open_ledger() as ledger:
        revoke_token(ledger.engine, token_id)
    if want_json(as_json):
        render.emit_json({"ok": True, "id": token_id, "revoked": True})
        return
    render.err().print(f"revoked token #{token_id}")
