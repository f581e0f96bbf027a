"""Helpers shared by the CLI modules: global state, common options, workspace access."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from custody.errors import UsageError

if TYPE_CHECKING:
    from custody.provenance.ledger.store import Ledger
    from custody.provenance.workspace import Workspace

STATE: dict[str, Any] = {"ledger": None, "json": False}

JsonOpt = Annotated[bool, typer.Option("--json", help="Write the report as JSON to stdout.")]
SymlinkOpt = Annotated[
    bool, typer.Option("--allow-symlinks", help="Follow symlinks that stay inside the artifact.")
]


def want_json(flag: bool) -> bool:
    return flag or bool(STATE["json"])


def current_workspace(ledger: str | None = None) -> Workspace:
    from custody.provenance.workspace import resolve

    return resolve(ledger or STATE["ledger"])


def open_workspace_ledger(workspace: Workspace) -> Ledger:
    return workspace.open_ledger()


def parse_threshold(text: str) -> Any:
    from custody.validators.findings import Severity

    try:
        return Severity.parse(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def size_hint(path: Path) -> int | None:
    try:
        return path.stat().st_size if path.is_file() else None
    except OSError:
        return None


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}", subject=str(path)) from None


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}", subject=str(path)) from None
