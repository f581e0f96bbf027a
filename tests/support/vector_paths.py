"""Where the vendored test vectors live: ``tests/vectors/`` (sources and licences in its README.md).

The one place that names the folder. Test modules load this file with importlib (like
``ledger_helpers``) and call :func:`vector_folder` at import time, so a missing or emptied folder
is a collection error that fails the run; it never turns into a skip or an empty parametrisation.
"""

from __future__ import annotations

from pathlib import Path

VECTORS = Path(__file__).resolve().parents[1] / "vectors"


def vector_folder(name: str) -> Path:
    """``tests/vectors/<name>``, asserted to exist and to hold files."""
    path = VECTORS / name
    assert path.is_dir(), (
        f"test vectors missing: {path}. They are part of the repository (tests/vectors/); "
        "restore them with `git checkout` rather than skipping the tests."
    )
    assert any(p.is_file() for p in path.rglob("*")), f"test vector folder is empty: {path}"
    return path
