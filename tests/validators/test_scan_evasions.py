"""Issue 16: each open evasion and each false positive, by name, against the real scanner.

The corpus samples (``support.scan_corpus``) are generated at test time and never loaded; the
assertions name the rule a scan must report (or that it must stay clean).
"""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path

import pytest
from support import scan_corpus as corpus

from custody.validators.findings import Finding, ScanReport, Severity
from custody.validators.interface import ScanOptions
from custody.validators.models.content import scan_content
from custody.validators.models.context import Ctx
from custody.validators.scan import scan_files


def scan_bytes(data: bytes, options: ScanOptions | None = None) -> list[Finding]:
    return scan_content(io.BytesIO(data), len(data), Ctx.root(options or ScanOptions(), "f"))


def scan_sample(name: str, tmp: Path, registry: dict[str, object] | None = None) -> ScanReport:
    target = (registry or corpus.MALICIOUS)[name](tmp)  # type: ignore[operator]
    root = target if target.is_dir() else target.parent
    files = [(p, str(p.relative_to(root)), p.stat().st_size) for p in corpus.files_under(target)]
    return scan_files(str(target), files)


def rules(report: ScanReport) -> dict[str, Severity]:
    out: dict[str, Severity] = {}
    for f in report.findings:
        out[f.rule_id] = max(out.get(f.rule_id, Severity.INFO), f.severity)
    return out


@pytest.mark.parametrize(("name", "rule", "severity"), [
    ("joblib_lz4_reduce_after_inline_array", "pickle.global.dangerous", Severity.CRITICAL),
    ("torch_legacy_tar_v7_no_magic", "pickle.global.dangerous", Severity.CRITICAL),
    ("torch_legacy_tar_gnu_format", "pickle.global.dangerous", Severity.CRITICAL),
    ("keras_archive_with_foreign_prefix", "zip.prefixed", Severity.MEDIUM),
    ("keras_archive_with_foreign_prefix", "keras.module", Severity.CRITICAL),
    ("torchscript_code_reads_file_at_load", "torchscript.code", Severity.CRITICAL),
    ("torchscript_code_loads_library", "torchscript.code", Severity.CRITICAL),
    ("torch_storage_declares_more_than_its_data", "torch.storage_mismatch", Severity.HIGH),
    ("torch_tensor_view_past_its_storage", "torch.tensor_out_of_bounds", Severity.HIGH),
    ("safetensors_huge_header_length", "safetensors.header", Severity.HIGH),
    ("pickle_bytearray_allocation_bomb", "limit.allocation", Severity.HIGH),
    ("pickle_list_of_huge_range", "limit.allocation", Severity.HIGH),
    ("pickle_declared_bytes8_beyond_the_file", "limit.allocation", Severity.HIGH),
    ("pickle_memo_expansion_billion_laughs", "limit.expansion", Severity.HIGH),
    ("pickle_deeply_nested_tuples", "limit.pickle_depth", Severity.HIGH),
    ("npz_deflate_bomb", "limit.ratio", Severity.HIGH),
])
def test_evasion_is_refused_with_its_rule(name: str, rule: str, severity: Severity,
                                          tmp_path: Path) -> None:
    report = scan_sample(name, tmp_path)
    assert report.refused and rules(report).get(rule) == severity, report.to_json()


def test_lz4_joblib_content_is_read_not_waved_through(tmp_path: Path) -> None:
    report = scan_sample("joblib_lz4_reduce_after_inline_array", tmp_path)
    hit = next(f for f in report.findings if f.rule_id == "pickle.global.dangerous")
    assert "lz4-decompressed" in hit.location


