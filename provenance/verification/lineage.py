"""Lineage: the graph of recorded versions around one artifact, upstream or downstream.

With a policy, every node is judged by verify's own chain evaluation
(:meth:`custody.provenance.verification.chain.ChainWalker.evaluate`: signature, signed log,
scan verdict, revocation and everything upstream; only the file bytes are not re-hashed):
``verified`` is True exactly when ``custody verify`` would accept that version, and
``refusal`` says why not.

``revoked`` comes from the signed log's revocation entries, never from the ``revocations``
table (one query for every node of the graph): with a policy, each one is proved under the
pinned checkpoint, as verify proves it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from custody.errors import VerificationError
from custody.provenance.ledger.models import ArtifactVersionPublic
from custody.provenance.ledger.store import Ledger

if TYPE_CHECKING:
    from custody.provenance.log.checkpoint import NoteVerifier
    from custody.provenance.policy.core import Policy


@dataclass(frozen=True)
class LineageNode:
    version: ArtifactVersionPublic
    depth: int
    revoked: str | None = None  # the revocation reason
    verified: bool | None = None  # would verify accept it (None: no policy was given)
    refusal_rule: str | None = None  # why verify refuses it, when verified is False
    refusal: str | None = None

    @property
    def trusted(self) -> bool:
        """✔ in a table, black in a graph: verified when judged, else clean and not revoked."""
        if self.verified is not None:
            return self.verified
        return self.version.scan_verdict == "clean" and self.revoked is None

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
            "revoked": self.revoked is not None,
            "revocation_reason": self.revoked,
            "verified": self.verified,
            "refusal": {"rule": self.refusal_rule, "message": self.refusal}
            if self.refusal_rule is not None else None,
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
    as_of: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "direction": self.direction,
            "as_of": self.as_of,
            "nodes": [n.to_json() for n in self.nodes],
            "edges": [e.to_json() for e in self.edges],
        }

    def to_dot(self) -> str:
        lines = [f"digraph {_dot_id('lineage')} {{", "  rankdir=LR;"]
        for node in self.nodes:
            v = node.version
            shape = "box" if v.kind == "model" else "cylinder"
            colour = "black" if node.trusted else "red"
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


def lineage(ledger: Ledger, ref: str, *, upstream: bool = True, depth: int = 10,
            as_of: int | None = None, policy: Policy | None = None,
            ledger_verifier: NoteVerifier | None = None) -> LineageGraph:
    """The graph within ``depth`` hops of ``ref`` (one recursive query), as of a checkpoint.

    With ``policy``, each node is evaluated as verify would (see the module docstring) against
    the newest checkpoint, signed by the pinned ledger key (``ledger_verifier``, else as
    :meth:`Ledger.checkpoint_key` finds it; unpinned, it refuses)."""
    root = ledger.resolve(ref, as_of=as_of)
    rows, versions = ledger.walk(root, upstream=upstream, depth=depth, as_of=as_of)
    node_depth = {root.id: 0}
    for row in rows:
        other = row.input_id if upstream else row.output_id
        node_depth[other] = min(node_depth.get(other, row.depth), row.depth)
    judged, revoked = _evaluate(ledger, [versions[i] for i in node_depth], policy,
                                ledger_verifier)
    nodes = tuple(sorted((LineageNode(versions[i], d, revoked.get(i),
                                      *judged.get(i, (None, None, None)))
                          for i, d in node_depth.items()),
                         key=lambda n: (n.depth, n.version.ref)))
    edges = tuple(LineageEdgeView(versions[r.input_id].ref, versions[r.output_id].ref,
                                  r.activity) for r in rows)
    return LineageGraph(root=root.ref, direction="upstream" if upstream else "downstream",
                        nodes=nodes, edges=edges, as_of=as_of)


def _evaluate(ledger: Ledger, versions: list[ArtifactVersionPublic], policy: Policy | None,
              ledger_verifier: NoteVerifier | None
              ) -> tuple[dict[int, tuple[bool, str | None, str | None]], dict[int, str]]:
    """Each node's verdict (with a policy) and the reason of each revoked node: both from the
    signed log, and both as of now (with ``--as-of`` too: a revocation is never hidden)."""
    if policy is None:
        found = ledger.revocation_entries(versions)
        return {}, {vid: r.reason for vid, r in found.items()}
    from custody.provenance.verification.chain import ChainWalker
    from custody.provenance.verification.inclusion import InclusionChecker

    walker = ChainWalker(ledger, policy, InclusionChecker(ledger, ledger_verifier))
    walker.prefetch_revocations(versions)
    judged: dict[int, tuple[bool, str | None, str | None]] = {}
    revoked: dict[int, str] = {}
    for version in versions:
        refusal = walker.evaluate(version)
        judged[version.id] = (True, None, None) if refusal is None else (
            False, refusal.rule, refusal.message)
        stated = walker.revocation(version, prove=False)
        if stated is None:
            continue
        try:
            walker.revocation(version)
            revoked[version.id] = stated.reason
        except VerificationError as exc:  # shown as revoked all the same: fail closed
            revoked[version.id] = (f"{stated.reason} (entry {stated.entry_idx} not proved: "
                                   f"{exc.rule})")
    return judged, revoked
