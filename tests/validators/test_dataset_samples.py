"""The shipped sample datasets: v2 is poisoned in exactly the rows make_samples.py poisoned."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from custody.validators.dataset.compare import compare_datasets, scan_dataset

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"
V1, V2 = SAMPLES / "dataset-v1.parquet", SAMPLES / "dataset-v2-poisoned.parquet"


def _truth() -> tuple[set[int], set[int]]:
    v1 = pq.read_table(V1)
    f0, f1 = v1.column("f0").to_numpy(), v1.column("f1").to_numpy()
    flipped = set(np.flatnonzero((f0 > 1.2) & (f1 < -0.5)).tolist())
    injected = set(range(v1.num_rows, v1.num_rows + 60))
    return flipped, injected


def test_v2_against_v1_flags_the_poisoned_rows() -> None:
    c = compare_datasets(V2, V1)
    assert c.report.verdict.value == "flagged"
    assert c.label == "label" and c.id_column == "id"  # auto-detected
    flipped, injected = _truth()
    by_rule = {f.rule_id: f for f in c.report.findings}
    changed = by_rule["poison.label_changed"]
    assert set(changed.evidence["rows"]) == flipped
    assert changed.evidence["transitions"] == {"1->0": len(flipped)}
    assert set(by_rule["poison.injected_cluster"].evidence["rows"]) == injected
    flagged = set().union(*(set(r.tolist()) for r in c.rows.values()))
    assert flagged == flipped | injected
    json.dumps(c.report.to_json())


def _alarms(report):  # type: ignore[no-untyped-def]
    """Findings other than the info summary of which poisoning rules ran."""
    return [f for f in report.findings if f.rule_id != "dataset.checks"]


def test_v1_against_itself_is_clean() -> None:
    report = scan_dataset(V1, V1)
    assert report.verdict.value == "clean"
    assert _alarms(report) == []
    checks = next(f for f in report.findings if f.rule_id == "dataset.checks")
    assert checks.severity.label == "info"
    assert checks.evidence["rules"]["poison.knn_disagreement"] == "ran"


def test_v1_against_a_benign_resample_is_clean(tmp_path: Path) -> None:
    from custody.sample_data import make_samples

    table, _ = make_samples._table(np.random.default_rng(99), 3000)
    fresh = tmp_path / "fresh.parquet"
    pq.write_table(table, fresh, compression="snappy", row_group_size=700)
    report = scan_dataset(fresh, V1)
    assert report.verdict.value == "clean", [f.to_json() for f in report.findings]
    assert not [f for f in report.findings if f.rule_id.startswith("poison.")]


def test_reordered_csv_copy_is_clean(tmp_path: Path) -> None:
    import pyarrow.csv as pacsv

    table = pq.read_table(V1)
    table = table.take(pa.array(np.random.default_rng(3).permutation(table.num_rows)))
    path = tmp_path / "v1.csv"
    pacsv.write_csv(table, path)
    report = scan_dataset(path, V1)
    assert report.verdict.value == "clean", [f.to_json() for f in report.findings]
    assert _alarms(report) == []


def test_evidence_rows_are_capped(tmp_path: Path) -> None:
    c = compare_datasets(V2, V1, max_evidence_rows=10)
    changed = next(f for f in c.report.findings if f.rule_id == "poison.label_changed")
    assert len(changed.evidence["rows"]) == 10
    assert changed.evidence["rows_truncated"] is True
    assert changed.evidence["row_count"] == len(_truth()[0])
    assert len(c.rows["poison.label_changed"]) == len(_truth()[0])
