"""False alarms on clean data: every benign and natural-drift scenario of the tuning domains,
over several seeds, raises no poison.* and no schema.* finding.

The stated rate (at most 1% per rule per snapshot) is measured at scale by
``benchmarks/bench_dataset.py --far N`` (docs/benchmarks.md); this test is its quick version:
with SEEDS x 12 scenarios x 2 domains snapshots and no alarm allowed, a rule firing on 1% of
clean snapshots would pass it with probability below 1%.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support import dataset_scenarios as ds

from custody.validators.dataset.compare import compare_datasets

SEEDS = range(3000, 3020)
BENIGN = {"resample", "small_batch", "reorder", "append", "csv_twin", "directory",
          "covariate_shift", "seasonal", "category_mix", "missingness",
          "new_highcard_values", "label_prior_natural"}


@pytest.mark.slow
@pytest.mark.parametrize("domain", ["triage", "credit"])
def test_no_poison_or_schema_finding_on_clean_or_naturally_drifting_data(
        domain: str, tmp_path: Path) -> None:
    dom = ds.DOMAINS[domain]
    alarms: list[tuple[int, str, list[str]]] = []
    snapshots = 0
    for seed in SEEDS:
        base, scenarios = ds.scenarios(tmp_path / str(seed), 8000, 9600, seed=seed,
                                       only=BENIGN, domain=domain)
        for sc in scenarios:
            c = compare_datasets(sc.snapshot, base, label=dom.label, id_column=dom.id_column)
            snapshots += 1
            bad = [f.rule_id for f in c.report.findings
                   if f.rule_id.startswith(("poison.", "schema."))]
            if bad:
                alarms.append((seed, sc.name, bad))
    assert snapshots == len(SEEDS) * len(BENIGN)
    assert alarms == [], alarms
