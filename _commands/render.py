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
    from rich.text import Text

    from custody.errors import CustodyError
    from custody.provenance.hashing.manifest import Manifest
    from custody.provenance.verification.lineage import LineageGraph
    from custody.provenance.verification.verify import VerificationReport
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


# Wider than any line. When a stream is not a terminal (a pipe, a file, a CI log) nothing is
# wrapped or cut: Rich would otherwise assume 80 columns there.
UNLIMITED_WIDTH = 1_000_000


def out() -> Console:
    return _console(stderr=False)


def err() -> Console:
    return _console(stderr=True)


def _console(*, stderr: bool) -> Console:
    """A console on the current ``sys.stdout`` / ``sys.stderr``. Emoji codes are off (``:train:``
    stays text) and markup is only for Custody's own strings: user data (names, paths, signers,
    messages) goes in through :func:`esc` or as :func:`plain` Text, so it prints verbatim."""
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False, soft_wrap=True, emoji=False)
    if not _isatty(sys.stderr if stderr else sys.stdout):
        console.width = UNLIMITED_WIDTH
    return console


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def clip(text: str, length: int, console: Console) -> str:
    """``text`` cut to ``length`` characters on a terminal; whole when the output is a log."""
    if console.width >= UNLIMITED_WIDTH or len(text) <= length:
        return text
    return text[:length] + "…"


def plain(value: object, style: str = "") -> Text:
    """User data as Rich Text: never parsed as markup or emoji."""
    from rich.text import Text

    return Text(str(value), style=style)


def line(text: str, *, stderr: bool = False) -> None:
    """One line of data exactly as given (no markup, no emoji, tabs kept)."""
    stream = sys.stderr if stderr else sys.stdout
    stream.write(text + "\n")
    stream.flush()


def esc(value: object) -> str:
    """Escape user-controlled text (paths, names) before it goes into Rich markup (for a
    console from :func:`out` or :func:`err`, which never turn ``:codes:`` into emoji)."""
    from rich.markup import escape

    return escape(str(value))


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def export(content: str | bytes, *, out: object | None, as_json: bool, **meta: object) -> None:
    """Report an exported document (bundle, checkpoint, receipt). Without ``--json`` and
    ``--out`` the document itself goes to stdout, byte for byte. With ``--json`` stdout is one
    JSON object: ``ok``, ``meta``, ``out`` (the file written, or null) and ``content`` (the
    document as a string when it was not written to a file, else null)."""
    if not as_json:
        if out is None:
            if isinstance(content, bytes):
                sys.stdout.flush()
                sys.stdout.buffer.write(content)
                sys.stdout.buffer.flush()
            else:
                sys.stdout.write(content)
        return
    text = content.decode("utf-8") if isinstance(content, bytes) else content
    emit_json({"ok": True, **meta, "out": None if out is None else str(out),
               "bytes": len(text.encode("utf-8")), "content": text if out is None else None})


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

    table = Table(title=plain(f"{manifest.name}  {manifest.ref}"), title_justify="left")
    table.add_column("file", overflow="fold")
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("sha256", no_wrap=True)
    for f in manifest.files:
        table.add_row(plain(f.relpath), f"{f.size:,}", f.sha256)
    out().print(table)


def scan_table(report: ScanReport) -> None:
    from rich.table import Table

    colour = {"clean": "green", "flagged": "red", "error": "red"}[report.verdict.value]
    err().print(
        f"scan of {esc(report.path)}: [{colour}]{report.verdict.value}[/] "
        f"({len(report.findings)} finding(s), threshold {report.threshold.label})"
    )
    if not report.findings:
        return
    table = Table()
    for name in ("severity", "rule", "file", "location", "message"):
        table.add_column(name, overflow="fold")
    for f in sorted(report.findings, key=lambda f: (-f.severity, f.path)):
        table.add_row(f.severity.label, plain(f.rule_id), plain(f.path), plain(f.location),
                      plain(f.message))
    out().print(table)


