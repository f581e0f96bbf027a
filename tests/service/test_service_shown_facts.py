"""What the service shows comes from the signed log, never from a table an administrator can
edit unnoticed (issue 13): the checkpoint's origin from its signed note, a scan report's
findings from the log entry. Each test is named after its attack and runs the real app
in-process (FastAPI's TestClient) on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from support import service_support as support

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"


@contextmanager
def _client(ws: Any) -> Iterator[tuple[Any, dict[str, str]]]:
    from fastapi.testclient import TestClient

    from custody.provenance.service.app import create_app
    from custody.provenance.service.settings import ServiceContext, Settings

    headers = support.auth(support.make_tokens(ws.url)["reader"])
    old = Path.cwd()
    os.chdir(ws.root)
    try:
        ctx = ServiceContext.open(Settings())
        try:
            with TestClient(create_app(ctx=ctx), raise_server_exceptions=False) as client:
                yield client, headers
        finally:
            ctx.close()
    finally:
        os.chdir(old)


def _record_flagged(ws: Any, cli: Any) -> None:
    cli("record", SAMPLES / "malicious.pkl", "--name", "evil", "--kind", "model",
        "--allow-flagged", cwd=ws.root).expect(0)


def test_ledger_meta_origin_edited_does_not_change_the_served_checkpoint(ws: Any, cli: Any
                                                                       ) -> None:
    _record_flagged(ws, cli)
    with _client(ws) as (client, headers):
        before = client.get("/v1/checkpoint", headers=headers).json()
    signed_origin = before["note"].split("\n", 1)[0]
    assert before["origin"] == signed_origin
    ws.sql("UPDATE ledger_meta SET value = 'custody.ledger/forged' WHERE key = 'origin'")
    with _client(ws) as (client, headers):
        after = client.get("/v1/checkpoint", headers=headers).json()
    assert after["origin"] == signed_origin and after == before
    body = cli("--json", "audit", "verify", cwd=ws.root).expect(1).json()
    assert body["rule"] == "ledger.key_mismatch" and body["subject"] == "ledger_meta row origin"


def test_scan_report_findings_rewritten_in_the_table_are_not_shown(ws: Any, cli: Any) -> None:
    """An administrator rewrites the stored report's findings (the verdict and severity left
    as signed): the API and the lineage page show the findings the log entry keeps, and the
    audit names the column."""
    _record_flagged(ws, cli)
    stored = json.loads(ws.sql("SELECT scan_report FROM signed_statements")[0][0])
    assert stored["findings"], stored
    forged = {**stored, "findings": [{**f, "message": "benign, nothing to see", "rule_id":
                                      "pickle.ok"} for f in stored["findings"]]}
    with _client(ws) as (client, headers):
        api = client.get("/v1/artifacts/evil@1", headers=headers).json()["scan_report"]
        page = client.get("/ui/lineage/evil@1", headers=headers).text
    assert api == stored
    ws.sql("UPDATE signed_statements SET scan_report = :r", r=json.dumps(forged))
    with _client(ws) as (client, headers):
        assert client.get("/v1/artifacts/evil@1", headers=headers).json()["scan_report"] == api
        forged_page = client.get("/ui/lineage/evil@1", headers=headers).text
    assert "nothing to see" not in forged_page and "pickle.ok" not in forged_page
    assert stored["findings"][0]["rule_id"] in forged_page
    assert len(forged_page) == len(page)  # the same page but for its nonce
    body = cli("--json", "audit", "verify", cwd=ws.root).expect(1).json()
    assert body["rule"] == "audit.index_edited" and "scan_report" in body["message"], body


def test_scan_report_of_an_entry_without_one_shows_the_signed_summary_only(ws: Any, cli: Any
                                                                         ) -> None:
    """Entries appended before reports were kept in the log: the findings in the table are not
    signed, so none are shown; the signed summary is."""
    _record_flagged(ws, cli)
    payload = json.loads(ws.sql("SELECT payload FROM ledger_entries WHERE idx = 0")[0][0])
    assert payload["scan_report"]["findings"]
    from custody.provenance.ledger.store import Ledger
    from custody.signing.statement import canonical_json

    legacy = {k: v for k, v in payload.items() if k != "scan_report"}
    ws.sql("UPDATE ledger_entries SET payload = :p WHERE idx = 0",
           p=canonical_json(legacy).decode())
    with Ledger.open(ws.url) as ledger:
        report = ledger.scan_report(ledger.resolve("evil@1"))
    assert report["findings"] == [] and report["verdict"] == payload["scan_report"]["verdict"]
    assert report["counts"] and report["max_severity"] == payload["scan_report"]["max_severity"]
