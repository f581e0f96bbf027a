"""What the cell rules share: the hit a rule reports (:class:`CellHit`), the rows and codes
they test (:class:`CellContext`), the cell index of a key column and the binomial
likelihood-ratio statistic (rules: ``cells.py``, ``clusters.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from custody.validators.dataset.encode import FeaturePlan
from custody.validators.dataset.poison import ModelView

Z_MIN = 5.5
MIN_CELL_ROWS = 10  # no rule looks at a cell with fewer snapshot rows
GRID_CHUNK = 1 << 18


@dataclass
class CellHit:
    rule: str
    view: str
    label: int
    rows: np.ndarray
    snapshot_rows: int
    expected_rows: float
    purity: float
    baseline_share: float
    description: str
    observed: int = 0
    z: float = 0.0
    candidates: bool = False
    cell_rows: np.ndarray | None = None  # every row of the cell with the label

    def explained_by(self, flagged: np.ndarray, minimum: float) -> bool:
        """Whether rows already flagged (e.g. an injected cluster inside the cell) account
        for the excess."""
        rows = self.rows if self.cell_rows is None else self.cell_rows
        inside = int(np.isin(rows, flagged, assume_unique=True).sum())
        return self.observed - inside - self.expected_rows < minimum

    def to_json(self, label_names: list[Any]) -> dict[str, Any]:
        return {"view": self.view, "pattern": self.description,
                "label": label_names[self.label], "rows": len(self.rows),
                "rows_are_candidates": self.candidates,
                "snapshot_rows_in_cell": self.snapshot_rows, "observed": self.observed,
                "expected_from_baseline": round(self.expected_rows, 2),
                "purity": round(self.purity, 4), "baseline_share": round(self.baseline_share, 4),
                "z": round(self.z, 2)}


@dataclass
class CellContext:
    plan: FeaturePlan
    view: ModelView
    z_s: np.ndarray
    y_s: np.ndarray
    eligible: np.ndarray  # rows that may be reported (not plain copies of baseline rows)
    # bin codes (rows x features, see FeaturePlan.bin_matrix); None for large inputs: each
    # feature's codes are then computed when a view needs them (see ``fine``)
    fine_s: np.ndarray | None
    coarse_s: None  # derived per feature from the fine codes (see ``coarse``): saves memory
    fine_h: np.ndarray  # the same for the held-out baseline rows
    coarse_h: np.ndarray
    z_b: np.ndarray  # the whole baseline row sample, encoded (density)
    y_b: np.ndarray
    fine_b: np.ndarray
    scale: float  # snapshot rows per baseline sample row
    classes: int

    def fine(self, j: int, rows: np.ndarray | None = None) -> np.ndarray:
        """The snapshot's fine bin codes of feature ``j`` (of ``rows``)."""
        if self.fine_s is not None:
            return self.fine_s[:, j] if rows is None else self.fine_s[rows, j]
        z = self.z_s[:, j] if rows is None else self.z_s[rows, j]
        return np.asarray(np.minimum(self.plan.features[j].bins(z, fine=True),
                                     np.iinfo(np.int16).max), dtype=np.int16)

    def coarse(self, j: int, rows: np.ndarray | None = None) -> np.ndarray:
        """The snapshot's coarse bin codes of feature ``j`` (of ``rows``), as int64."""
        fine = self.fine(j, rows)
        f = self.plan.features[j]
        if f.kind != "numeric":
            return fine.astype(np.int64)
        return np.asarray(f.coarse_lut().astype(np.int64)[fine])

    @property
    def m_min(self) -> float:
        """The least excess a label test reports: max(10, 0.02% of rows)."""
        return max(10.0, 2e-4 * len(self.y_s))

    @property
    def cluster_min(self) -> float:
        """The least cluster: max(10, 0.002% of rows) (a pile of near-identical rows is
        evidence at any size; its density and isolation tests do the rest)."""
        return max(float(MIN_CELL_ROWS), 2e-5 * len(self.y_s))


def index_cells(keys: np.ndarray, cells: np.ndarray, dense: bool) -> np.ndarray:
    if dense:
        remap = np.full(int(cells.max(initial=0)) + 2, -1, dtype=np.int32)
        remap[cells] = np.arange(len(cells))
        last = len(remap) - 1  # holds -1: negative keys and keys beyond every cell
        return np.asarray(remap[np.where((keys < 0) | (keys > last), last, keys)],
                          dtype=np.int32)
    out = np.full(len(keys), -1, dtype=np.int32)
    if len(cells) == 0:
        return out
    for start in range(0, len(keys), GRID_CHUNK):  # in chunks: no full-length temporaries
        part = keys[start:start + GRID_CHUNK]
        pos = np.minimum(np.searchsorted(cells, part), len(cells) - 1)
        out[start:start + len(part)] = np.where(cells[pos] == part, pos, -1)
    return out


def lr_z(o: np.ndarray, e: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Signed root of the binomial likelihood-ratio statistic of o successes in n against an
    expected e."""
    p0 = np.clip(e / np.maximum(n, 1.0), 1e-12, 1 - 1e-12)
    ph = np.clip(o / np.maximum(n, 1.0), 1e-12, 1 - 1e-12)
    ll = o * np.log(ph / p0) + (n - o) * np.log((1 - ph) / (1 - p0))
    return np.asarray(np.sign(o - e) * np.sqrt(2 * np.maximum(ll, 0.0)))
