"""Custody: integrity and provenance for machine-learning datasets and model files.

The flow is hash → scan → sign → record → verify. The public API is small:

- :func:`record` hashes, scans, signs and appends an artifact version to the ledger;
- :func:`verify` re-hashes a path and checks its record, signature and upstream chain against a
  :class:`Policy`, returning a report or raising :class:`VerificationError`;
- :mod:`custody.errors` holds the exceptions, all subclasses of :class:`CustodyError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from custody.errors import (
    CustodyError,
    RefusedError,
    ScanRefusedError,
    VerificationError,
)

__version__ = "0.1.0"

__all__ = [
    "CustodyError",
    "Policy",
    "RefusedError",
    "ScanRefusedError",
    "VerificationError",
    "__version__",
    "record",
    "verify",
]

if TYPE_CHECKING:
    from custody.provenance.policy import Policy
    from custody.provenance.record import record
    from custody.provenance.verify import verify


def __getattr__(name: str) -> Any:
    # Lazy: ``import custody`` (and so ``custody --help``) stays cheap.
    if name == "record":
        from custody.provenance.record import record

        return record
    if name == "verify":
        from custody.provenance.verify import verify

        return verify
    if name == "Policy":
        from custody.provenance.policy import Policy

        return Policy
    raise AttributeError(f"module 'custody' has no attribute {name!r}")
