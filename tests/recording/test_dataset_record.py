"""Datasets in record, scan and verify: baselines, poisoning refusals, profiles, policy rules."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"


def _copy(ws, name: str) -> Path:  # type: ignore[no-untyped-def]
    return Path(shutil.copy(SAMPLES / name, ws.root / name))


def _policy(ws, extra: str) -> Path:  # type: ignore[no-untyped-def]
    path = ws.root / "policy.toml"
    path.write_text('[signers.local]\nkeys = [".custody/keys/signing.pub"]\n'
                    f'[[trust]]\nsigners = ["local"]\n{extra}')
    return path


def test_poisoned_snapshot_is_refused_against_its_baseline(ws, cli) -> None:  # type: ignore[no-untyped-def]
    v1, v2 = _copy(ws, "dataset-v1.parquet"), _copy(ws, "dataset-v2-poisoned.parquet")
    cli("record", v1, "--name", "train", "--kind", "dataset", cwd=ws.root).expect(0)
    before = ws.entry_count()
    cli("record", v2, "--name", "train", "--kind", "dataset", "--baseline", v1,
        cwd=ws.root).expect(1, "poison.")
    assert ws.entry_count() == before
    scan = cli("scan", v2, "--baseline", v1, "--json", cwd=ws.root).expect(1).json()
    rules = {f["rule_id"]: f for f in scan["findings"]}
    assert "poison.injected_cluster" in rules and "poison.label_changed" in rules
    assert rules["poison.injected_cluster"]["evidence"]["rows"] == list(range(3000, 3060))
    assert scan["schema_fingerprint"].startswith("sha256:")


def test_next_version_is_compared_with_the_previous_profile(ws, cli) -> None:  # type: ignore[no-untyped-def]
    v1 = _copy(ws, "dataset-v1.parquet")
    cli("record", v1, "--name", "train", "--kind", "dataset", cwd=ws.root).expect(0)
    reordered = ws.root / "reordered.parquet"
    table = pq.read_table(v1)
    pq.write_table(table.take(list(reversed(range(table.num_rows)))), reordered,
                   compression="gzip", row_group_size=500)
    cli("record", reordered, "--name", "train", "--kind", "dataset", cwd=ws.root).expect(0)
    statement = json.loads(ws.sql(
        "SELECT statement FROM signed_statements ORDER BY id DESC LIMIT 1")[0][0])
    dataset = statement["predicate"]["dataset"]
    assert dataset["baseline"] == "train@1"
    assert dataset["label"] == "label"
    assert dataset["schema_fingerprint"].startswith("sha256:")
    report = json.loads(ws.sql(
        "SELECT scan_report FROM signed_statements ORDER BY id DESC LIMIT 1")[0][0])
    assert "dataset" in report["scanners"]
    assert not [f for f in report["findings"] if f["rule_id"].startswith(("poison.", "schema."))]
    cli("audit", "verify", cwd=ws.root).expect(0)


def test_schema_change_is_reported(ws, cli) -> None:  # type: ignore[no-untyped-def]
    v1 = _copy(ws, "dataset-v1.parquet")
    cli("record", v1, "--name", "train", "--kind", "dataset", cwd=ws.root).expect(0)
    dropped = ws.root / "dropped.parquet"
    pq.write_table(pq.read_table(v1).drop_columns(["f2"]), dropped)
    out = cli("scan", dropped, "--baseline", "train@1", "--json", cwd=ws.root).expect(1).json()
    assert any(f["rule_id"] == "schema.column_removed" for f in out["findings"])
    cli("record", dropped, "--name", "train", "--kind", "dataset", cwd=ws.root).expect(
        1, "schema.column_removed")


def test_policy_requires_a_baseline(ws, cli) -> None:  # type: ignore[no-untyped-def]
    v1 = _copy(ws, "dataset-v1.parquet")
    cli("record", v1, "--name", "train", "--kind", "dataset", cwd=ws.root).expect(0)
    policy = _policy(ws, "[datasets]\nrequire_baseline = true\n")
    cli("verify", v1, "--policy", policy, cwd=ws.root).expect(0)  # a first version
    blob = ws.root / "notes.bin"
    blob.write_bytes(b"\x00\x01 not a table")
    cli("record", blob, "--name", "notes", "--kind", "dataset", cwd=ws.root).expect(0)
    cli("verify", blob, "--policy", policy, cwd=ws.root).expect(1, "policy.baseline_required")


def test_policy_expectation_suites(ws, cli) -> None:  # type: ignore[no-untyped-def]
    v1 = _copy(ws, "dataset-v1.parquet")
    cli("record", v1, "--name", "train", "--kind", "dataset", cwd=ws.root).expect(0)
    good = {"name": "labels-binary", "expectations": [
        {"type": "expect_column_values_to_be_in_set",
         "kwargs": {"column": "label", "value_set": [0, 1]}}]}
    bad = {"name": "labels-one", "expectations": [
        {"type": "expect_column_values_to_be_in_set",
         "kwargs": {"column": "label", "value_set": [1]}}]}
    (ws.root / "good.json").write_text(json.dumps(good))
    (ws.root / "bad.json").write_text(json.dumps(bad))
    cli("verify", v1, "--policy", _policy(ws, '[datasets]\nexpectation_suites = ["good.json"]\n'),
        cwd=ws.root).expect(0)
    cli("verify", v1, "--policy", _policy(ws, '[datasets]\nexpectation_suites = ["bad.json"]\n'),
        cwd=ws.root).expect(1, "expectation.")


def _last_dataset_entry(ws):  # type: ignore[no-untyped-def]
    idx, payload = ws.sql("SELECT idx, payload FROM ledger_entries WHERE entry_type = "
                          "'artifact_version' ORDER BY idx DESC LIMIT 1")[0]
    return idx, json.loads(payload)


def test_default_path_checks_poisoning_against_the_previous_versions_reference(ws, cli) -> None:  # type: ignore[no-untyped-def]
    """The attack issue 15 describes: record v2 with 10% of labels flipped and no --baseline.
    The previous version's stored reference stands in for its rows: refused, no file read."""
    v1, v2 = _copy(ws, "dataset-v1.parquet"), _copy(ws, "dataset-v2-poisoned.parquet")
    cli("record", v1, "--name", "train", "--kind", "dataset", cwd=ws.root).expect(0)
    _, entry = _last_dataset_entry(ws)
    statement = json.loads(ws.sql(
        "SELECT statement FROM signed_statements ORDER BY id DESC LIMIT 1")[0][0])
    claims = statement["predicate"]["dataset"]
    assert claims["reference_sha256"].startswith("sha256:")
    assert claims["label_counts"] and claims["reference_bytes"] > 0
    assert "dataset_reference" in entry and "dataset_profile" in entry
    v1.unlink()  # the baseline's bytes are gone: only the ledger has what it needs
    before = ws.entry_count()
    cli("record", v2, "--name", "train", "--kind", "dataset", cwd=ws.root).expect(
        1, "poison.")
    assert ws.entry_count() == before
    out = cli("scan", v2, "--baseline", "train@1", "--json", cwd=ws.root).expect(1).json()
    rules = {f["rule_id"]: f for f in out["findings"]}
    assert {"poison.label_changed", "poison.injected_cluster"} <= set(rules)
    assert rules["poison.injected_cluster"]["evidence"]["rows"] == list(range(3000, 3060))
    ran = rules["dataset.checks"]["evidence"]["rules"]
    assert ran["poison.knn_disagreement"] == "ran" and ran["poison.label_changed"] == "ran"


