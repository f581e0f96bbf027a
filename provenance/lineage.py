"""Lineage: the graph of recorded versions around one artifact, upstream or downstream."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from custody.provenance.ledger.models import ArtifactVersionPublic
from custody.provenance.ledger.store import Ledger


@dataclass(frozen=True)
class LineageNode:
    version: ArtifactVersionPublic
    depth: int

    def to_json(self) -> dict[str, Any]:
        v = self.version
        return {
            "ref": v.ref,
            "name": v.name,
            "version": v.version,
            "kind": v.kind,
            "digest": f"{v.digest_algorithm}:{v.digest}",
            "signer": v.signer,
            "scan_verdict": v.scan_verdict,
            "recorded_at": v.recorded_at.isoformat(timespec="seconds"),
            "depth": self.depth,
        }


@dataclass(frozen=True)
class LineageEdgeView:
    source: str  # the input
    target: str  # the output made from it
    activity: str

    def to_json(self) -> dict[str, str]:
        return {"input": self.source, "output": self.target, "activity": self.activity}


@dataclass(frozen=True)
class LineageGraph:
    root: str
    direction: str
    nodes: tuple[LineageNode, ...]
    edges: tuple[LineageEdgeView, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "direction": self.direction,
            "nodes": [n.to_json() for n in self.nodes],
            "edges": [e.to_json() for e in self.edges],
        }

    def to_dot(self) -> str:
        lines = [f"digraph {_dot_id('lineage')} {{", "  rankdir=LR;"]
        for node in self.nodes:
            v = node.version
            shape = "box" if v.kind == "model" else "cylinder"
            colour = "black" if v.scan_verdict == "clean" else "red"
            label = f"{v.ref}\\n{v.digest[:12]}"
            lines.append(
                f"  {_dot_id(v.ref)} [label={_dot_id(label)}, shape={shape}, color={colour}];"
            )
        for edge in self.edges:
            lines.append(
                f"  {_dot_id(edge.source)} -> {_dot_id(edge.target)} "
                f"[label={_dot_id(edge.activity)}];"
            )
        lines.append("}")
        return "\n".join(lines) + "\n"


def _dot_id(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\\\\n", "\\n") + '"'


def lineage(ledger: Ledger, ref: str, *, upstream: bool = True, depth: int = 10
            ) -> LineageGraph:
    """Breadth-first walk from ``ref``, one query per level, each version visited once."""
    root = ledger.resolve(ref)
    seen: dict[int, LineageNode] = {root.id: LineageNode(root, 0)}
    edges: list[LineageEdgeView] = []
    frontier = [root.id]
    level = 0
    while frontier and level < depth:
        level += 1
        next_frontier: list[int] = []
        by_id = {n.version.id: n.version for n in seen.values()}
        for edge, other in ledger.edges(frontier, upstream=upstream):
            here_id = edge.output_version_id if upstream else edge.input_version_id
            here = by_id[here_id]
            src, dst = (other, here) if upstream else (here, other)
            edges.append(LineageEdgeView(src.ref, dst.ref, edge.activity))
            if other.id not in seen:
                seen[other.id] = LineageNode(other, level)
                next_frontier.append(other.id)
        frontier = next_frontier
    return LineageGraph(
        root=root.ref,
        direction="upstream" if upstream else "downstream",
        nodes=tuple(sorted(seen.values(), key=lambda n: (n.depth, n.version.ref))),
        edges=tuple(edges),
    )
