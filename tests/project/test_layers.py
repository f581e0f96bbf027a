"""The layers of pyproject.toml's import-linter contracts hold, and a planted violation is caught.

``lint-imports`` builds the import graph of the installed ``custody`` package (the repository root)
including imports inside functions, so a cycle hidden by a local import breaks the contract too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCE_DIRS = ("provenance", "signing", "validators", "_commands")


def lint_imports(root: Path | None, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run import-linter with ``cwd/pyproject.toml``; ``root/custody`` is the package analysed
    (else the installed one, which is this repository)."""
    env = dict(os.environ)
    if root is not None:
        env["PYTHONPATH"] = str(root)
    script = ("import sys; from importlinter.cli import lint_imports_command; "
              "sys.argv = ['lint-imports', '--no-cache', '--config', 'pyproject.toml']; "
              "lint_imports_command()")
    return subprocess.run([sys.executable, "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, check=False)


def planted_copy(tmp_path: Path) -> Path:
    """A copy of the package (sources only) under ``tmp_path/custody``."""
    pkg = tmp_path / "custody"
    pkg.mkdir()
    for src in REPO.iterdir():
        if src.is_file() and src.suffix in (".py", ".toml"):
            shutil.copy2(src, pkg / src.name)
    for folder in SOURCE_DIRS:
        shutil.copytree(REPO / folder, pkg / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return pkg


def test_the_layer_contracts_hold() -> None:
    run = lint_imports(None, REPO)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout, run.stdout


def test_the_copy_used_below_is_clean(tmp_path: Path) -> None:
    pkg = planted_copy(tmp_path)
    run = lint_imports(tmp_path, pkg)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize(("module", "planted", "contract"), [
    ("signing/keys.py", "from custody.provenance.ledger import store as _store  # planted\n",
     "signing and validators never import it"),
    ("validators/findings.py", "import custody.cli as _cli  # planted\n",
     "signing and validators never import it"),
    ("provenance/service/tokens.py", "from custody._commands import common as _c  # planted\n",
     "signing and validators never import it"),
    ("provenance/verification/chain.py",
     "def _planted() -> None:\n    from custody.provenance.recording import record  # noqa\n",
     "the service over all of it"),
    ("provenance/log/merkle.py",
     "def _planted() -> None:\n    from custody.provenance.ledger import store  # noqa\n",
     "the service over all of it"),
])
def test_a_planted_upward_import_breaks_a_contract(tmp_path: Path, module: str, planted: str,
                                                   contract: str) -> None:
    pkg = planted_copy(tmp_path)
    target = pkg / module
    target.write_text(target.read_text(encoding="utf-8") + "\n\n" + planted, encoding="utf-8")
    run = lint_imports(tmp_path, pkg)
    assert run.returncode != 0, run.stdout
    assert f"{contract} BROKEN" in " ".join(run.stdout.split()), run.stdout


def test_a_planted_cycle_between_siblings_breaks_the_acyclic_contract(tmp_path: Path) -> None:
    pkg = planted_copy(tmp_path)
    target = pkg / "validators" / "dataset" / "profile.py"
    target.write_text(target.read_text(encoding="utf-8") + "\n\ndef _planted() -> None:\n"
                      "    from custody.validators.dataset import schema  # noqa: F401\n",
                      encoding="utf-8")
    run = lint_imports(tmp_path, pkg)
    assert run.returncode != 0, run.stdout
    assert "no import cycles between sibling modules BROKEN" in " ".join(run.stdout.split())
