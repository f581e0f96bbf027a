"""Dataset validators: schema drift, distribution drift and label-poisoning heuristics.

Entry points (heavy libraries are imported by the submodules, not here):

- :func:`custody.validators.dataset.compare.compare_datasets` — one streamed pass over a
  baseline and a snapshot; returns a :class:`~custody.validators.dataset.compare.DatasetComparison`
  whose ``report`` is a :class:`~custody.validators.findings.ScanReport`.
- :func:`custody.validators.dataset.compare.scan_dataset` — the same, returning the report only.
- :func:`custody.validators.dataset.fingerprint.schema_fingerprint` — sha256 of a canonical schema.
- :func:`custody.validators.dataset.profile.profile_dataset` — a JSON-serialisable profile that
  can stand in for a baseline's bytes (schema and drift rules).
- :mod:`custody.validators.dataset.expectations` — great-expectations suites in and out.

Rules are documented in ``docs/datasets.md``.
"""

from __future__ import annotations

__all__: list[str] = []
