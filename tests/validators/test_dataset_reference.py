"""The stored reference of a dataset version (validators/dataset/reference.py): it stands in
for the baseline's rows, and a forged or damaged one is refused, never trusted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from custody.errors import DatasetReadError
from custody.validators.dataset.compare import compare_datasets
from custody.validators.dataset.encode import hash_strings
from custody.validators.dataset.reference import (
    MAX_KEYS,
    read_reference,
    reference_digest,
)

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"
V1, V2 = SAMPLES / "dataset-v1.parquet", SAMPLES / "dataset-v2-poisoned.parquet"


def _rules(c) -> set[str]:  # type: ignore[no-untyped-def]
    return {f.rule_id for f in c.report.findings if f.rule_id.startswith(("poison.", "schema."))}


def test_the_reference_finds_what_the_baseline_file_finds() -> None:
    first = compare_datasets(V1, make_reference=True)
    assert first.reference is not None and first.profile is not None
    ref = read_reference(first.reference, reference_digest(first.reference))
    assert ref.rows == 3000 and ref.label == "label" and ref.id_column == "id"
    assert len(ref.arrays["row_hash"]) == 3000 and ref.key_share == 1.0
    by_file = compare_datasets(V2, V1)
    by_ref = compare_datasets(V2, None, baseline_profile=first.profile.to_json(),
                              baseline_reference=first.reference)
    assert _rules(by_ref) == _rules(by_file) >= {"poison.label_changed",
                                                  "poison.injected_cluster"}
    for rule in ("poison.label_changed", "poison.injected_cluster"):
        assert set(by_ref.rows[rule].tolist()) == set(by_file.rows[rule].tolist())
    assert by_ref.checks["poison.knn_disagreement"] == "ran"
    clean = compare_datasets(V1, None, baseline_profile=first.profile.to_json(),
                             baseline_reference=first.reference)
    assert _rules(clean) == set()


def test_reference_keys_are_bounded_and_selected_by_hash_value(tmp_path: Path) -> None:
    """Large versions keep the MAX_KEYS smallest hashes: a row repeated in the next version
    is selected there too."""
    import pyarrow.parquet as pq

    n = MAX_KEYS + 20_000
    rng = np.random.default_rng(5)
    table = pa.table({"x": rng.normal(size=n), "c": rng.choice(["a", "b"], size=n).tolist(),
                      "label": rng.integers(0, 2, size=n)})
    path = tmp_path / "big.parquet"
    pq.write_table(table, path)
    ref = read_reference(compare_datasets(path, make_reference=True).reference or b"")
    keys = ref.arrays["row_hash"]
    assert len(keys) == MAX_KEYS and ref.key_share == pytest.approx(MAX_KEYS / n)
    assert np.all(keys <= np.sort(keys)[-1])
    assert len(ref.arrays["sample"]) <= 20_000


def test_forged_reference_digest_is_refused() -> None:
    blob = compare_datasets(V1, make_reference=True).reference
    assert blob is not None
    other = compare_datasets(V2, make_reference=True).reference
    assert other is not None
    with pytest.raises(DatasetReadError, match="digest"):
        read_reference(other, reference_digest(blob))


@pytest.mark.parametrize("damage", ["truncated", "garbled_header", "not_a_reference",
                                    "array_out_of_bounds"])
def test_damaged_reference_fails_closed(damage: str) -> None:
    first = compare_datasets(V1, make_reference=True)
    blob = first.reference
    assert blob is not None and first.profile is not None
    if damage == "truncated":
        bad = blob[: len(blob) // 2]
    elif damage == "garbled_header":
        bad = blob[:40] + b"\xff" * 20 + blob[60:]
    elif damage == "not_a_reference":
        bad = b"PAR1" + blob[4:]
    else:
        bad = blob.replace(b'"offset":0', b'"offset":99999999', 1)
    with pytest.raises(DatasetReadError):
        read_reference(bad)
    c = compare_datasets(V2, None, baseline_profile=first.profile.to_json(),
                         baseline_reference=bad)
    assert c.report.errored
    assert c.report.findings[0].rule_id == "dataset.baseline_unreadable"


def test_string_hash_is_stable() -> None:
    """Part of the stored format: the same bytes hash alike across versions and encodings."""
    values = ["", "a", "abcdefgh", "abcdefghi", None, "ünïcode"]
    plain = hash_strings(pa.array(values))
    assert np.array_equal(plain, hash_strings(pa.array(values, type=pa.large_string())))
    assert np.array_equal(plain[1:], hash_strings(pa.array(values).slice(1)))
    assert len(set(plain.tolist())) == len(values)
    assert int(hash_strings(pa.array(["custody"]))[0]) == int(
        hash_strings(pa.array(["x", "custody"]))[1])


def test_a_scan_never_imports_pandas() -> None:
    """pyarrow's to_numpy, pa.array(ndarray) and empty_table import pandas (0.3 s, 40 MB)."""
    code = ("import sys; from pathlib import Path; "
            "from custody.validators.dataset.compare import compare_datasets; "
            f"c = compare_datasets(Path({str(V2)!r}), Path({str(V1)!r}), make_reference=True); "
            "print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"
