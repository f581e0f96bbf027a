"""The scan step, in one place: what ``record``, ``verify`` and ``custody scan`` run.

Every file of the artifact goes through the model-file scanners (:mod:`custody.validators.scan`);
a dataset is also compared with its baseline (:mod:`custody.provenance.scanning.datasets`). The
result is one :class:`ScanReport` plus, for datasets, the assessment whose claims are signed.

An artifact read from an object store is scanned on its private copy, the bytes that were hashed
(:func:`scan_objects`; :func:`custody.provenance.hashing.objects.fetch_private` made it while
hashing), never on a second download; the report names the URI.

With an ``executor`` (:mod:`custody.provenance.execution`), the files are split into shards of
balanced bytes and scanned by workers (processes locally: scanning is CPU-bound), each opening
its files by path; the findings are put back in the files' order, so the report equals the local
one. On a cluster the paths must be on a file system the workers share (docs/scaling.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from custody.provenance.hashing.files import iter_files
from custody.provenance.scanning.datasets import DatasetAssessment, assess_dataset, merge
from custody.validators.findings import ScanReport
from custody.validators.scan import scan_files

if TYPE_CHECKING:
    from custody.provenance.execution.interface import Executor
    from custody.provenance.hashing.manifest import Manifest
    from custody.provenance.hashing.objects import ObjectManifest
    from custody.provenance.ledger.store import Ledger
    from custody.validators.findings import Finding, Severity
    from custody.validators.interface import ScanOptions


@dataclass(frozen=True)
class DatasetOptions:
    """How a dataset snapshot is compared: ``baseline`` is a path or a ledger REF (default: the
    previous version of the same name); label and id columns are detected when not given."""

    baseline: str | None = None
    label: str | None = None
    id_column: str | None = None


def scan_manifest(
    root: Path, manifest: Manifest, *, threshold: Severity, options: ScanOptions | None = None,
    shown: str | None = None, executor: Executor | None = None,
) -> ScanReport:
    """Scan every file named by the manifest (``root`` is the file or directory hashed;
    ``shown`` is the name the report gives it, default ``root``), on ``executor`` if given."""
    base = root if manifest.is_directory else root.parent
    files = [
        (base / f.relpath if manifest.is_directory else root, f.relpath, f.size)
        for f in manifest.files
    ]
    return _scan(shown or str(root), files, threshold, options, executor)


def scan_objects(fetched: ObjectManifest, *, threshold: Severity,
                 options: ScanOptions | None = None) -> ScanReport:
    """Scan the private copy of objects hashed by ``fetch_private``; the report names the URI."""
    if fetched.copy is None:
        raise ValueError("scan_objects needs the private copy that fetch_private makes")
    return scan_manifest(fetched.copy, fetched.manifest, threshold=threshold, options=options,
                         shown=fetched.source)


def scan_path(path: Path, *, threshold: Severity, options: ScanOptions | None = None,
              allow_symlinks: bool = False, executor: Executor | None = None) -> ScanReport:
    """Scan a file or directory that has not been hashed (``custody scan``)."""
    files = [(p, rel, p.stat().st_size)
             for p, rel in iter_files(path, allow_symlinks=allow_symlinks)]
    return _scan(str(path), files, threshold, options, executor)


_Scanned = tuple[int, tuple["Finding", ...], bool, tuple[str, ...]]


def scan_shard(files: tuple[tuple[int, str, str, int], ...], *,
               options: ScanOptions | None) -> list[_Scanned]:
    """One shard of an executor run, on a worker: ``(index, path, relpath, size)`` scanned file
    by file; each file's findings, whether it errored, and the scanners that ran."""
    out: list[_Scanned] = []
    for index, path, rel, size in files:
        report = scan_files(rel, [(Path(path), rel, size)], options=options)
        out.append((index, report.findings, report.errored, report.scanners))
    return out


def _scan(shown: str, files: Sequence[tuple[Path, str, int]], threshold: Severity,
          options: ScanOptions | None, executor: Executor | None) -> ScanReport:
    if executor is None or len(files) <= 1:
        return scan_files(shown, files, threshold=threshold, options=options)
    from custody.provenance.execution.shards import balance, shard_count

    groups = balance([size for _, _, size in files], shard_count(len(files), executor.workers))
    shards = [tuple((i, str(files[i][0]), files[i][1], files[i][2]) for i in g) for g in groups]
    done = sorted(item for shard in executor.map(partial(scan_shard, options=options), shards,
                                                 cpu=True) for item in shard)
    return ScanReport(path=shown, findings=tuple(f for _, found, _, _ in done for f in found),
                      errored=any(errored for _, _, errored, _ in done), threshold=threshold,
                      scanners=done[0][3])


def with_dataset_checks(report: ScanReport, path: Path, *, ledger: Ledger | None,
                        name: str | None, dataset: DatasetOptions
                        ) -> tuple[ScanReport, DatasetAssessment | None]:
    """The report with the dataset comparison merged in (unchanged if ``path`` is no table)."""
    assessment = assess_dataset(path, ledger=ledger, name=name, baseline=dataset.baseline,
                                label=dataset.label, id_column=dataset.id_column)
    if assessment is None:
        return report, None
    return merge(report, assessment), assessment
