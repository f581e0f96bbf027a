"""The scan step, in one place: what ``record``, ``verify`` and ``custody scan`` run.

Every file of the artifact goes through the model-file scanners (:mod:`custody.validators.scan`);
a dataset is also compared with its baseline (:mod:`custody.provenance.scanning.datasets`). The
result is one :class:`ScanReport` plus, for datasets, the assessment whose claims are signed.

An artifact read from an object store is scanned on its private copy, the bytes that were hashed
(:func:`scan_objects`; :func:`custody.provenance.hashing.objects.fetch_private` made it while
hashing), never on a second download; the report names the URI.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from custody.provenance.hashing.files import iter_files
from custody.provenance.scanning.datasets import DatasetAssessment, assess_dataset, merge
from custody.validators.scan import scan_files

if TYPE_CHECKING:
    from custody.provenance.hashing.manifest import Manifest
    from custody.provenance.hashing.objects import ObjectManifest
    from custody.provenance.ledger.store import Ledger
    from custody.validators.findings import ScanReport, Severity
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
    shown: str | None = None,
) -> ScanReport:
    """Scan every file named by the manifest (``root`` is the file or directory hashed;
    ``shown`` is the name the report gives it, default ``root``)."""
    base = root if manifest.is_directory else root.parent
    files = [
        (base / f.relpath if manifest.is_directory else root, f.relpath, f.size)
        for f in manifest.files
    ]
    return scan_files(shown or str(root), files, threshold=threshold, options=options)


def scan_objects(fetched: ObjectManifest, *, threshold: Severity,
                 options: ScanOptions | None = None) -> ScanReport:
    """Scan the private copy of objects hashed by ``fetch_private``; the report names the URI."""
    if fetched.copy is None:
        raise ValueError("scan_objects needs the private copy that fetch_private makes")
    return scan_manifest(fetched.copy, fetched.manifest, threshold=threshold, options=options,
                         shown=fetched.source)


def scan_path(path: Path, *, threshold: Severity, options: ScanOptions | None = None,
              allow_symlinks: bool = False) -> ScanReport:
    """Scan a file or directory that has not been hashed (``custody scan``)."""
    files = [(p, rel, p.stat().st_size)
             for p, rel in iter_files(path, allow_symlinks=allow_symlinks)]
    return scan_files(str(path), files, threshold=threshold, options=options)


def with_dataset_checks(report: ScanReport, path: Path, *, ledger: Ledger | None,
                        name: str | None, dataset: DatasetOptions
                        ) -> tuple[ScanReport, DatasetAssessment | None]:
    """The report with the dataset comparison merged in (unchanged if ``path`` is no table)."""
    assessment = assess_dataset(path, ledger=ledger, name=name, baseline=dataset.baseline,
                                label=dataset.label, id_column=dataset.id_column)
    if assessment is None:
        return report, None
    return merge(report, assessment), assessment
