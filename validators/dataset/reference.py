"""A compact, content-addressed reference of a dataset version: what the poisoning rules need of
a baseline's rows, stored with the version so that the next version is checked against it
without the old files.

Contents (``FORMAT`` 1), all derived from one streamed pass over the version:

- **row keys**: the 64-bit hash of every row's feature values (``encode.row_hashes`` over the
  ``hash_columns`` named in the header, in that order) with the row's label, for the rows whose
  hash is among the ``MAX_KEYS`` smallest (all rows of smaller datasets). Selecting by the
  hash's value is consistent across versions: a row repeated in the next version is selected
  there too, so exact and conflicting duplicates are found (for a known share of rows,
  ``key_share``) and the baseline's own conflict rate is measured on the same selection.
- **id keys**: the hash of the id column's value, the row hash and the label, for the rows whose
  id hash is among the ``MAX_KEYS`` smallest: in-place relabels (``poison.label_changed``).
- **sample**: up to ``MAX_SAMPLE`` rows of the version's uniform row sample (a seeded subset),
  encoded with the feature plan of the version's own profile (``encode.build_plan``): numbers
  standardised by the profile's median and robust spread, categories as codes of its value
  table, with their labels. The neighbourhood and cell rules fit and calibrate the baseline
  model on it exactly as on a baseline file's sample. The profile (stored beside it) rebuilds
  the same plan, so the next version is encoded alike.

Size: at most 2 x ``MAX_KEYS`` x 18 bytes of keys plus ``MAX_SAMPLE`` x (4 x features + 2)
bytes of sample before zlib compression: about 2.4 MB of keys and 1.4 MB of sample for 17
features; a few hundred KB for small datasets.

Byte layout: ``MAGIC``, an 8-byte little-endian header length, the header (canonical JSON:
format, hash scheme, columns, thresholds, labels, array table), then the zlib-compressed
concatenation of the arrays' bytes (little-endian). The digest is ``sha256:`` + SHA-256 of the
whole blob; a reader checks it against the digest it was given (the signed statement's).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from custody.errors import DatasetReadError
from custody.validators.dataset.encode import FeaturePlan, LabelCodes
from custody.validators.dataset.profile import _plain

_MAGIC = b"CUSTODY-DATASET-REFERENCE\n"
FORMAT = 1
_HASH_SCHEME = "custody-row-hash-1"  # encode.row_hashes / column_hash / hash_strings
MAX_KEYS = 65_536
_MAX_SAMPLE = 20_000
_SAMPLE_SEED = 0x2EF
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)


def reference_digest(blob: bytes) -> str:
    return "sha256:" + hashlib.sha256(blob).hexdigest()


@dataclass
class Reference:
    """A decoded reference (see the module docstring)."""

    header: dict[str, Any]
    arrays: dict[str, np.ndarray]

    @property
    def label(self) -> str:
        return str(self.header["label"])

    @property
    def id_column(self) -> str | None:
        value = self.header.get("id_column")
        return None if value is None else str(value)

    @property
    def hash_columns(self) -> list[str]:
        return list(self.header["hash_columns"])

    @property
    def features(self) -> list[str]:
        return list(self.header["features"])

    @property
    def rows(self) -> int:
        return int(self.header["rows"])

    @property
    def key_share(self) -> float:
        """The share of the version's rows whose keys are stored."""
        return len(self.arrays["row_hash"]) / max(self.rows, 1)

    def labels(self, name: str, codes: LabelCodes) -> np.ndarray:
        """A stored label array as the codes of this comparison."""
        values = [_plain(v) for v in self.header["labels"]]
        lookup = np.array([codes.codes.setdefault(v, len(codes.codes)) for v in values] + [-1],
                          dtype=np.int32)
        stored = self.arrays[name].astype(np.int64)
        return np.asarray(lookup[np.where(stored < 0, len(values), stored)], dtype=np.int32)

    def sample_matrix(self, plan: FeaturePlan) -> np.ndarray | None:
        """The stored sample's columns in ``plan``'s order; None when the plan has a feature
        the reference does not (it cannot stand in for the baseline's sample then)."""
        index = {name: j for j, name in enumerate(self.features)}
        if any(f.name not in index for f in plan.features):
            return None
        z = self.arrays["sample"]
        cols = [index[f.name] for f in plan.features]
        return np.asarray(z[:, cols], dtype=np.float32, order="F")


