"""Custody: integrity and provenance for machine-learning datasets and model files.

The flow is hash → scan → sign → record → verify. The public API is small:

- :func:`record` hashes, scans, signs and appends an artifact version to the ledger;
- :func:`verify` re-hashes a path and checks its record, signature and upstream chain against a
  :class:`Policy` (or a policy file), returning a report or raising :class:`VerificationError`;
- :func:`open_verified` returns a read-only file object over exactly the bytes it verified;
  :func:`load_torch` and :func:`read_parquet` hand those bytes to PyTorch and pyarrow;
- :mod:`custody.errors` holds the exceptions, all subclasses of :class:`CustodyError`: the
  public API raises nothing else for bad input (files, policies, ledgers, unloadable bytes).

Each call finds the ledger as the CLI does (``ledger=`` a URL or path, else ``$CUSTODY_LEDGER``,
else the nearest ``.custody/`` upward) and checks inclusion with the workspace's pinned key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from custody.errors import (
    CustodyError,
    LoadError,
    RefusedError,
    ScanRefusedError,
    VerificationError,
)

__version__ = "0.1.0"

__all__ = [
    "CustodyError",
    "LoadError",
    "Policy",
    "RefusedError",
    "ScanRefusedError",
    "VerificationError",
    "__version__",
    "load_torch",
    "open_verified",
    "read_parquet",
    "record",
    "verify",
]

if TYPE_CHECKING:
    from custody.provenance.policy.core import Policy
    from custody.provenance.recording.api import record
    from custody.provenance.verification.safe_load import load_torch, open_verified, read_parquet
    from custody.provenance.verification.verify import verify

_LAZY = {
    "record": "custody.provenance.recording.api",
    "verify": "custody.provenance.verification.verify",
    "Policy": "custody.provenance.policy.core",
    "open_verified": "custody.provenance.verification.safe_load",
    "load_torch": "custody.provenance.verification.safe_load",
    "read_parquet": "custody.provenance.verification.safe_load",
}


def __getattr__(name: str) -> Any:
    # Lazy: ``import custody`` (and so ``custody --help``) stays cheap.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'custody' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
