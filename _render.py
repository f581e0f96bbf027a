"""Terminal output for the CLI: data to stdout, summaries and diagnostics to stderr.

``--json`` turns every report into one JSON document on stdout; otherwise Rich renders tables.
The output format is an enum mapped to a formatter, so adding one is adding a function.
"""

from __future__ import annotations

import enum
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from custody.errors import CustodyError
    from custody.provenance.lineage import LineageGraph
    from custody.provenance.manifest import Manifest
    from custody.provenance.verify import VerificationReport
    from custody.validators.findings import ScanReport


class LineageFormat(enum.StrEnum):
    TABLE = "table"
    JSON = "json"
    DOT = "dot"
    OPENLINEAGE = "openlineage"
    CYCLONEDX = "cyclonedx"
    PROV = "prov"


JSON_FORMATS = frozenset({LineageFormat.JSON, LineageFormat.OPENLINEAGE, LineageFormat.CYCLONEDX,
                          LineageFormat.PROV})


def lineage_format(fmt: LineageFormat | None, *, as_json: bool) -> LineageFormat:
    """The lineage format: an explicit ``--format`` wins; ``--json`` alone means ``json``.
    ``--json`` promises a JSON document on stdout, so it refuses the non-JSON formats."""
    if fmt is None:
        return LineageFormat.JSON if as_json else LineageFormat.TABLE
    if as_json and fmt not in JSON_FORMATS:
        from custody.errors import UsageError

        raise UsageError(f"--json writes JSON, but --format {fmt.value} is not JSON",
                         hint="drop --json, or use --format json, openlineage, cyclonedx or prov")
    return fmt


_consoles: dict[str, Console] = {}


def out() -> Console:
    return _console("out")


def err() -> Console:
    return _console("err")


def _console(which: str) -> Console:
    if which not in _consoles:
        from rich.console import Console

        _consoles[which] = Console(stderr=which == "err", highlight=False, soft_wrap=True)
    return _consoles[which]


def esc(value: object) -> str:
    """Escape user-controlled text (paths, names) before it goes into Rich markup."""
    from rich.markup import escape

    return escape(str(value))


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def error(exc: CustodyError, *, as_json: bool) -> None:
    if as_json:
        emit_json({"ok": False, **exc.diagnostic()})
    from custody.errors import RefusedError

    label = "REFUSED" if isinstance(exc, RefusedError) else "error"
    colour = "bold red" if isinstance(exc, RefusedError) else "red"
    from rich.markup import escape

    console = err()
    rule = escape(f" [{exc.rule}]") if isinstance(exc, RefusedError) else ""
    console.print(f"[{colour}]{label}[/]{rule}: {escape(exc.message)}")
    if exc.hint:
        console.print(f"  [dim]what to do:[/] {escape(exc.hint)}")


@contextmanager
def progress(description: str, total: int | None, *, enabled: bool
             ) -> Iterator[Callable[[int], None] | None]:
    """A transient byte-progress bar on stderr for long hashing; a no-op when not useful."""
    if not enabled or not sys.stderr.isatty() or (total is not None and total < 64 * 1024**2):
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TransferSpeedColumn,
    )

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err(),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


def manifest_table(manifest: Manifest) -> None:
    from rich.table import Table

    table = Table(title=f"{manifest.name}  {manifest.ref}", title_justify="left")
    table.add_column("file")
    table.add_column("size", justify="right")
    table.add_column("sha256")
    for f in manifest.files:
        table.add_row(f.relpath, f"{f.size:,}", f.sha256)
    out().print(table)


def scan_table(report: ScanReport) -> None:
    from rich.table import Table

    colour = {"clean": "green", "flagged": "red", "error": "red"}[report.verdict.value]
    err().print(
        f"scan of {report.path}: [{colour}]{report.verdict.value}[/] "
        f"({len(report.findings)} finding(s), threshold {report.threshold.label})"
    )
    if not report.findings:
        return
    table = Table()
    for name in ("severity", "rule", "file", "location", "message"):
        table.add_column(name, overflow="fold")
    for f in sorted(report.findings, key=lambda f: (-f.severity, f.path)):
        table.add_row(f.severity.label, f.rule_id, f.path, f.location, f.message)
    out().print(table)


def verification(path: object, report: VerificationReport) -> None:
    a = report.artifact
    out().print(f"[green]VERIFIED[/] {esc(path)}: {esc(a.ref)} {report.manifest.ref}")
    lines = [f"  signer: {esc(a.signer)}", f"  scan: {report.scan.verdict.value}"]
    if a.inclusion:
        lines.append(f"  ledger: entry #{a.inclusion['index']} included in the signed "
                     f"checkpoint of size {a.inclusion['tree_size']}")
    lines.append(f"  upstream: {len(report.chain)} record(s) verified")
    lines.extend(f"    {esc(n.ref)} ({n.kind}, depth {n.depth}) signed by {esc(n.signer[:40])}"
                 for n in report.chain)
    err().print("\n".join(lines))


def lineage_render(graph: LineageGraph, fmt: LineageFormat) -> None:
    _LINEAGE_FORMATTERS[fmt](graph)


def _lineage_table(graph: LineageGraph) -> None:
    from rich.tree import Tree

    by_ref = {n.version.ref: n.version for n in graph.nodes}
    revoked = {n.version.ref for n in graph.nodes if n.revoked}
    children: dict[str, list[tuple[str, str]]] = {}
    for e in graph.edges:
        parent, child = (e.target, e.source) if graph.direction == "upstream" else (
            e.source, e.target)
        children.setdefault(parent, []).append((child, e.activity))

    def label(ref: str, activity: str | None) -> str:
        v = by_ref[ref]
        mark = "[green]✔[/]" if v.scan_verdict == "clean" else "[red]✘ flagged[/]"
        if ref in revoked:
            mark = "[bold red]✘ REVOKED[/]"
        via = f"[dim]{activity}[/] " if activity else ""
        return (f"{via}[bold]{ref}[/] [dim]{v.kind}[/] {mark} "
                f"[dim]{v.digest_algorithm}:{v.digest[:16]}… signed by {v.signer[:24]}[/]")

    tree = Tree(label(graph.root, None))
    seen = {graph.root}

    def grow(node: Tree, ref: str) -> None:
        for child, activity in children.get(ref, []):
            branch = node.add(label(child, activity))
            if child not in seen:
                seen.add(child)
                grow(branch, child)

    grow(tree, graph.root)
    err().print(f"[dim]{graph.direction} lineage of {graph.root}[/]")
    out().print(tree)


def _lineage_json(graph: LineageGraph) -> None:
    emit_json(graph.to_json())


def _lineage_dot(graph: LineageGraph) -> None:
    sys.stdout.write(graph.to_dot())


def _lineage_openlineage(graph: LineageGraph) -> None:
    from custody.provenance.exports import to_openlineage

    emit_json(to_openlineage(graph))


def _lineage_cyclonedx(graph: LineageGraph) -> None:
    from custody.provenance.exports import to_cyclonedx

    emit_json(to_cyclonedx(graph))


def _lineage_prov(graph: LineageGraph) -> None:
    from custody.provenance.exports import to_prov

    emit_json(to_prov(graph))


_LINEAGE_FORMATTERS: dict[LineageFormat, Callable[[LineageGraph], None]] = {
    LineageFormat.TABLE: _lineage_table,
    LineageFormat.JSON: _lineage_json,
    LineageFormat.DOT: _lineage_dot,
    LineageFormat.OPENLINEAGE: _lineage_openlineage,
    LineageFormat.CYCLONEDX: _lineage_cyclonedx,
    LineageFormat.PROV: _lineage_prov,
}
