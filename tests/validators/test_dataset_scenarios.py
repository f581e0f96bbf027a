"""Scenario verdicts and row-level precision/recall of the dataset validators.

The scenarios come from ``tests/dataset_scenarios.py`` (deterministic, with ground truth); they
are written once per module to a temporary folder and scanned against the same baseline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support import dataset_scenarios as ds

from custody.validators.dataset.compare import DatasetComparison, compare_datasets

N_BASE, N_SNAP = 6000, 7200

# Row-level floors on the union of rows named by poison.* findings: (precision, recall).
FLOORS: dict[str, tuple[float, float]] = {
    "flips_inplace_0.02": (1.0, 1.0),
    "flips_inplace_0.1": (1.0, 1.0),
    # random flips on fresh rows: a flip near the class boundary is indistinguishable from noise
    "flips_fresh_0.05": (0.8, 0.4),
    "flips_fresh_0.15": (0.9, 0.4),
    "targeted_flips": (0.85, 0.9),
    "backdoor_new_value": (0.8, 0.95),
    "backdoor_clean_label": (0.95, 0.95),
    "backdoor_combination": (0.7, 0.7),
    "conflicting_duplicates": (0.85, 0.95),
    "near_duplicate_cluster": (0.95, 0.95),
    "outlier_cluster": (0.6, 0.95),
    "prior_shift_injected": (0.85, 0.95),
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("scenarios")
    base, scenarios = ds.scenarios(root, N_BASE, N_SNAP)
    return base, {s.name: s for s in scenarios}


@pytest.fixture(scope="module")
def results(world: tuple[Path, dict[str, Any]]) -> dict[str, DatasetComparison]:
    base, scenarios = world
    return {name: compare_datasets(s.snapshot, base) for name, s in scenarios.items()}


def _rules(c: DatasetComparison) -> list[str]:
    return [f.rule_id for f in c.report.findings]


@pytest.mark.parametrize("name", list(ds.BUILDERS))
def test_scenario_verdict(name: str, world: tuple[Path, dict[str, Any]],
                          results: dict[str, DatasetComparison]) -> None:
    scenario = world[1][name]
    comparison = results[name]
    rules = _rules(comparison)
    assert not comparison.report.errored
    assert ds.verdict_class(rules) == scenario.kind, (name, rules)
    for required in scenario.rules:
        assert any(r.startswith(required) for r in rules), (name, required, rules)
    if scenario.kind != "poison":
        assert not any(r.startswith("poison.") for r in rules), (name, rules)
    if scenario.kind == "clean":
        assert comparison.report.verdict.value == "clean", rules
    # every report is plain JSON
    json.dumps(comparison.report.to_json())


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_poison_rows_precision_recall(name: str, world: tuple[Path, dict[str, Any]],
                                      results: dict[str, DatasetComparison]) -> None:
    scenario = world[1][name]
    comparison = results[name]
    found = np.unique(np.concatenate(list(comparison.rows.values()))) if comparison.rows \
        else np.zeros(0, dtype=np.int64)
    precision, recall = ds.precision_recall(found, scenario.poison_rows)
    p_min, r_min = FLOORS[name]
    assert precision >= p_min and recall >= r_min, (name, precision, recall)


def test_poison_findings_list_rows_in_evidence(results: dict[str, DatasetComparison]) -> None:
    for comparison in results.values():
        for f in comparison.report.findings:
            if not f.rule_id.startswith("poison."):
                continue
            rows = f.evidence["rows"]
            assert rows and all(type(r) is int for r in rows)
            assert rows == sorted(rows) and len(rows) <= 1000
            assert f.evidence["row_count"] >= len(rows)
            assert f.severity.label == "high"


def test_drift_findings_name_column_statistic_value(
        results: dict[str, DatasetComparison]) -> None:
    seen = 0
    for comparison in results.values():
        for f in comparison.report.findings:
            if f.rule_id.startswith("drift."):
                seen += 1
                assert {"column", "statistic", "value", "tolerance"} <= set(f.evidence)
                assert isinstance(f.evidence["value"], float)
    assert seen >= 4


def test_targeted_flips_pattern_names_the_region(results: dict[str, DatasetComparison]) -> None:
    finding = next(f for f in results["targeted_flips"].report.findings
                   if f.rule_id == "poison.trigger_pattern")
    text = json.dumps(finding.evidence["patterns"])
    assert "f0" in text and "f1" in text


def test_new_value_backdoor_names_the_value(results: dict[str, DatasetComparison]) -> None:
    finding = next(f for f in results["backdoor_new_value"].report.findings
                   if f.rule_id == "poison.trigger_pattern")
    assert "magenta" in json.dumps(finding.evidence["patterns"])
    schema = next(f for f in results["backdoor_new_value"].report.findings
                  if f.rule_id == "schema.new_category")
    assert schema.evidence["column"] == "colour"
