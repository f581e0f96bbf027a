"""A model repository of many shards scanned on an executor gives the local report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from support.scan_corpus import BENIGN, MALICIOUS

from custody.provenance.execution.dask_engine import DaskExecutor
from custody.provenance.execution.local import LocalExecutor
from custody.provenance.hashing.files import hash_path
from custody.provenance.scanning.step import scan_manifest, scan_path
from custody.validators.findings import Severity, Verdict

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository: benign weights in several formats, pickled shards, a few malicious
    files among them, an empty file and a README."""
    root = tmp_path_factory.mktemp("models") / "repo"
    work = tmp_path_factory.mktemp("corpus")
    (root / "weights").mkdir(parents=True)
    for name in ("numpy_npy_float", "numpy_npz_and_compressed", "plain_python_data_all_protocols",
                 "joblib_numpy_arrays_inline", "csv_text_starting_with_pickle_opcodes"):
        (work / name).mkdir()
        made = BENIGN[name](work / name)
        for n, file in enumerate(sorted(made.rglob("*")) if made.is_dir() else [made]):
            if file.is_file():
                shutil.copy(file, root / "weights" / f"{name}-{n}{file.suffix}")
    for n in range(6):
        shutil.copy(REPO / "sample_data" / "model.pkl", root / "weights" / f"shard-{n:05d}.pkl")
    for name in ("os_system_protocol_2", "CVE-2025-1716_pip_main",
                 "picklescan_ghsa_numpy_f2py_myeval"):
        (work / name).mkdir()
        made = MALICIOUS[name](work / name)
        shutil.copy(made, root / "weights" / f"evil-{name}.bin")
    (root / "README.md").write_text("# a model\n")
    (root / "empty").write_bytes(b"")
    return root


def _report(report: object) -> str:
    return json.dumps(report.to_json(), sort_keys=True)  # type: ignore[attr-defined]


def test_dask_scan_report_equals_the_local_one(repository: Path, cluster: str) -> None:
    manifest = hash_path(repository)
    local = scan_manifest(repository, manifest, threshold=Severity.MEDIUM)
    assert local.verdict is Verdict.FLAGGED  # the malicious files are found at all
    assert {f.path for f in local.findings if f.severity >= Severity.HIGH} >= {
        "weights/evil-os_system_protocol_2.bin"}
    with DaskExecutor("tcp://" + cluster.split("://", 1)[1]) as engine:
        remote = scan_manifest(repository, manifest, threshold=Severity.MEDIUM, executor=engine)
    assert remote == local
    assert _report(remote) == _report(local)


def test_local_process_executor_scan_equals_the_plain_one(repository: Path) -> None:
    plain = scan_path(repository, threshold=Severity.HIGH)
    with LocalExecutor(2) as engine:
        assert scan_path(repository, threshold=Severity.HIGH, executor=engine) == plain


def test_cli_scan_on_the_cluster_prints_the_local_report(cli, repository: Path,  # type: ignore[no-untyped-def]
                                                         cluster: str) -> None:
    local = cli("scan", repository, "--json")
    remote = cli("scan", repository, "--json", "--executor", cluster)
    assert local.code == remote.code == 1
    assert remote.json() == local.json()