def test_lz4_joblib_without_the_lz4_package_is_refused_not_passed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the lz4 package is missing (its import made to fail as it would), an lz4 joblib
    file, benign or not, cannot be read: that is a refusal (compressed.uninspected, high) that
    says so, never "clean"."""
    import sys

    import joblib

    benign = tmp_path / "benign.lz4.joblib"
    joblib.dump({"weights": list(range(100))}, benign, compress="lz4")  # while lz4 is there
    for module in ("lz4", "lz4.frame"):
        monkeypatch.setitem(sys.modules, module, None)
    (tmp_path / "m").mkdir()
    malicious = scan_sample("joblib_lz4_reduce_after_inline_array", tmp_path / "m")
    for report in (malicious, scan_files(str(benign), [(benign, benign.name,
                                                        benign.stat().st_size)])):
        hit = next(f for f in report.findings if f.rule_id == "compressed.uninspected")
        assert report.refused and hit.severity == Severity.HIGH, report.to_json()
        assert "lz4 package is not installed" in hit.message


@pytest.mark.parametrize("name", [
    "pandas_to_pickle_plain_gzip_bz2",
    "xgboost_lightgbm_sklearn_api_pickled_and_joblib",
    "sklearn_gradient_boosting_loss_helpers_gridsearch_functiontransformer",
    "uuid_and_array_array_protocol_2",
    "csv_text_starting_with_pickle_opcodes",
])
def test_former_false_positive_is_clean(name: str, tmp_path: Path) -> None:
    report = scan_sample(name, tmp_path, corpus.BENIGN)
    assert not report.refused, [f.to_json() for f in report.blocking()]


@pytest.mark.parametrize("text", [b"city\nParis\nRome\n", b"col\n1\n2\n", b"(a, b)\nok.\n",
                                  b"cat\ndog\n", b"]\nplain list text"])
def test_text_that_an_unpickler_rejects_before_calling_anything_is_not_a_pickle(
        text: bytes) -> None:
    assert scan_bytes(text) == []


def test_a_dangerous_lookup_in_text_is_still_reported() -> None:
    """Importing a dangerous module has effects of its own (``antigravity``, ``this``): a look-up
    of a denylisted global stays critical even when nothing is called after it."""
    found = {f.rule_id: f.severity for f in scan_bytes(b"cantigravity\nfly\n garbage")}
    assert found["pickle.global.dangerous"] is Severity.CRITICAL


def test_a_headerless_pickle_that_calls_before_it_breaks_is_still_one() -> None:
    """nullifAI: the call happens before the break, so the break does not make it text."""
    data = b"cos\nsystem\n(S'echo custody-harmless'\ntR" + b"\n garbage"
    found = {f.rule_id: f.severity for f in scan_bytes(data)}
    assert found["pickle.global.dangerous"] is Severity.CRITICAL
    assert found["pickle.malformed"] is Severity.HIGH


def test_uuid_is_not_vetoed_by_picklescan_but_both_views_are_kept() -> None:
    import uuid

    findings = scan_bytes(pickle.dumps(uuid.UUID(int=3), protocol=4))
    assert [(f.rule_id, f.severity) for f in findings] == [
        ("picklescan.disagrees", Severity.INFO)]
    evidence = findings[0].evidence
    assert evidence["picklescan"] == "dangerous" and "stdlib profile" in evidence["custody"]


def test_getattr_of_an_allowlisted_class_is_its_method_anything_else_is_critical() -> None:
    bound = b"\x80\x02cbuiltins\ngetattr\nczoneinfo\nZoneInfo\nX\x09\x00\x00\x00_unpickle\x86R."
    assert not [f for f in scan_bytes(bound) if f.severity >= Severity.MEDIUM]
    for attr in (b"__init__", b"fromkeys"):
        other = (b"\x80\x02cbuiltins\ngetattr\nccollections\nOrderedDict\nX"
                 + struct.pack("<I", len(attr)) + attr + b"\x86R.")
        worst = max(f.severity for f in scan_bytes(other))
        assert worst is Severity.CRITICAL, attr


def test_partial_is_judged_through_the_function_it_wraps() -> None:
    import functools
    import os

    import numpy as np

    assert not [f for f in scan_bytes(pickle.dumps(functools.partial(np.log1p)))
                if f.severity >= Severity.MEDIUM]
    evil = {f.rule_id: f.severity
            for f in scan_bytes(pickle.dumps(functools.partial(os.system, "echo x")))}
    assert evil["pickle.global.dangerous"] is Severity.CRITICAL


def test_a_checkpoint_with_100k_tensors_has_no_shape_findings(tmp_path: Path) -> None:
    """The expansion walk must not flag the sharing real checkpoints have (dtypes, storages)."""
    torch = pytest.importorskip("torch")
    path = tmp_path / "many.pt"
    torch.save({f"t{i}": torch.zeros(2) for i in range(20_000)}, path)
    report = scan_files("many.pt", [(path, "many.pt", path.stat().st_size)])
    assert report.findings == ()


def test_shared_tuples_that_stay_small_are_not_an_expansion_bomb() -> None:
    shared = tuple(range(10))
    data = pickle.dumps({i: (shared, shared) for i in range(200)}, protocol=4)
    assert scan_bytes(data) == []


def test_keras_archive_behind_a_shell_script_is_scanned(tmp_path: Path) -> None:
    """Text in front of a zip: the file starts as text, but zipfile (and Keras) open the zip."""
    evil = {"module": "os", "class_name": "system", "registered_name": None, "config": "id"}
    path = tmp_path / "model.keras"
    path.write_bytes(b"#!/bin/sh\necho hello\n" + corpus._keras_zip([corpus._dense("d"), evil]))
    report = scan_files("model.keras", [(path, "model.keras", path.stat().st_size)])
    assert rules(report).get("keras.module") is Severity.CRITICAL, report.to_json()
    assert "zip.prefixed" in rules(report)
