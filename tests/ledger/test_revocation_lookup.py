"""Verify finds revocation entries without trusting ``ledger_entries.entry_type`` (issue 13):
retyping a revocation entry, to another known type or to anything else, does not hide it from
verify, lineage or admission; hiding it would take a forged index row as well, and the audit
names both. SQLite and PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def _revoked_chain(cli: Any, ws: Any) -> Path:
    """train@1 (revoked, entry 3), clf@1 trained on it (entries 1 and 2)."""
    data = ws.root / "train.bin"
    data.write_bytes(b"label,x\n1,2\n")
    model = ws.root / "clf.bin"
    model.write_bytes(b"the weights")
    cli("record", data, "--name", "train", "--kind", "dataset", cwd=ws.root).expect(0)
    cli("record", model, "--name", "clf", "--kind", "model", "--input", "train@1",
        cwd=ws.root).expect(0)
    cli("revoke", "train@1", "--reason", "label leakage", cwd=ws.root).expect(0)
    assert ws.sql("SELECT entry_type FROM ledger_entries WHERE idx = 3") == [("revocation",)]
    return model


def _rule(cli: Any, ws: Any, *args: str | Path) -> str:
    body = cli("--json", *args, cwd=ws.root).expect(1).json()
    assert body["ok"] is False and body["hint"], body
    return str(body["rule"])


@pytest.mark.parametrize("retyped", ["lineage_edge", "artifact_version", "nothing"])
def test_revocation_entry_retyped_still_revokes(ws: Any, cli: Any, retyped: str) -> None:
    model = _revoked_chain(cli, ws)
    ws.sql("UPDATE ledger_entries SET entry_type = :t WHERE idx = 3", t=retyped)
    assert _rule(cli, ws, "verify", model) == "chain.revoked"
    nodes = {n["ref"]: n for n in cli("lineage", "clf@1", "--json", cwd=ws.root).expect(0)
             .json()["nodes"]}
    assert nodes["train@1"]["revoked"] is True
    assert nodes["clf@1"]["refusal"]["rule"] == "chain.revoked"
    assert _rule(cli, ws, "audit", "verify") == "audit.entry_type"


def test_revocation_entry_retyped_with_a_forged_edge_row_is_named_by_audit(ws: Any, cli: Any
                                                                          ) -> None:
    """The one way left to hide a revocation from verify between audits: retype it *and* plant
    a lineage edge row that claims the entry. The planted edge shows in the lineage, and the
    audit refuses naming the entry."""
    _revoked_chain(cli, ws)
    ws.sql("UPDATE ledger_entries SET entry_type = 'lineage_edge' WHERE idx = 3")
    ws.sql("INSERT INTO lineage_edges (input_version_id, output_version_id, activity, "
           "entry_idx) SELECT input_version_id, output_version_id, activity, 3 FROM "
           "lineage_edges WHERE entry_idx = 2")
    body = cli("--json", "audit", "verify", cwd=ws.root).expect(1).json()
    assert body["rule"] in ("audit.entry_type", "audit.index_inserted"), body
    assert body["subject"] == "entry 3" or "entry 3" in body["message"], body
