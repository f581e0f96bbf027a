"""Every malicious corpus sample is flagged; no benign file written by a real library is."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from custody.validators.findings import ScanReport, Severity
from custody.validators.scan import scan_files

pytest.importorskip("torch")
pytest.importorskip("sklearn")


def _load_corpus() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "support" / "scan_corpus.py"
    spec = importlib.util.spec_from_file_location("custody_scan_corpus", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


corpus = _load_corpus()


def scan_sample(make: object, tmp: Path) -> ScanReport:
    target = make(tmp)  # type: ignore[operator]
    root = target if target.is_dir() else target.parent
    files = [(p, str(p.relative_to(root)), p.stat().st_size) for p in corpus.files_under(target)]
    return scan_files(str(target), files)


def test_corpus_is_big_enough() -> None:
    assert len(corpus.MALICIOUS) >= 40
    assert len(corpus.BENIGN) >= 25


@pytest.mark.parametrize("name", sorted(corpus.MALICIOUS))
def test_malicious_sample_is_flagged(name: str, tmp_path: Path) -> None:
    report = scan_sample(corpus.MALICIOUS[name], tmp_path)
    assert report.refused, (name, report.to_json())
    # The reason is a real detection, not a crash of the scanner.
    assert not any(f.rule_id == "scanner.crashed" for f in report.findings), report.to_json()


@pytest.mark.parametrize("name", sorted(corpus.BENIGN))
def test_benign_file_is_clean(name: str, tmp_path: Path) -> None:
    report = scan_sample(corpus.BENIGN[name], tmp_path)
    assert not report.refused, (name, [f.to_json() for f in report.blocking()])


@pytest.mark.parametrize(
    "name",
    [
        "os_system_protocol_0",
        "os_system_protocol_4",
        "CVE-2025-1716_pip_main",
        "CVE-2025-10157_asyncio_submodule",
        "modelscan_bypass_memo_stack_global",
        "modelscan_bypass_dup_and_memoize",
        "modelscan_bypass_string_opcodes_stack_global",
        "fickling_bypass_inst_opcode",
        "fickling_bypass_obj_opcode",
        "fickling_bypass_newobj_ex",
        "CVE-2025-1889_hidden_pickle_odd_extension",
        "CVE-2025-1944_zip_local_name_mismatch",
        "CVE-2025-1945_zip_flag_bits",
        "CVE-2025-10156_zip_bad_crc",
        "nullifAI_broken_pickle",
        "torch_legacy_stacked_pickles",
        "torch_legacy_tar_format",
        "nested_pickle_loads_payload",
        "joblib_xz_reduce_after_inline_array",
        "numpy_npz_object_member",
        "nested_zip_in_zip",
    ],
)
def test_code_execution_samples_are_critical(name: str, tmp_path: Path) -> None:
    report = scan_sample(corpus.MALICIOUS[name], tmp_path)
    assert report.max_severity is Severity.CRITICAL, report.to_json()


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("CVE-2025-1944_zip_local_name_mismatch", "zip.anomaly"),
        ("CVE-2025-1945_zip_flag_bits", "zip.anomaly"),
        ("CVE-2025-10156_zip_bad_crc", "zip.bad_crc"),
        ("nullifAI_broken_pickle", "pickle.malformed"),
        ("nullifAI_7z_compressed_pickle", "archive.7z_uninspected"),
        ("copyreg_extension_opcode", "pickle.global.extension"),
        ("fickling_bypass_build_setstate_global", "pickle.build.global"),
        ("CVE-2024-3660_keras_lambda_layer", "keras.lambda"),
        ("keras_h5_lambda_layer", "keras.lambda"),
        ("CVE-2025-1550_keras_config_arbitrary_module", "keras.module"),
        ("gguf_chat_template_injection", "gguf.chat_template"),
        ("onnx_external_data_path_traversal", "onnx.external_data_escape"),
        ("pickle_zip_polyglot", "format.polyglot"),
        ("unknown_callable_default_deny", "pickle.global.unknown"),
    ],
)
def test_evasions_are_named(name: str, rule: str, tmp_path: Path) -> None:
    report = scan_sample(corpus.MALICIOUS[name], tmp_path)
    assert rule in {f.rule_id for f in report.findings}, report.to_json()
