"""great-expectations interop: export the baseline checks as a suite and run suites."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from custody.validators.dataset.compare import compare_datasets
from custody.validators.dataset.expectations import baseline_suite, run_suite
from custody.validators.dataset.profile import profile_dataset

pytest.importorskip("great_expectations")

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"
V1, V2 = SAMPLES / "dataset-v1.parquet", SAMPLES / "dataset-v2-poisoned.parquet"


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    suite = baseline_suite(profile_dataset(V1, label="label"), skip=frozenset({"id"}))
    path = tmp_path_factory.mktemp("gx") / "suite.json"
    path.write_text(json.dumps(suite))
    return path


def test_exported_suite_passes_on_the_baseline(suite_file: Path) -> None:
    findings = run_suite(V1, suite_file)
    assert [f.rule_id for f in findings] == ["expectation.suite_result"]
    assert findings[0].evidence["success"] is True


def test_exported_suite_fails_on_the_poisoned_snapshot_with_rows(suite_file: Path) -> None:
    findings = run_suite(V2, suite_file)
    between = [f for f in findings
               if f.rule_id == "expectation.expect_column_values_to_be_between"]
    assert between and between[0].evidence["kwargs"]["column"] == "f3"
    assert between[0].evidence["rows"] == list(range(3000, 3060))
    json.dumps([f.to_json() for f in findings])


def test_suite_runs_inside_compare(suite_file: Path) -> None:
    c = compare_datasets(V2, V1, expectation_suite=suite_file)
    assert "great-expectations" in c.report.scanners
    assert any(f.rule_id.startswith("expectation.expect_") for f in c.report.findings)


def test_invalid_suite_never_passes(tmp_path: Path) -> None:
    bad = {"name": "bad", "expectations": [{"type": "expect_no_such_thing", "kwargs": {}}]}
    findings = run_suite(V1, bad)
    assert [f.rule_id for f in findings] == ["expectation.suite_invalid"]
    assert findings[0].severity.label == "high"
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert run_suite(V1, broken)[0].rule_id == "expectation.suite_invalid"
