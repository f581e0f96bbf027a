"""Packaging: the wheel holds only the ``custody`` namespace and works without the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_IGNORE = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__",
                                 ".custody", ".mypy_cache", ".ruff_cache", ".pytest_cache",
                                 ".hypothesis", "tests", "benchmarks")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    shutil.copytree(REPO, src, ignore=_IGNORE)
    out = work / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(src)],
        check=False, capture_output=True, text=True,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (found,) = out.glob("custody-*.whl")
    return found


def test_wheel_contains_only_the_custody_namespace(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == {"custody", next(t for t in tops if t.endswith(".dist-info"))}
    for generic in ("validators", "signing", "provenance", "cli.py", "tests", "sample_data"):
        assert generic not in tops
    assert "custody/cli.py" in names
    assert "custody/py.typed" in names
    assert "custody/sample_data/dataset-v1.parquet" in names
    assert "custody/sample_data/model.pkl" in names
    assert not any(n.startswith("custody/tests/") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "custody = custody.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_quickstart_runs_from_the_installed_wheel(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    work = tmp_path / "empty-folder"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("CUSTODY_LEDGER", None)
    probe = subprocess.run(
        [sys.executable, "-c", "import custody; print(custody.__file__)"],
        cwd=work, env=env, capture_output=True, text=True, check=True,
    )
    assert probe.stdout.strip().startswith(str(site))
    run = subprocess.run(
        [sys.executable, "-m", "custody.cli", "quickstart"],
        cwd=work, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "quickstart complete" in run.stderr
    assert (work / ".custody" / "ledger.db").is_file()