def test_a_clean_next_version_is_recorded_and_says_which_rules_ran(ws, cli) -> None:  # type: ignore[no-untyped-def]
    v1 = _copy(ws, "dataset-v1.parquet")
    cli("record", v1, "--name", "train", "--kind", "dataset", cwd=ws.root).expect(0)
    again = ws.root / "again.parquet"
    pq.write_table(pq.read_table(v1), again, compression="gzip", row_group_size=700)
    cli("record", again, "--name", "train", "--kind", "dataset", cwd=ws.root).expect(0)
    report = json.loads(ws.sql(
        "SELECT scan_report FROM signed_statements ORDER BY id DESC LIMIT 1")[0][0])
    checks = next(f for f in report["findings"] if f["rule_id"] == "dataset.checks")
    assert set(checks["evidence"]["rules"]) >= {"poison.knn_disagreement",
                                                 "poison.trigger_pattern",
                                                 "poison.conflicting_duplicate"}
    assert not [f for f in report["findings"] if f["rule_id"].startswith("poison.")]


def test_swapped_stored_reference_is_refused(ws, cli) -> None:  # type: ignore[no-untyped-def]
    """An administrator replaces v1's stored reference with one of other data (to hide the
    poisoning of v2): its digest no longer matches the signed statement."""
    import base64

    from custody.validators.dataset.compare import compare_datasets

    v1, v2 = _copy(ws, "dataset-v1.parquet"), _copy(ws, "dataset-v2-poisoned.parquet")
    cli("record", v1, "--name", "train", "--kind", "dataset", cwd=ws.root).expect(0)
    idx, entry = _last_dataset_entry(ws)
    forged = compare_datasets(v2, None, make_reference=True).reference
    assert forged is not None
    entry["dataset_reference"] = base64.b64encode(forged).decode()
    ws.sql("UPDATE ledger_entries SET payload = :p WHERE idx = :i",
           p=json.dumps(entry, sort_keys=True, separators=(",", ":")), i=idx)
    cli("record", v2, "--name", "train", "--kind", "dataset", cwd=ws.root).expect(
        1, "ledger.inconsistent")


