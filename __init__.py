"""Custody: integrity and provenance for machine-learning datasets and model files.

The flow is hash → scan → sign → record → verify. The public API is this module's ``__all__``;
everything under ``custody.provenance``, ``custody.validators`` and ``custody.signing`` is
internal and may change between releases.

- :func:`hash_path` computes an artifact's manifest (per-file SHA-256, root digest) and
  :func:`scan_path` scans it without loading it (a :class:`ScanReport` of :class:`Finding`);
- :func:`record` hashes, scans, signs and appends an artifact version to the ledger;
- :func:`verify` re-hashes a path and checks its record, signature and upstream chain against a
  :class:`Policy` (or a policy file), returning a :class:`VerificationReport` or raising
  :class:`VerificationError`;
- :func:`open_verified` returns a read-only file object over exactly the bytes it verified;
  :func:`load_torch` and :func:`read_parquet` hand those bytes to PyTorch and pyarrow;
- :func:`open_workspace` and :func:`open_ledger` find the workspace and its ledger as the CLI
  does (a :class:`Ledger` is a context manager);
- the exceptions are all subclasses of :class:`CustodyError` (``custody.errors`` has the rest):
  the public API raises nothing else for bad input (files, policies, ledgers, unloadable bytes).

Each call finds the ledger as the CLI does (``ledger=`` a URL or path, else ``$CUSTODY_LEDGER``,
else the nearest ``.custody/`` upward) and checks inclusion with the workspace's pinned key.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from custody.domain import Activity, Kind
from custody.errors import (
    CustodyError,
    LoadError,
    RefusedError,
    ScanRefusedError,
    VerificationError,
)

__version__ = "0.1.0"

__all__ = [
    "Activity",
    "CustodyError",
    "DatasetOptions",
    "Finding",
    "Kind",
    "Ledger",
    "LoadError",
    "Manifest",
    "Policy",
    "RecordResult",
    "RefusedError",
    "ScanOptions",
    "ScanRefusedError",
    "ScanReport",
    "Severity",
    "Verdict",
    "VerificationError",
    "VerificationReport",
    "Workspace",
    "__version__",
    "hash_path",
    "load_torch",
    "open_ledger",
    "open_verified",
    "open_workspace",
    "read_parquet",
    "record",
    "scan_path",
    "verify",
]

if TYPE_CHECKING:
    from custody.provenance.hashing.manifest import Manifest
    from custody.provenance.ledger.store import Ledger
    from custody.provenance.policy.core import Policy
    from custody.provenance.recording.api import record
    from custody.provenance.recording.record import RecordResult
    from custody.provenance.scanning.step import DatasetOptions
    from custody.provenance.verification.safe_load import load_torch, open_verified, read_parquet
    from custody.provenance.verification.verify import VerificationReport, verify
    from custody.provenance.workspace import Workspace
    from custody.validators.findings import Finding, ScanReport, Severity, Verdict
    from custody.validators.interface import ScanOptions

_LAZY = {
    "Manifest": "custody.provenance.hashing.manifest",
    "Ledger": "custody.provenance.ledger.store",
    "Policy": "custody.provenance.policy.core",
    "record": "custody.provenance.recording.api",
    "RecordResult": "custody.provenance.recording.record",
    "DatasetOptions": "custody.provenance.scanning.step",
    "open_verified": "custody.provenance.verification.safe_load",
    "load_torch": "custody.provenance.verification.safe_load",
    "read_parquet": "custody.provenance.verification.safe_load",
    "verify": "custody.provenance.verification.verify",
    "VerificationReport": "custody.provenance.verification.verify",
    "Workspace": "custody.provenance.workspace",
    "Finding": "custody.validators.findings",
    "ScanReport": "custody.validators.findings",
    "Severity": "custody.validators.findings",
    "Verdict": "custody.validators.findings",
    "ScanOptions": "custody.validators.interface",
}


def open_workspace(ledger: str | Path | None = None, *,
                   start: str | Path | None = None) -> Workspace:
    """The workspace the CLI would use: ``ledger`` (a URL, a path, a workspace folder), else
    ``$CUSTODY_LEDGER``, else the nearest ``.custody/`` at or above ``start`` (default: here)."""
    from custody.provenance.workspace import resolve

    return resolve(str(ledger) if ledger is not None else None,
                   start=Path(start) if start is not None else None)


def open_ledger(ledger: str | Path | None = None, *, append: bool = False) -> Ledger:
    """Open the ledger of :func:`open_workspace` (``append=True`` loads the ledger key to sign
    checkpoints). Use it as a context manager: ``with custody.open_ledger() as ledger: ...``."""
    return open_workspace(ledger).open_ledger(append=append)


def hash_path(path: str | Path, *, allow_symlinks: bool = False) -> Manifest:
    """The manifest of a file or directory: each file's relpath, size and SHA-256, and the root
    digest (``sha256`` of a file, ``sha256-manifest-v1`` of a directory). ``path`` may be an
    object-store URI (``s3://bucket/prefix``, ``file://``, ...): the same manifest as of the
    downloaded bytes, read once."""
    from custody.provenance.hashing.files import hash_path as hash_files
    from custody.provenance.hashing.locations import is_uri

    if isinstance(path, str) and is_uri(path):
        from custody.provenance.hashing.objects import hash_uri

        return hash_uri(path).manifest
    return hash_files(Path(path), allow_symlinks=allow_symlinks)


def scan_path(path: str | Path, *, threshold: Severity | str | None = None,
              policy: Policy | str | Path | None = None,
              allow_symlinks: bool = False) -> ScanReport:
    """Scan a file or directory without loading it. The threshold is ``threshold``, else the
    policy's, else medium; ``policy`` (a Policy or a policy file) adds its allowed pickle
    globals. Never raises for what it finds: the report's ``verdict`` and ``exit_code`` say."""
    from custody.provenance.policy.core import Policy
    from custody.provenance.policy.file import load_policy
    from custody.provenance.scanning.step import scan_path as scan
    from custody.provenance.verification.policy_options import parse_threshold
    from custody.validators.findings import Severity
    from custody.validators.interface import ScanOptions

    options, level = ScanOptions(), Severity.MEDIUM
    if policy is not None:
        loaded = policy if isinstance(policy, Policy) else load_policy(Path(policy))
        options, level = ScanOptions(extra_safe_globals=loaded.extra_safe_globals,
                                     pickle_profiles=loaded.pickle_profiles), \
            loaded.scan_threshold
    if threshold is not None:
        level = parse_threshold(threshold) if isinstance(threshold, str) else threshold
    return scan(Path(path), threshold=level, options=options, allow_symlinks=allow_symlinks)


def __getattr__(name: str) -> Any:
    # Lazy: ``import custody`` (and so ``custody --help``) stays cheap.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'custody' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
