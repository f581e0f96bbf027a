"""Safe loading: hand a framework exactly the bytes that were verified.

``open_verified`` copies the artifact into a private, unnamed temporary file while hashing it
(one read of the source), verifies that digest against the ledger and the policy, scans the copy,
and returns a read-only file object over the copy. The source path is never read again, so a file
swapped or modified after (or during) verification is never served: either the bytes hashed are
the bytes returned, or verification fails.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from custody.errors import LoadError, UsageError
from custody.provenance.hashing.files import iter_files, sha256_file
from custody.provenance.hashing.manifest import FileEntry, Manifest
from custody.provenance.policy.core import Policy
from custody.provenance.verification.verify import (
    VerificationReport,
    as_policy,
    open_ledger,
    verify_manifest,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from custody.provenance.ledger.store import Ledger
    from custody.provenance.log.checkpoint import NoteVerifier


class VerifiedFile(io.BufferedReader):
    """A read-only binary file over verified bytes; ``report`` says what was verified."""

    report: VerificationReport

    def writable(self) -> bool:
        return False


def open_verified(
    path: str | Path,
    policy: Policy | str | Path,
    *,
    ledger: Ledger | str | None = None,
    name: str | None = None,
    ledger_verifier: NoteVerifier | None = None,
) -> VerifiedFile:
    """Verify one file and return a read-only file object over exactly the verified bytes.

    ``policy`` is a :class:`Policy` or a policy file path; ``ledger`` a Ledger, a ledger URL, or
    None for the workspace found from the working directory. Raises
    :class:`~custody.errors.VerificationError` (or another CustodyError) instead of returning.
    """
    source = Path(path)
    if source.is_dir():
        raise UsageError(f"{source} is a directory; open_verified serves one file",
                         hint="use custody.read_parquet for dataset directories")
    trusted = as_policy(policy)
    copy = tempfile.TemporaryFile(prefix="custody-verified-")  # noqa: SIM115 - handed back
    try:
        size, digest = sha256_file(source, follow=True, sink=copy.write)
        copy.flush()
        manifest = Manifest.for_file(source.name, FileEntry(source.name, size, digest))
        scan_root = Path(f"/proc/self/fd/{copy.fileno()}")
        with open_ledger(ledger) as (opened, pinned):
            report = verify_manifest(source, scan_root, manifest, trusted, ledger=opened,
                                     name=name, ledger_verifier=ledger_verifier or pinned)
        fd = os.dup(copy.fileno())
    finally:
        copy.close()
    raw = io.FileIO(fd, "rb", closefd=True)
    raw.seek(0)
    handle = VerifiedFile(raw)
    handle.report = report
    return handle


@contextmanager
def _verified_directory(
    path: str | Path,
    policy: Policy | str | Path,
    *,
    ledger: Ledger | str | None = None,
    name: str | None = None,
) -> Iterator[tuple[Path, VerificationReport]]:
    """Copy a directory artifact into a private folder while hashing it, verify the copy,
    and yield the folder (removed afterwards)."""
    source = Path(path)
    trusted = as_policy(policy)
    private = Path(tempfile.mkdtemp(prefix="custody-verified-"))
    try:
        entries = []
        for file, rel in iter_files(source):
            target = private / rel
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with target.open("wb") as out:
                size, digest = sha256_file(file, sink=out.write)
            entries.append(FileEntry(rel, size, digest))
        manifest = Manifest.for_directory(source.name, entries)
        with open_ledger(ledger) as (opened, pinned):
            report = verify_manifest(source, private, manifest, trusted, ledger=opened,
                                     name=name, ledger_verifier=pinned)
        yield private, report
    finally:
        shutil.rmtree(private, ignore_errors=True)


def read_parquet(path: str | Path, policy: Policy | str | Path, *,
                 ledger: Ledger | str | None = None, name: str | None = None,
                 **read_options: Any) -> pa.Table:
    """Verify a dataset (a Parquet file or a directory of them) and read it into a Table.

    Verified bytes that pyarrow cannot read as Parquet raise :class:`~custody.errors.LoadError`.
    """
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError("custody.read_parquet needs pyarrow",
                         hint="pip install pyarrow") from None

    source = Path(path)

    def read(where: Any) -> pa.Table:
        try:
            return pq.read_table(where, **read_options)
        except (pa.ArrowException, OSError) as exc:  # ArrowInvalid, ArrowIOError, ...
            raise LoadError(
                f"{source} is verified but pyarrow cannot read it as Parquet: "
                f"{_first_line(exc)}",
                hint="read_parquet loads Parquet files or directories of them; open other "
                "formats with custody.open_verified",
                subject=str(source)) from None

    if source.is_dir():
        with _verified_directory(source, policy, ledger=ledger, name=name) as (folder, _):
            return read(folder)
    with open_verified(source, policy, ledger=ledger, name=name) as handle:
        return read(handle)


def load_torch(path: str | Path, policy: Policy | str | Path, *,
               ledger: Ledger | str | None = None, name: str | None = None,
               **load_options: Any) -> Any:
    """Verify a PyTorch checkpoint, then ``torch.load`` it with ``weights_only=True``.

    A checkpoint that holds more than weights (a whole ``nn.Module`` saved with
    ``torch.save(model)``), or that is no PyTorch file at all, raises
    :class:`~custody.errors.LoadError`: it is never unpickled with ``weights_only=False``.
    """
    if load_options.pop("weights_only", True) is not True:
        raise UsageError("custody.load_torch always loads with weights_only=True",
                         hint="save and record model.state_dict() instead of the whole model")
    try:
        import torch
    except ImportError:
        raise UsageError("custody.load_torch needs PyTorch", hint="pip install torch") from None
    import pickle

    with open_verified(path, policy, ledger=ledger, name=name) as handle:
        buffer: IO[bytes] = handle
        try:
            return torch.load(buffer, weights_only=True, **load_options)
        except pickle.UnpicklingError as exc:
            if "Unsupported global" not in str(exc):  # not a pickle of weights at all
                raise LoadError(
                    f"{path} is verified but torch.load cannot read it: {_first_line(exc)}",
                    hint="load_torch loads files written by torch.save; open other formats "
                    "with custody.open_verified", subject=str(path)) from None
            raise LoadError(
                f"{path} is verified but holds objects that weights_only loading refuses: "
                f"{_first_line(exc)}",
                hint="save the weights with torch.save(model.state_dict(), PATH), record "
                "that file, and rebuild the module in code before load_state_dict",
                subject=str(path)) from None
        except (RuntimeError, EOFError, ValueError, OSError) as exc:  # not a torch file
            raise LoadError(
                f"{path} is verified but torch.load cannot read it: {_first_line(exc)}",
                hint="load_torch loads files written by torch.save; open other formats with "
                "custody.open_verified", subject=str(path)) from None


def _first_line(exc: BaseException) -> str:
    """The line of an exception's message that says what failed (torch puts it last)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for at, line in enumerate(lines):
        if "Unsupported global" in line:
            return line
        if line.endswith("WeightsUnpickler error:") and at + 1 < len(lines):
            return lines[at + 1]  # torch puts the reason on the next line
    return lines[0] if lines else type(exc).__name__
