"""Units of the dataset validators: reader, schema, profile, drift statistics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from custody.validators.dataset.compare import compare_datasets
from custody.validators.dataset.drift import jensen_shannon, psi
from custody.validators.dataset.fingerprint import schema_fingerprint
from custody.validators.dataset.profile import DatasetProfile, profile_dataset
from custody.validators.dataset.reader import open_source
from custody.validators.dataset.schema import type_change

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"
V1, V2 = SAMPLES / "dataset-v1.parquet", SAMPLES / "dataset-v2-poisoned.parquet"


def test_type_change_classification() -> None:
    assert type_change("int32", "int64") == "widened"
    assert type_change("int64", "int32") == "changed"
    assert type_change("uint8", "int16") == "widened"
    assert type_change("int32", "double") == "widened"
    assert type_change("float", "double") == "widened"
    assert type_change("double", "float") == "changed"
    assert type_change("int64", "string") == "changed"
    assert type_change("timestamp[s]", "timestamp[us]") == "widened"
    assert type_change("string", "string") == "same"


def test_fingerprint_ignores_encoding_but_not_types(tmp_path: Path) -> None:
    table = pq.read_table(V1)
    again = tmp_path / "again.parquet"
    pq.write_table(table, again, compression="gzip", row_group_size=100)
    assert schema_fingerprint(again) == schema_fingerprint(V1)
    assert schema_fingerprint(V1).startswith("sha256:")
    retyped = tmp_path / "retyped.parquet"
    pq.write_table(table.set_column(1, "f0", table.column("f0").cast(pa.float32())), retyped)
    assert schema_fingerprint(retyped) != schema_fingerprint(V1)


def test_profile_round_trips_through_json() -> None:
    prof = profile_dataset(V1, label="label")
    data = json.loads(json.dumps(prof.to_json()))
    back = DatasetProfile.from_json(data)
    assert back.to_json() == prof.to_json()
    assert back.rows == 3000 and back.columns["colour"].value_counts["red"] > 0
    assert back.columns["id"].monotonic and not back.columns["f0"].monotonic


def test_stored_profile_as_baseline_runs_schema_and_drift(tmp_path: Path) -> None:
    stored = json.loads(json.dumps(profile_dataset(V1, label="label").to_json()))
    table = pq.read_table(V1)
    shifted = table.set_column(1, "f0", pa.compute.add(table.column("f0"), 1.0))
    path = tmp_path / "shifted.parquet"
    pq.write_table(shifted.drop_columns(["f3"]), path)
    c = compare_datasets(path, None, baseline_profile=stored)
    rules = {f.rule_id for f in c.report.findings}
    assert {"schema.column_removed", "drift.distribution", "dataset.poison_skipped"} <= rules
    clean = compare_datasets(V1, None, baseline_profile=stored)
    assert {f.rule_id for f in clean.report.findings} == {"dataset.poison_skipped"}


def test_no_baseline_profiles_only() -> None:
    c = compare_datasets(V1)
    assert [f.rule_id for f in c.report.findings] == ["dataset.no_baseline"]
    assert c.report.verdict.value == "clean"
    assert c.fingerprint == schema_fingerprint(V1)


def test_unreadable_snapshot_fails_closed(tmp_path: Path) -> None:
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"PAR1" + b"\x00" * 64)
    c = compare_datasets(bad, V1)
    assert c.report.errored and c.report.verdict.value == "error"
    assert c.report.findings[0].rule_id == "dataset.unreadable"
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    assert compare_datasets(empty_dir, V1).report.refused


def test_directory_reads_files_in_sorted_order(tmp_path: Path) -> None:
    table = pq.read_table(V1)
    folder = tmp_path / "parts"
    folder.mkdir()
    pq.write_table(table.slice(1500), folder / "b.parquet")
    pq.write_table(table.slice(0, 1500), folder / "a.parquet")
    (folder / "_SUCCESS").write_text("")
    source = open_source(folder)
    ids = pa.concat_arrays([b.column("id") for b in source.batches()]).to_numpy()
    assert (ids == np.arange(3000)).all() and source.num_rows == 3000


def test_csv_that_does_not_parse_as_baseline_type_is_a_type_change(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("id,f0,f1,f2,f3,colour,label\n"
                    + "".join(f"{i},{i * 0.1},0.5,0.1,abc{i},red,{i % 2}\n" for i in range(50)))
    c = compare_datasets(path, V1)
    changed = [f for f in c.report.findings if f.rule_id == "schema.type_changed"]
    assert [f.evidence["column"] for f in changed] == ["f3"]


def test_missing_label_column_is_a_usage_error() -> None:
    with pytest.raises(ValueError, match="label column"):
        compare_datasets(V2, V1, label="nope")


def test_progress_is_reported() -> None:
    seen: list[tuple[int, int | None]] = []
    compare_datasets(V2, V1, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (6060, 6060)


def test_statistics() -> None:
    p = np.array([0.5, 0.5])
    assert psi(p, p) == pytest.approx(0.0)
    assert jensen_shannon(p, p) == pytest.approx(0.0)
    assert jensen_shannon(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(1.0)
    assert psi(np.array([0.5, 0.5]), np.array([0.7, 0.3])) == pytest.approx(
        0.2 * np.log(0.7 / 0.5) + 0.2 * np.log(0.5 / 0.3))


def test_dataset_package_does_not_import_pandas_or_gx() -> None:
    import subprocess
    import sys

    code = ("import sys; import custody.validators.dataset.compare; "
            "print([m for m in ('pandas', 'great_expectations') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_directory_files_with_different_columns_and_widths(tmp_path: Path) -> None:
    table = pq.read_table(V1)
    folder = tmp_path / "parts"
    folder.mkdir()
    first = table.slice(0, 1000)
    first = first.set_column(0, "id", first.column("id").cast(pa.int32()))
    pq.write_table(first, folder / "a.parquet")
    pq.write_table(table.slice(1000).drop_columns(["f3"]), folder / "b.parquet")
    source = open_source(folder)
    assert source.schema.field("id").type == pa.int64()
    batches = list(source.batches())
    assert sum(b.num_rows for b in batches) == 3000
    nulls = sum(b.column("f3").null_count for b in batches)
    assert nulls == 2000
    assert compare_datasets(folder, V1).report.errored is False
