"""Scenario verdicts and row-level precision/recall of the dataset validators, per domain.

The scenarios come from ``tests/support/dataset_scenarios.py`` over the realistic domains of
``tests/support/dataset_domains.py`` (deterministic, with ground truth: which rows were
manipulated and which of those an oracle could name). Each domain's scenarios are written once
per module to a temporary folder and scanned against the same baseline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support import dataset_scenarios as ds

from custody.validators.dataset.compare import DatasetComparison, compare_datasets

N_BASE, N_SNAP = 20_000, 24_000
DOMAINS = ("triage", "credit")  # the domains the rules were tuned on

# Poisoning a scan of this size cannot see (measured; see docs/benchmarks.md for the large
# runs): random flips at 2% in credit are 90% flips of rows whose new label is plausible
# (found at 200k rows), and triage's ambiguous boundary is finer than the baseline model.
MISSES = {("credit", "flips_random_0.02"), ("triage", "boundary_flips")}

# Row-level floors over the union of rows named by poison.* findings: (precision, recall over
# the clear rows), per scenario; pooled over a domain's poisoning scenarios the targets are
# 0.9 and 0.8.
FLOORS: dict[str, tuple[float, float]] = {
    "flips_inplace": (1.0, 1.0),
    "flips_random_0.02": (0.6, 0.4),
    "flips_random_0.1": (0.8, 0.5),
    "targeted_subgroup": (0.7, 0.6),
    "backdoor_new_value": (0.95, 0.95),
    "backdoor_combination": (0.65, 0.9),
    "backdoor_clean_label": (0.95, 0.95),
    "conflicting_duplicates": (0.95, 0.95),
    "near_duplicate_cluster": (0.85, 0.95),
    "injected_cluster": (0.85, 0.8),
    "prior_shift_injected": (0.9, 0.75),
}


@pytest.fixture(scope="module", params=DOMAINS)
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> tuple[str, dict[str, Any], dict[str, DatasetComparison]]:
    domain = str(request.param)
    root = tmp_path_factory.mktemp(f"scenarios-{domain}")
    base, scenarios = ds.scenarios(root, N_BASE, N_SNAP, domain=domain)
    dom = ds.DOMAINS[domain]
    results = {s.name: compare_datasets(s.snapshot, base, label=dom.label,
                                        id_column=dom.id_column) for s in scenarios}
    return domain, {s.name: s for s in scenarios}, results


def _rules(c: DatasetComparison) -> list[str]:
    return [f.rule_id for f in c.report.findings]


def _named(c: DatasetComparison) -> np.ndarray:
    return np.unique(np.concatenate(list(c.rows.values()))) if c.rows \
        else np.zeros(0, dtype=np.int64)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ds.BUILDERS))
def test_scenario_verdict(name: str, world: tuple[str, dict[str, Any],
                                                 dict[str, DatasetComparison]]) -> None:
    domain, scenarios, results = world
    scenario, comparison = scenarios[name], results[name]
    rules = _rules(comparison)
    assert not comparison.report.errored
    if (domain, name) in MISSES:
        assert not any(r.startswith("schema.") for r in rules), rules
        pytest.xfail(f"{domain}/{name}: below what a scan of {N_SNAP} rows can see")
    ok, why = ds.acceptable(scenario, rules)
    assert ok, (domain, name, why, rules)
    if scenario.kind != "poison":
        assert not any(r.startswith("poison.") for r in rules), (domain, name, rules)
    if scenario.kind == "clean":
        assert comparison.report.verdict.value == "clean", rules
    json.dumps(comparison.report.to_json())  # every report is plain JSON


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FLOORS))
def test_poison_rows_precision_recall(name: str, world: tuple[str, dict[str, Any],
                                                             dict[str, DatasetComparison]]
                                      ) -> None:
    domain, scenarios, results = world
    if (domain, name) in MISSES:
        pytest.skip("not detected at this size (see MISSES)")
    scenario = scenarios[name]
    precision, recall = ds.precision_recall(_named(results[name]), scenario)
    p_min, r_min = FLOORS[name]
    if len(scenario.clear_rows) < 20:  # a handful of clear rows says nothing about recall
        r_min = 0.0
    assert precision >= p_min and recall >= r_min, (domain, name, precision, recall)


@pytest.mark.slow
def test_pooled_precision_and_recall_meet_the_targets(
        world: tuple[str, dict[str, Any], dict[str, DatasetComparison]]) -> None:
    domain, scenarios, results = world
    tp = fp = found = missed = 0
    for name, scenario in scenarios.items():
        if scenario.kind != "poison":
            continue
        s = ds.row_scores(_named(results[name]), scenario)
        tp, fp = tp + s["tp"], fp + s["fp"]
        found, missed = found + s["clear_found"], missed + s["clear_missed"]
    assert tp / max(tp + fp, 1) >= 0.9, (domain, tp, fp)
    assert found / max(found + missed, 1) >= 0.8, (domain, found, missed)


@pytest.mark.slow
def test_poison_findings_list_rows_in_evidence(
        world: tuple[str, dict[str, Any], dict[str, DatasetComparison]]) -> None:
    for comparison in world[2].values():
        for f in comparison.report.findings:
            if not f.rule_id.startswith("poison."):
                continue
            rows = f.evidence["rows"]
            assert rows and all(type(r) is int for r in rows)
            assert rows == sorted(rows) and len(rows) <= 1000
            assert f.evidence["row_count"] >= len(rows)
            assert f.severity.label == "high"


@pytest.mark.slow
def test_drift_findings_name_column_statistic_value(
        world: tuple[str, dict[str, Any], dict[str, DatasetComparison]]) -> None:
    seen = 0
    for comparison in world[2].values():
        for f in comparison.report.findings:
            if f.rule_id.startswith("drift."):
                seen += 1
                assert {"column", "statistic", "value", "tolerance"} <= set(f.evidence)
                assert isinstance(f.evidence["value"], float)
    assert seen >= 4


@pytest.mark.slow
def test_new_value_backdoor_names_the_value(
        world: tuple[str, dict[str, Any], dict[str, DatasetComparison]]) -> None:
    _domain, _, results = world
    findings = results["backdoor_new_value"].report.findings
    trigger = next(f for f in findings if f.rule_id == "poison.trigger_pattern")
    assert "ZZ-TRIGGER" in json.dumps(trigger.evidence["patterns"])


@pytest.mark.slow
def test_targeted_subgroup_names_both_features(
        world: tuple[str, dict[str, Any], dict[str, DatasetComparison]]) -> None:
    domain, _, results = world
    trigger = next(f for f in results["targeted_subgroup"].report.findings
                   if f.rule_id == "poison.trigger_pattern")
    text = json.dumps(trigger.evidence["patterns"])
    expected = {"triage": ("department", "age"), "credit": ("product", "age")}[domain]
    assert all(name in text for name in expected), text


def test_csv_twin_of_a_parquet_snapshot_reads_back_as_the_same_table(tmp_path: Path) -> None:
    """The attack would be a CSV export raising schema or drift findings: typed against the
    baseline, every column (nullable strings included) round-trips Parquet."""
    import pyarrow.csv as pacsv

    from custody.validators.dataset.reader import open_source

    for domain in DOMAINS:
        base, _ = ds.scenarios(tmp_path / domain, 3000, 3000, domain=domain, only=set())
        table = open_source(base)
        csv = tmp_path / f"{domain}.csv"
        whole = __import__("pyarrow").Table.from_batches(list(table.batches()))
        pacsv.write_csv(whole, csv)
        back = open_source(csv, table.schema)
        again = __import__("pyarrow").Table.from_batches(list(back.batches()))
        assert again.schema.equals(whole.schema), (again.schema, whole.schema)
        assert again.equals(whole)
        c = compare_datasets(csv, base, label=ds.DOMAINS[domain].label,
                             id_column=ds.DOMAINS[domain].id_column)
        alarms = [r for r in _rules(c) if r.startswith(("poison.", "schema.", "drift."))]
        assert alarms == [], (domain, alarms)
