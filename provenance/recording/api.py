"""``custody.record`` as a library call: the ledger and signing key found the way the CLI finds
them, so ``custody.record(path, name=..., kind=...)`` works inside a workspace as written."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from custody.errors import UsageError

if TYPE_CHECKING:
    from custody.provenance.ledger.store import Ledger
    from custody.provenance.recording.record import RecordResult
    from custody.provenance.scanning.step import DatasetOptions
    from custody.signing.interface import Signer
    from custody.validators.findings import Severity
    from custody.validators.interface import ScanOptions


def record(
    path: str | Path,
    *,
    name: str,
    kind: str,
    inputs: Sequence[str] = (),
    activity: str = "trained_on",
    ledger: Ledger | str | Path | None = None,
    signer: Signer | str | Path | None = None,
    threshold: Severity | str | None = None,
    allow_flagged: bool = False,
    allow_symlinks: bool = False,
    oms: bool = True,
    dataset: DatasetOptions | None = None,
    scan_options: ScanOptions | None = None,
) -> RecordResult:
    """Hash, scan, sign and append ``path`` as the next version of ``name``.

    ``inputs`` are references (``NAME@VERSION``, ``NAME``, ``sha256:HEX``) it was made from,
    all with ``activity``. ``ledger`` is an open :class:`Ledger` (opened with its ledger key),
    a ledger URL or path, or None for the ledger the CLI would use (``$CUSTODY_LEDGER``, else
    the nearest ``.custody/`` upward). ``signer`` is a Signer, the path of an EC private key,
    or None for the workspace's signing key. Raises a CustodyError (``ScanRefusedError`` when
    the scan refuses it) before anything is written.

    ``path`` may be an object-store URI (``s3://bucket/prefix``, ``file://``, ...). The scan
    honours the workspace policy's ``[pickle]`` profiles and ``allow_globals`` exactly as
    ``custody record`` does (the nearest ``.custody/`` workspace when ``ledger`` is an open
    Ledger); ``scan_options`` replaces them.
    """
    from custody import __version__
    from custody.provenance.ledger.store import Ledger
    from custody.provenance.recording.record import record as record_path
    from custody.provenance.workspace import find_home, load_workspace, resolve

    level = _threshold(threshold)
    target = path if isinstance(path, Path) else _local_or_uri(path)
    if isinstance(ledger, Ledger):
        if scan_options is None:
            home = find_home()
            scan_options = (load_workspace(home).scan_options() if home is not None
                            else None)
        return record_path(target, name=name, kind=kind, ledger=ledger,
                           signer=_signer(signer, None), inputs=inputs, activity=activity,
                           threshold=level, allow_flagged=allow_flagged,
                           allow_symlinks=allow_symlinks, oms=oms, dataset=dataset,
                           tool_version=__version__, scan_options=scan_options)
    workspace = resolve(str(ledger) if ledger is not None else None)
    chosen = _signer(signer, workspace.signing_key)
    options = scan_options if scan_options is not None else workspace.scan_options()
    opened = workspace.open_ledger(append=True)
    try:
        return record_path(target, name=name, kind=kind, ledger=opened, signer=chosen,
                           inputs=inputs, activity=activity, threshold=level,
                           allow_flagged=allow_flagged, allow_symlinks=allow_symlinks,
                           oms=oms, dataset=dataset, tool_version=__version__,
                           scan_options=options)
    finally:
        opened.close()


def _local_or_uri(path: str) -> Path | str:
    """A URI stays a string (``Path`` would fold its ``//``); anything else is a path."""
    from custody.provenance.hashing.locations import is_uri

    return path if is_uri(path) else Path(path)


def _signer(signer: Signer | str | Path | None, default: Path | None) -> Signer:
    if signer is not None and not isinstance(signer, (str, Path)):
        return signer
    key = Path(signer) if signer is not None else default
    if key is None:
        raise UsageError("no signing key for custody.record",
                         hint="pass signer= (a Signer or an EC private key file), or run "
                         "inside a workspace made by `custody init`")
    from custody.signing.key_signer import ECKeySigner
    from custody.signing.keys import load_private_key

    return ECKeySigner(load_private_key(key))


def _threshold(threshold: Severity | str | None) -> Severity | None:
    from custody.validators.findings import Severity

    if threshold is None or isinstance(threshold, Severity):
        return threshold
    try:
        return Severity.parse(threshold)
    except ValueError as exc:
        raise UsageError(str(exc), hint="one of: info, low, medium, high, critical") from None
