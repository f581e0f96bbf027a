"""Setting up: ``custody init``, ``keygen``, ``quickstart``, ``migrate`` and ``policy check``
(registered by cli.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from custody import __version__
from custody._commands import render
from custody._commands.common import STATE, JsonOpt, current_workspace, want_json
from custody.errors import EXIT_REFUSED, ReportedOutcome


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


policy_app = typer.Typer(help="Validate verification policy files.\n\n\b\nExample:\n"
                         "  custody policy check .custody/policy.toml", no_args_is_help=True,
                         rich_markup_mode=None)


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
