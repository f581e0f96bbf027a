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
