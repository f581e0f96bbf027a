"""The read-only lineage page: server-rendered HTML with an inline SVG graph and a little JS.

No external resources (no CDN, fonts or images): the page is one document, its script and style
carry a per-response CSP nonce, and every ledger-provided string is escaped.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from html import escape
from typing import Any

from custody.provenance.verification.lineage import LineageGraph

_W, _H, _GAP_X, _GAP_Y, _PAD = 220, 56, 90, 28, 20


@dataclass(frozen=True)
class NodeStatus:
    verdict: str  # "verified" or "refused"
    rule: str | None = None
    message: str | None = None
    findings: list[dict[str, Any]] = field(default_factory=list)


def csp(nonce: str) -> str:
    return (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def _layout(graph: LineageGraph) -> dict[str, tuple[int, int]]:
    depth = {n.version.ref: n.depth for n in graph.nodes}
    deepest = max(depth.values(), default=0)
    columns: dict[int, list[str]] = {}
    for node in graph.nodes:
        col = deepest - node.depth if graph.direction == "upstream" else node.depth
        columns.setdefault(col, []).append(node.version.ref)
    places = {}
    for col, refs in columns.items():
        for row, ref in enumerate(sorted(refs)):
            places[ref] = (_PAD + col * (_W + _GAP_X), _PAD + row * (_H + _GAP_Y))
    return places


def render(graph: LineageGraph, status: dict[str, NodeStatus]) -> tuple[str, str]:
    """The page and the nonce its Content-Security-Policy must carry."""
    nonce = secrets.token_urlsafe(16)
    places = _layout(graph)
    width = max((x for x, _ in places.values()), default=0) + _W + _PAD
    height = max((y for _, y in places.values()), default=0) + _H + _PAD
    svg: list[str] = []
    for edge in graph.edges:
        (x1, y1), (x2, y2) = places[edge.source], places[edge.target]
        a, b = (x1 + _W, x2) if x1 < x2 else (x1, x2 + _W)
        svg.append(f'<line class="edge" x1="{a}" y1="{y1 + _H // 2}" x2="{b}" '
                   f'y2="{y2 + _H // 2}" data-activity="{escape(edge.activity)}"/>')
        svg.append(f'<text class="activity" x="{(a + b) // 2}" y="{(y1 + y2 + _H) // 2 - 4}">'
                   f'{escape(edge.activity)}</text>')
    nodes_data = []
    for node in graph.nodes:
        v = node.version
        st = status.get(v.ref, NodeStatus("refused", "unknown", "not checked"))
        x, y = places[v.ref]
        svg.append(
            f'<g class="node {escape(st.verdict)}" data-ref="{escape(v.ref)}" tabindex="0">'
            f'<rect x="{x}" y="{y}" width="{_W}" height="{_H}" rx="8"/>'
            f'<text x="{x + 10}" y="{y + 22}" class="ref">{escape(v.ref)}</text>'
            f'<text x="{x + 10}" y="{y + 42}" class="sub">{escape(v.kind)} · '
            f'{escape(st.verdict)}</text></g>')
        nodes_data.append({
            "ref": v.ref, "kind": v.kind, "digest": f"{v.digest_algorithm}:{v.digest}",
            "signer": v.signer, "recorded_verdict": v.scan_verdict, "verdict": st.verdict,
            "rule": st.rule, "message": st.message, "findings": st.findings[:50],
            "recorded_at": v.recorded_at.isoformat(timespec="seconds"), "depth": node.depth,
        })
    data = json.dumps({"root": graph.root, "direction": graph.direction,
                       "nodes": nodes_data}).replace("<", "\\u003c").replace(">", "\\u003e")
    title = f"Lineage of {escape(graph.root)} ({escape(graph.direction)})"
    page = _TEMPLATE.format(
        title=title, nonce=nonce, width=width, height=height, svg="\n".join(svg), data=data,
        count=len(graph.nodes), edges=len(graph.edges))
    return page, nonce


_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style nonce="{nonce}">
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #1b1f24; }}
svg {{ border: 1px solid #d0d7de; background: #fafbfc; }}
.node rect {{ fill: #fff; stroke: #57606a; stroke-width: 1.5; }}
.node.verified rect {{ stroke: #1a7f37; }} .node.refused rect {{ stroke: #cf222e; fill: #fff5f5; }}
.node {{ cursor: pointer; }} .node.selected rect {{ stroke-width: 3.5; }}
.ref {{ font-weight: 600; font-size: 13px; }} .sub, .activity {{ font-size: 11px; fill: #57606a; }}
.edge {{ stroke: #8c959f; stroke-width: 1.5; }}
table {{ border-collapse: collapse; margin-top: 1rem; }}
td, th {{ border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; font-size: 13px; }}
.verdict-refused {{ color: #cf222e; font-weight: 600; }}
.verdict-verified {{ color: #1a7f37; font-weight: 600; }}
#details {{ margin-top: 1rem; }}
</style></head>
<body>
<h1>{title}</h1>
<p id="summary">{count} versions, {edges} edges. Read-only view of the Custody ledger.</p>
<svg id="graph" role="img" aria-label="lineage graph" width="{width}" height="{height}"
 viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">
{svg}
</svg>
<table id="nodes"><thead><tr><th>version</th><th>kind</th><th>signer</th><th>verdict</th>
<th>findings</th><th>digest</th></tr></thead><tbody></tbody></table>
<section id="details" aria-live="polite"></section>
<script type="application/json" id="graph-data">{data}</script>
<script nonce="{nonce}">
(function () {{
  "use strict";
  var data = JSON.parse(document.getElementById("graph-data").textContent);
  var body = document.querySelector("#nodes tbody");
  function cell(row, text, cls) {{
    var td = document.createElement("td"); td.textContent = text;
    if (cls) {{ td.className = cls; }} row.appendChild(td); return td;
  }}
  function show(node) {{
    var box = document.getElementById("details");
    box.textContent = "";
    var h = document.createElement("h2"); h.textContent = node.ref; box.appendChild(h);
    var p = document.createElement("p");
    p.textContent = "signer " + node.signer + "; verdict " + node.verdict +
      (node.rule ? " [" + node.rule + "] " + (node.message || "") : "");
    box.appendChild(p);
    var ul = document.createElement("ul"); ul.className = "findings";
    node.findings.forEach(function (f) {{
      var li = document.createElement("li");
      li.textContent = f.severity + " " + f.rule_id + " " + (f.path || "") + ": " + f.message;
      ul.appendChild(li);
    }});
    box.appendChild(ul);
    document.querySelectorAll(".node").forEach(function (g) {{
      g.classList.toggle("selected", g.getAttribute("data-ref") === node.ref);
    }});
  }}
  var byRef = {{}};
  data.nodes.forEach(function (node) {{
    byRef[node.ref] = node;
    var row = document.createElement("tr"); row.setAttribute("data-ref", node.ref);
    cell(row, node.ref); cell(row, node.kind); cell(row, node.signer);
    cell(row, node.verdict + (node.rule ? " [" + node.rule + "]" : ""),
         "verdict-" + node.verdict);
    cell(row, String(node.findings.length)); cell(row, node.digest);
    row.addEventListener("click", function () {{ show(node); }});
    body.appendChild(row);
  }});
  document.querySelectorAll(".node").forEach(function (g) {{
    g.addEventListener("click", function () {{ show(byRef[g.getAttribute("data-ref")]); }});
  }});
  if (byRef[data.root]) {{ show(byRef[data.root]); }}
  document.body.setAttribute("data-rendered", "true");
}}());
</script>
</body></html>
"""