def _smallest(keys: np.ndarray, count: int) -> np.ndarray:
    """The mask of the rows whose key is among the ``count`` smallest (every row of a smaller
    array), as a threshold on the key's value."""
    if len(keys) <= count:
        return np.ones(len(keys), dtype=bool)
    limit = np.partition(keys, count - 1)[count - 1]
    return np.asarray(keys <= limit)


def build_reference(*, rows: int, hashes: np.ndarray, labels: np.ndarray,
                    ids: np.ndarray | None, sample: np.ndarray, sample_labels: np.ndarray,
                    plan: FeaturePlan, codes: LabelCodes, label: str, id_column: str | None,
                    hash_columns: list[str]) -> bytes:
    """The reference of one version (arrays of its pass: row hashes, label codes, id hashes,
    the encoded row sample with its labels; ``plan`` built from its own profile)."""
    names = codes.names
    arrays: dict[str, np.ndarray] = {}
    pick = _smallest(hashes, MAX_KEYS)
    arrays["row_hash"] = hashes[pick].astype("<u8")
    arrays["row_label"] = labels[pick].astype("<i2")
    if ids is not None:
        pick_id = _smallest(ids, MAX_KEYS)
        arrays["id_hash"] = ids[pick_id].astype("<u8")
        arrays["id_row_hash"] = hashes[pick_id].astype("<u8")
        arrays["id_label"] = labels[pick_id].astype("<i2")
    keep = np.flatnonzero(sample_labels >= 0)
    if len(keep) > _MAX_SAMPLE:
        keep = np.sort(np.random.default_rng(_SAMPLE_SEED).choice(keep, _MAX_SAMPLE,
                                                                  replace=False))
    arrays["sample"] = np.ascontiguousarray(sample[keep], dtype="<f4")
    arrays["sample_label"] = sample_labels[keep].astype("<i2")
    header = {
        "format": FORMAT, "hash_scheme": _HASH_SCHEME, "rows": int(rows), "label": label,
        "id_column": id_column if ids is not None else None, "hash_columns": list(hash_columns),
        "features": [f.name for f in plan.features], "labels": [_plain(v) for v in names],
        "max_keys": MAX_KEYS, "max_sample": _MAX_SAMPLE,
    }
    return _encode(header, arrays)


def _encode(header: dict[str, Any], arrays: dict[str, np.ndarray]) -> bytes:
    table = []
    chunks = []
    offset = 0
    for name, array in arrays.items():
        data = np.ascontiguousarray(array).tobytes()
        table.append({"name": name, "dtype": array.dtype.str, "shape": list(array.shape),
                      "offset": offset, "size": len(data)})
        chunks.append(data)
        offset += len(data)
    head = json.dumps({**header, "arrays": table}, sort_keys=True,
                      separators=(",", ":")).encode()
    body = zlib.compress(b"".join(chunks), 6)
    return _MAGIC + len(head).to_bytes(8, "little") + head + body


def read_reference(blob: bytes, digest: str | None = None) -> Reference:
    """Decode a reference; with ``digest``, refuse one whose bytes do not match it."""
    if digest is not None and reference_digest(blob) != digest:
        raise DatasetReadError("the dataset reference does not match its digest")
    if not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + 8:
        raise DatasetReadError("not a Custody dataset reference")
    at = len(_MAGIC)
    size = int.from_bytes(blob[at:at + 8], "little")
    try:
        header = json.loads(blob[at + 8:at + 8 + size])
        body = zlib.decompress(blob[at + 8 + size:])
    except (ValueError, zlib.error) as exc:
        raise DatasetReadError(f"unreadable dataset reference: {exc}") from exc
    if header.get("format") != FORMAT or header.get("hash_scheme") != _HASH_SCHEME:
        raise DatasetReadError(f"unsupported dataset reference format {header.get('format')!r}")
    arrays: dict[str, np.ndarray] = {}
    for item in header.pop("arrays"):
        start, length = int(item["offset"]), int(item["size"])
        if start < 0 or start + length > len(body):
            raise DatasetReadError("dataset reference arrays out of bounds")
        dtype = np.dtype(item["dtype"])
        shape = tuple(int(d) for d in item["shape"])
        if int(np.prod(shape)) * dtype.itemsize != length:
            raise DatasetReadError("dataset reference array size mismatch")
        arrays[str(item["name"])] = np.frombuffer(body, dtype=dtype, count=int(np.prod(shape)),
                                                  offset=start).reshape(shape)
    for need in ("row_hash", "row_label", "sample", "sample_label"):
        if need not in arrays:
            raise DatasetReadError(f"dataset reference lacks {need!r}")
    return Reference(header, arrays)
