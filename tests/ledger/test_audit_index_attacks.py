"""`custody audit verify` vouches for every table a verdict, a proof or a displayed fact reads
(issue 13): an administrator's edit of any index column, of the Merkle nodes or of a checkpoint's
frontier is refused with its rule and row; a malformed value is a refusal, never a traceback.

One test per attack, named after it, on SQLite and PostgreSQL (the malformed-value attacks need
SQLite's loose typing).
"""

from __future__ import annotations

import json

import pytest


def _ledger_with_lineage(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    data = make_file(ws.root / "train.csv", "a,b\n1,2\n3,4\n")
    model = make_file(ws.root / "model" / "weights.bin", b"\x00weights" * 64)
    make_file(ws.root / "model" / "config.json", '{"layers": 2}')
    cli("record", data, "--name", "train", "--kind", "dataset", cwd=ws.root).expect(0)
    cli("record", model, "--name", "clf", "--kind", "model", "--input", "train@1",
        cwd=ws.root).expect(0)
    cli("audit", "verify", cwd=ws.root).expect(0)


def _model_row(ws) -> int:  # type: ignore[no-untyped-def]
    return int(ws.sql("SELECT v.id FROM artifact_versions v JOIN artifacts a ON a.id = "
                      "v.artifact_id WHERE a.name = 'clf'")[0][0])


EDITS = {
    # attack name: (SQL, expected needles)
    "recorded_at_moved_to_bypass_max_age": (
        "UPDATE artifact_versions SET recorded_at = :t WHERE id = :v",
        {"t": "2099-01-01 00:00:00"}, ("audit.index_edited", "recorded_at")),
    "signer_renamed_to_a_trusted_one": (
        "UPDATE artifact_versions SET signer = 'key:trusted-release-key' WHERE id = :v", {},
        ("audit.index_edited", "signer")),
    "scan_verdict_forged_clean": (
        "UPDATE artifact_versions SET scan_verdict = 'refused' WHERE id = :v", {},
        ("audit.index_edited", "scan_verdict")),
    "scan_severity_forged": (
        "UPDATE artifact_versions SET scan_max_severity = 'critical' WHERE id = :v", {},
        ("audit.index_edited", "scan_max_severity")),
    "size_forged": ("UPDATE artifact_versions SET size = 1 WHERE id = :v", {},
                    ("audit.index_edited", "size")),
    "scan_report_swapped": (
        "UPDATE signed_statements SET scan_report = :r WHERE version_id = :v",
        {"r": json.dumps({"verdict": "refused", "max_severity": "high", "findings": []})},
        ("audit.index_edited", "scan_report")),
    "oms_bundle_of_another_version": (
        "UPDATE signed_statements SET oms_bundle = (SELECT bundle FROM signed_statements "
        "WHERE version_id <> :v LIMIT 1) WHERE version_id = :v", {},
        ("audit.index_edited", "oms_bundle")),
    "manifest_file_digest_swapped": (
        "UPDATE manifest_files SET sha256 = :d WHERE version_id = :v", {"d": "ab" * 32},
        ("audit.index_edited", "manifest_files")),
    "edge_repointed_at_a_missing_version": (
        "UPDATE lineage_edges SET input_version_id = 9999", {}, ("audit.index_edited",)),
    "merkle_node_corrupted": (
        "UPDATE merkle_nodes SET hash = :h WHERE level = 0 AND \"index\" = 1", {"h": b"\x01" * 32},
        ("audit.tree_edited", "level 0, index 1")),
    "merkle_node_deleted": (
        "DELETE FROM merkle_nodes WHERE level = 1 AND \"index\" = 0", {},
        ("audit.tree_edited", "missing")),
    "merkle_node_inserted": (
        "INSERT INTO merkle_nodes (level, \"index\", hash) VALUES (9, 9, :h)", {"h": b"\x02" * 32},
        ("audit.tree_edited", "inserted")),
    "checkpoint_frontier_edited": (
        "UPDATE checkpoints SET frontier = (SELECT frontier FROM checkpoints WHERE size = 1) "
        "WHERE size = (SELECT max(size) FROM checkpoints)", {},
        ("audit.checkpoint_edited", "frontier")),
}


@pytest.mark.parametrize("attack", sorted(EDITS))
def test_index_edit_is_refused_by_audit(ws, cli, make_file, attack: str) -> None:  # type: ignore[no-untyped-def]
    _ledger_with_lineage(ws, cli, make_file)
    statement, params, needles = EDITS[attack]
    if attack == "edge_repointed_at_a_missing_version" and ws.backend == "postgresql":
        ws.sql("ALTER TABLE lineage_edges DROP CONSTRAINT lineage_edges_input_version_id_fkey")
    if attack == "oms_bundle_of_another_version":
        params = {}
    ws.sql(statement, **{"v": _model_row(ws), **params})
    result = cli("audit", "verify", cwd=ws.root).expect(1, *needles)
    assert "AUDIT PASSED" not in result.out


SQLITE_MALFORMED = {
    "recorded_at_not_a_time": ("UPDATE artifact_versions SET recorded_at = 'x'",
                               ("audit.index_malformed",)),
    "payload_not_utf8": ("UPDATE ledger_entries SET payload = CAST(X'7B22FF22' AS TEXT) "
                         "WHERE idx = 0", ("audit.entry_malformed", "row 0", "UTF-8")),
    "size_not_a_number": ("UPDATE artifact_versions SET size = 'lots'",
                          ("audit.",)),
}


@pytest.mark.parametrize("attack", sorted(SQLITE_MALFORMED))
@pytest.mark.parametrize("backend", ["sqlite"])
def test_malformed_value_is_a_refusal_not_a_crash(ws, cli, make_file, attack: str) -> None:  # type: ignore[no-untyped-def]
    _ledger_with_lineage(ws, cli, make_file)
    statement, needles = SQLITE_MALFORMED[attack]
    ws.sql(statement)
    cli("audit", "verify", cwd=ws.root).expect(1, *needles)


def test_untouched_ledger_with_lineage_passes_the_full_audit(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    _ledger_with_lineage(ws, cli, make_file)
    cli("revoke", "train@1", "--reason", "mislabelled", cwd=ws.root).expect(0)
    report = cli("audit", "verify", "--json", cwd=ws.root).expect(0).json()
    assert report["ok"] is True and report["entries_checked"] == 4