def test_scan_rows_out_writes_every_named_row(ws, cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from custody.provenance.scanning.datasets import assess_dataset, write_rows_out

    v1, v2 = _copy(ws, "dataset-v1.parquet"), _copy(ws, "dataset-v2-poisoned.parquet")
    assessment = assess_dataset(v2, ledger=None, name=None, baseline=str(v1))
    assert assessment is not None
    out = tmp_path / "rows.csv"
    lines = write_rows_out(assessment, out)
    import pyarrow.csv as pacsv

    table = pacsv.read_csv(out)
    assert table.num_rows == lines > 0
    assert table.column_names == ["row", "id", "rule", "candidate", "label", "score",
                                  "baseline_label", "baseline_p"]
    named = {(r, rule) for r, rule in zip(table.column("row").to_pylist(),
                                          table.column("rule").to_pylist(), strict=True)}
    comparison = assessment.comparison
    expected = {(int(r), rule) for rule, rows in comparison.rows.items() for r in rows}
    assert expected <= named
    ids = dict(zip(table.column("row").to_pylist(), table.column("id").to_pylist(),
                   strict=True))
    v2_ids = pq.read_table(v2).column("id").to_pylist()
    assert all(int(ids[r]) == v2_ids[r] for r in ids)
    parquet = tmp_path / "rows.parquet"
    assert write_rows_out(assessment, parquet) == lines
    assert pq.read_table(parquet).num_rows == lines


def test_cli_scan_rows_out(ws, cli) -> None:  # type: ignore[no-untyped-def]
    v1, v2 = _copy(ws, "dataset-v1.parquet"), _copy(ws, "dataset-v2-poisoned.parquet")
    out = ws.root / "suspicious.csv"
    scan = cli("scan", v2, "--baseline", v1, "--rows-out", out, "--json",
               cwd=ws.root).expect(1).json()
    import pyarrow.csv as pacsv

    table = pacsv.read_csv(out)
    named = sum(f["evidence"]["row_count"] for f in scan["findings"]
                if f["rule_id"].startswith("poison.") and not f["evidence"].get(
                    "rows_are_candidates"))
    assert table.num_rows >= named > 0
    cli("scan", v2, "--baseline", v1, "--rows-out", ws.root / "rows.txt",
        cwd=ws.root).expect(2, ".parquet or .csv")
