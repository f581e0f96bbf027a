"""Lineage exports for auditors: OpenLineage RunEvents, a CycloneDX 1.6 ML-BOM, W3C PROV-O.

Each function takes a :class:`~custody.provenance.verification.lineage.LineageGraph` and
returns plain JSON data (``json.dumps`` it). Nothing here touches the ledger. Digests are
carried as recorded: ``sha256`` (a file's SHA-256) or ``sha256-manifest-v1`` (a directory's
manifest root). Times are shown to the second, the precision of the signed ``recordedAt`` (what
``custody audit verify`` vouches for), never with digits the signature does not cover.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

from custody import __version__
from custody.provenance.verification.lineage import LineageEdgeView, LineageGraph, LineageNode

_PRODUCER = "https://custody.dev/custody"
_OL_SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
_DIGEST_FACET_SCHEMA = "https://custody.dev/spec/facets/1-0-0/CustodyDigestFacet.json"
_NAMESPACE = "custody"
_NS = uuid.UUID("6f1c7e2a-8a53-4d47-9d8b-3c0c2f1f5b6e")


def _nodes(graph: LineageGraph) -> dict[str, LineageNode]:
    return {n.version.ref: n for n in graph.nodes}


def _inputs_by_output(graph: LineageGraph) -> dict[str, list[LineageEdgeView]]:
    grouped: dict[str, list[LineageEdgeView]] = defaultdict(list)
    for edge in graph.edges:
        grouped[edge.target].append(edge)
    return grouped


def _digest_facet(node: LineageNode) -> dict[str, Any]:
    v = node.version
    return {"_producer": _PRODUCER, "_schemaURL": _DIGEST_FACET_SCHEMA,
            "algorithm": v.digest_algorithm, "value": v.digest, "ref": v.ref,
            "signer": v.signer, "scanVerdict": v.scan_verdict}


def _ol_dataset(node: LineageNode) -> dict[str, Any]:
    return {"namespace": _NAMESPACE, "name": node.version.ref,
            "facets": {"custody_digest": _digest_facet(node)}}


def to_openlineage(graph: LineageGraph) -> list[dict[str, Any]]:
    """One COMPLETE RunEvent per recorded output that has inputs in the graph."""
    nodes = _nodes(graph)
    events = []
    for output, edges in sorted(_inputs_by_output(graph).items()):
        node = nodes[output]
        activities = sorted({e.activity for e in edges})
        events.append({
            "eventType": "COMPLETE",
            "eventTime": node.version.recorded_at.isoformat(timespec="seconds"),
            "producer": _PRODUCER,
            "schemaURL": _OL_SCHEMA,
            "run": {"runId": str(uuid.uuid5(_NS, f"run:{output}"))},
            "job": {"namespace": _NAMESPACE, "name": f"{'+'.join(activities)}:{output}"},
            "inputs": [_ol_dataset(nodes[e.source]) for e in sorted(edges,
                                                                     key=lambda e: e.source)],
            "outputs": [_ol_dataset(node)],
        })
    return events


def _bom_hashes(node: LineageNode) -> list[dict[str, str]]:
    v = node.version
    return [{"alg": "SHA-256", "content": v.digest}] if v.digest_algorithm == "sha256" else []


def _component(node: LineageNode, graph: LineageGraph,
               nodes: dict[str, LineageNode]) -> dict[str, Any]:
    v = node.version
    component: dict[str, Any] = {
        "type": "machine-learning-model" if v.kind == "model" else "data",
        "bom-ref": v.ref,
        "name": v.name,
        "version": str(v.version),
        "hashes": _bom_hashes(node),
        "properties": [
            {"name": "custody:digest", "value": f"{v.digest_algorithm}:{v.digest}"},
            {"name": "custody:signer", "value": v.signer},
            {"name": "custody:scan_verdict", "value": v.scan_verdict},
            {"name": "custody:recorded_at", "value": v.recorded_at.isoformat(timespec="seconds")},
            {"name": "custody:ledger_index", "value": str(v.entry_idx)},
        ],
    }
    if v.kind == "dataset":
        component["data"] = [{"type": "dataset", "name": v.ref,
                              "contents": {"attachment": {"content": v.digest}}}]
    edges = [e for e in graph.edges if e.target == v.ref]
    # datasets a model was trained or evaluated on go in its model card; everything else it
    # was made from (base models, converted or derived inputs) is its pedigree
    trained = [e.source for e in edges if e.activity in ("trained_on", "evaluated_on")
               and nodes[e.source].version.kind == "dataset"]
    derived = [e.source for e in edges if e.source not in trained]
    if v.kind == "model" and trained:
        component["modelCard"] = {"modelParameters": {
            "datasets": [{"ref": ref} for ref in sorted(trained)]}}
    if derived:
        component["pedigree"] = {"ancestors": [
            {"type": "machine-learning-model" if nodes[r].version.kind == "model" else "data",
             "bom-ref": f"{r}#ancestor-of-{v.ref}", "name": nodes[r].version.name,
             "version": str(nodes[r].version.version), "hashes": _bom_hashes(nodes[r])}
            for r in sorted(derived)]}
    return component


def to_cyclonedx(graph: LineageGraph) -> dict[str, Any]:
    """A CycloneDX 1.6 ML-BOM: models and datasets as components, hashes, pedigree, dependencies."""
    nodes = _nodes(graph)
    root = nodes[graph.root]
    grouped = _inputs_by_output(graph)
    components = [_component(n, graph, nodes) for n in graph.nodes if n.version.ref != graph.root]
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": f"urn:uuid:{uuid.uuid5(_NS, 'bom:' + graph.root + ':' + graph.direction)}",
        "version": 1,
        "metadata": {
            "timestamp": root.version.recorded_at.isoformat(timespec="seconds"),
            "tools": {"components": [{"type": "application", "name": "custody",
                                      "version": __version__}]},
            "component": _component(root, graph, nodes),
        },
        "components": components,
        "dependencies": [
            {"ref": n.version.ref,
             "dependsOn": sorted(e.source for e in grouped.get(n.version.ref, []))}
            for n in graph.nodes
        ],
    }


def to_prov(graph: LineageGraph) -> dict[str, Any]:
    """W3C PROV-O as JSON-LD: entities (versions), activities (the making of each output),
    agents (signers), with used / wasGeneratedBy / wasDerivedFrom / wasAttributedTo."""
    items: list[dict[str, Any]] = []
    agents: dict[str, str] = {}
    for node in graph.nodes:
        v = node.version
        agent_id = agents.setdefault(v.signer, f"custody:signer/{len(agents)}")
        items.append({
            "@id": f"custody:artifact/{v.ref}",
            "@type": ["prov:Entity", f"custody:{v.kind.capitalize()}"],
            "prov:label": v.ref,
            "custody:digest": f"{v.digest_algorithm}:{v.digest}",
            "custody:scanVerdict": v.scan_verdict,
            "custody:ledgerIndex": v.entry_idx,
            "prov:generatedAtTime": {"@value": v.recorded_at.isoformat(timespec="seconds"),
                                     "@type": "xsd:dateTime"},
            "prov:wasAttributedTo": {"@id": agent_id},
        })
    for output, edges in sorted(_inputs_by_output(graph).items()):
        activity_id = f"custody:activity/{output}"
        items.append({
            "@id": activity_id,
            "@type": "prov:Activity",
            "prov:label": f"making of {output}",
            "prov:used": [{"@id": f"custody:artifact/{e.source}"} for e in edges],
            "custody:activities": sorted({e.activity for e in edges}),
        })
        entity = next(i for i in items if i["@id"] == f"custody:artifact/{output}")
        entity["prov:wasGeneratedBy"] = {"@id": activity_id}
        entity["prov:wasDerivedFrom"] = [{"@id": f"custody:artifact/{e.source}"}
                                         for e in edges]
    for signer, agent_id in agents.items():
        items.append({"@id": agent_id, "@type": "prov:Agent", "prov:label": signer})
    return {
        "@context": {"prov": "http://www.w3.org/ns/prov#", "xsd":
                     "http://www.w3.org/2001/XMLSchema#", "custody": "https://custody.dev/ns#"},
        "@graph": items,
    }
