"""`custody audit verify` against an administrator's edits of the columns it used to leave alone
(issue 13): the keyless signer facts, exact timestamps, the empty tree's checkpoint, the
informational timestamps, the log's own metadata and values of the wrong type or encoding.
Every one is a refusal (exit 1) naming its rule, table, row and column, never a traceback.

One test per attack, named after it; on SQLite and PostgreSQL where the database can hold the
edit at all (PostgreSQL is strictly typed: the malformed-value attacks need SQLite).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest


def _ledger(ws: Any, cli: Any, make_file: Any) -> Path:
    data = make_file(ws.root / "train.csv", "a,b\n1,2\n3,4\n")
    model = make_file(ws.root / "clf.bin", b"\x00weights" * 64)
    cli("record", data, "--name", "train", "--kind", "dataset", cwd=ws.root).expect(0)
    cli("record", model, "--name", "clf", "--kind", "model", "--input", "train@1",
        cwd=ws.root).expect(0)
    cli("audit", "verify", cwd=ws.root).expect(0)
    return Path(model)


def _refused(cli: Any, ws: Any, rule: str, *args: str) -> dict[str, Any]:
    result = cli("--json", *(args or ("audit", "verify")), cwd=ws.root).expect(1)
    body: dict[str, Any] = result.json()
    assert body["ok"] is False and body["rule"] == rule, body
    assert body["hint"], body
    return body


KEYLESS_FORGERIES = {
    # column: a value that makes a key-signed version look keylessly signed
    "signer_issuer": "https://token.actions.githubusercontent.com",
    "log_index": 123456789,
    "signed_at": datetime(2026, 1, 1, tzinfo=UTC),
}


@pytest.mark.parametrize("column", sorted(KEYLESS_FORGERIES))
def test_keyless_signer_fact_forged_on_a_key_signed_version_is_refused(
        ws: Any, cli: Any, make_file: Any, column: str) -> None:
    """signer_issuer, log_index and signed_at are re-derived from the entry's bundle (None for a
    key-signed bundle): a trusted-looking issuer or Rekor index written into the row is named."""
    _ledger(ws, cli, make_file)
    ws.sql(f"UPDATE artifact_versions SET {column} = :v WHERE version = 1 AND artifact_id = "  # noqa: S608
           "(SELECT id FROM artifacts WHERE name = 'clf')", v=KEYLESS_FORGERIES[column])
    body = _refused(cli, ws, "audit.index_edited")
    assert column in body["message"] and body["subject"] == "entry 1", body


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("column", ["log_index", "signed_at", "signer_issuer"])
def test_keyless_signer_fact_malformed_is_a_refusal_not_a_crash(
        ws: Any, cli: Any, make_file: Any, column: str) -> None:
    _ledger(ws, cli, make_file)
    ws.sql(f"UPDATE artifact_versions SET {column} = CAST(X'78FF' AS TEXT)")  # noqa: S608
    body = _refused(cli, ws, "audit.index_malformed")
    assert body["subject"] == "entry 0", body


def test_recorded_at_moved_by_half_a_second_is_refused(ws: Any, cli: Any, make_file: Any
                                                      ) -> None:
    """The column is compared with the signed recordedAt exactly, not to the second."""
    _ledger(ws, cli, make_file)
    stored = ws.sql("SELECT recorded_at FROM artifact_versions ORDER BY id LIMIT 1")[0][0]
    moment = stored if isinstance(stored, datetime) else datetime.fromisoformat(stored)
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    ws.sql("UPDATE artifact_versions SET recorded_at = :t WHERE id = (SELECT min(id) FROM "
           "artifact_versions)", t=moment + timedelta(milliseconds=500))
    body = _refused(cli, ws, "audit.index_edited")
    assert "recorded_at" in body["message"] and body["subject"] == "entry 0", body


def test_empty_tree_checkpoint_frontier_edited_is_refused(ws: Any, cli: Any, make_file: Any
                                                         ) -> None:
    """Checkpoint row 0 has no entry ending at it to check its frontier by: it must be empty."""
    _ledger(ws, cli, make_file)
    ws.sql("UPDATE checkpoints SET frontier = (SELECT frontier FROM checkpoints WHERE size = 1) "
           "WHERE size = 0")
    body = _refused(cli, ws, "audit.checkpoint_edited")
    assert body["subject"] == "checkpoint 0" and "frontier" in body["message"], body


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize(("table", "key"), [("checkpoints", "size"), ("ledger_entries", "idx")])
@pytest.mark.parametrize("junk", ["'x'", "CAST(X'FF' AS TEXT)", "X'00'"])
def test_created_at_junk_is_a_refusal_naming_the_row(ws: Any, cli: Any, make_file: Any,
                                                    table: str, key: str, junk: str) -> None:
    """`checkpoint_at` and `Ledger.entry` load the row with its timestamp: junk there used to
    crash proofs and `?size=` answers; the audit names table, row and column instead."""
    _ledger(ws, cli, make_file)
    ws.sql(f"UPDATE {table} SET created_at = {junk} WHERE {key} = 1")  # noqa: S608
    body = _refused(cli, ws, "audit.index_malformed")
    assert body["subject"] == f"{table} row 1" and "created_at" in body["message"], body


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("column", ["entry_type", "leaf_hash"])
def test_entry_column_not_utf8_is_refused_not_a_crash(ws: Any, cli: Any, make_file: Any,
                                                      column: str) -> None:
    _ledger(ws, cli, make_file)
    ws.sql(f"UPDATE ledger_entries SET {column} = CAST(X'61FF' AS TEXT) WHERE idx = 2")  # noqa: S608
    body = _refused(cli, ws, "audit.entry_malformed")
    assert body["subject"] == "entry 2" and column in body["message"], body


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("value", ["'x'", "CAST(X'FF' AS TEXT)", "7"])
def test_merkle_node_hash_that_is_no_hash_is_tree_edited(ws: Any, cli: Any, make_file: Any,
                                                         value: str) -> None:
    _ledger(ws, cli, make_file)
    ws.sql(f'UPDATE merkle_nodes SET hash = {value} WHERE level = 0 AND "index" = 1')  # noqa: S608
    body = _refused(cli, ws, "audit.tree_edited")
    assert body["subject"] == "node 0/1", body


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("value", ["X'FF00'", "CAST(X'2BFF' AS TEXT)"])
def test_ledger_meta_key_made_unreadable_is_refused_not_a_crash(
        ws: Any, cli: Any, make_file: Any, value: str) -> None:
    """A blob or text that is not UTF-8 in ``ledger_meta.value``: audit and verify refuse with
    the key mismatch rather than crash reading it."""
    model = _ledger(ws, cli, make_file)
    ws.sql(f"UPDATE ledger_meta SET value = {value} WHERE key = 'checkpoint_vkey'")  # noqa: S608
    body = _refused(cli, ws, "ledger.key_mismatch")
    assert body["subject"] == "ledger_meta row checkpoint_vkey", body
    _refused(cli, ws, "ledger.key_mismatch", "verify", str(model))


@pytest.mark.parametrize("edit", ["UPDATE ledger_meta SET value = 'custody.ledger/forged' "
                                  "WHERE key = 'origin'",
                                  "DELETE FROM ledger_meta WHERE key = 'origin'",
                                  "INSERT INTO ledger_meta (key, value) VALUES ('note', 'x')"])
def test_ledger_meta_origin_edited_or_row_added_is_refused(ws: Any, cli: Any, make_file: Any,
                                                           edit: str) -> None:
    _ledger(ws, cli, make_file)
    ws.sql(edit)
    body = _refused(cli, ws, "ledger.key_mismatch")
    assert body["subject"].startswith("ledger_meta row "), body
