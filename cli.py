"""The ``custody`` command: the Typer app, the global options and :func:`main`, the one place
where an outcome becomes an exit code.

Exit codes everywhere: 0 success / verified / clean, 1 refused, 2 usage or operational error.
The commands live in ``custody._commands`` (one module per step of the flow); they import their
heavy modules inside the command bodies, so ``custody --help`` stays fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from custody import __version__
from custody._commands import inspecting, recording, render, scanning, setup, verifying
from custody._commands.audit import audit_app
from custody._commands.common import STATE, JsonOpt, use_custody_help
from custody._commands.dvc import dvc_app
from custody._commands.fetch import fetch
from custody._commands.service import serve, token_app
from custody.errors import EXIT_ERROR, EXIT_OK, CustodyError, ReportedOutcome

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

# The commands in the order ``custody --help`` lists them, then the command groups.
COMMANDS: tuple[tuple[str, Callable[..., Any]], ...] = (
    ("serve", serve),
    ("fetch", fetch),
    ("init", setup.init),
    ("keygen", setup.keygen),
    ("hash", scanning.hash_cmd),
    ("scan", scanning.scan),
    ("record", recording.record_cmd),
    ("verify", verifying.verify_cmd),
    ("lineage", inspecting.lineage_cmd),
    ("list", inspecting.list_cmd),
    ("bundle", recording.bundle_cmd),
    ("quickstart", setup.quickstart),
    ("revoke", recording.revoke),
    ("migrate", setup.migrate),
)
GROUPS: tuple[tuple[str, typer.Typer], ...] = (
    ("audit", audit_app),
    ("dvc", dvc_app),
    ("token", token_app),
    ("policy", setup.policy_app),
)
for _name, _command in COMMANDS:
    app.command(_name)(_command)
for _name, _group in GROUPS:
    app.add_typer(_group, name=_name)


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