def verification(path: object, report: VerificationReport) -> None:
    a = report.artifact
    out().print(f"[green]VERIFIED[/] {esc(path)}: {esc(a.ref)} {report.manifest.ref}")
    console = err()
    lines = [f"  signer: {esc(a.signer)}", f"  scan: {report.scan.verdict.value}"]
    if a.inclusion:
        lines.append(f"  ledger: entry #{a.inclusion['index']} included in the signed "
                     f"checkpoint of size {a.inclusion['tree_size']}")
    lines.append(f"  upstream: {len(report.chain)} record(s) verified")
    lines.extend(f"    {esc(n.ref)} ({n.kind}, depth {n.depth}) signed by "
                 f"{esc(clip(n.signer, 40, console))}" for n in report.chain)
    console.print("\n".join(lines))


def lineage_render(graph: LineageGraph, fmt: LineageFormat) -> None:
    _LINEAGE_FORMATTERS[fmt](graph)


def _lineage_table(graph: LineageGraph) -> None:
    from rich.text import Text
    from rich.tree import Tree

    console = out()
    by_ref = {n.version.ref: n.version for n in graph.nodes}
    nodes = {n.version.ref: n for n in graph.nodes}
    revoked = {n.version.ref for n in graph.nodes if n.revoked}
    children: dict[str, list[tuple[str, str]]] = {}
    for e in graph.edges:
        parent, child = (e.target, e.source) if graph.direction == "upstream" else (
            e.source, e.target)
        children.setdefault(parent, []).append((child, e.activity))

    def label(ref: str, activity: str | None) -> Text:
        v = by_ref[ref]
        text = Text()
        if activity:
            text.append(activity, "dim").append(" ")
        text.append(ref, "bold").append(" ").append(v.kind, "dim").append(" ")
        if ref in revoked:
            text.append("✘ REVOKED", "bold red")
        elif nodes[ref].trusted:  # verify's own chain evaluation when a policy was given
            text.append("✔", "green")
        else:
            text.append(f"✘ {nodes[ref].refusal_rule or 'flagged'}", "red")
        return text.append(f" {v.digest_algorithm}:{clip(v.digest, 16, console)} signed by "
                           f"{clip(v.signer, 24, console)}", "dim")

    tree = Tree(label(graph.root, None))
    seen = {graph.root}

    def grow(node: Tree, ref: str) -> None:
        for child, activity in children.get(ref, []):
            branch = node.add(label(child, activity))
            if child not in seen:
                seen.add(child)
                grow(branch, child)

    grow(tree, graph.root)
    err().print(plain(f"{graph.direction} lineage of {graph.root}", "dim"))
    console.print(tree)


def _lineage_json(graph: LineageGraph) -> None:
    emit_json(graph.to_json())


def _lineage_dot(graph: LineageGraph) -> None:
    sys.stdout.write(graph.to_dot())


def _lineage_openlineage(graph: LineageGraph) -> None:
    from custody.provenance.integrations.exports import to_openlineage

    emit_json(to_openlineage(graph))


def _lineage_cyclonedx(graph: LineageGraph) -> None:
    from custody.provenance.integrations.exports import to_cyclonedx

    emit_json(to_cyclonedx(graph))


def _lineage_prov(graph: LineageGraph) -> None:
    from custody.provenance.integrations.exports import to_prov

    emit_json(to_prov(graph))


_LINEAGE_FORMATTERS: dict[LineageFormat, Callable[[LineageGraph], None]] = {
    LineageFormat.TABLE: _lineage_table,
    LineageFormat.JSON: _lineage_json,
    LineageFormat.DOT: _lineage_dot,
    LineageFormat.OPENLINEAGE: _lineage_openlineage,
    LineageFormat.CYCLONEDX: _lineage_cyclonedx,
    LineageFormat.PROV: _lineage_prov,
}
