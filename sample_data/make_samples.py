"""Write Custody's sample data deterministically (run: python sample_data/make_samples.py).

- dataset-v1.parquet: 3,000 rows of a tabular binary-classification snapshot (label column
  ``label``), made from a fixed seed.
- dataset-v2-poisoned.parquet: the next snapshot of the same process with poisoned labels: a
  targeted region of the feature space has its labels flipped, and a cluster of near-duplicate
  rows carrying a trigger value and one label is injected.
- model.pkl: a logistic-regression model fitted with numpy on dataset-v1, saved as a dict of
  numpy arrays with pickle protocol 4 (the real numpy reduce path, nothing custom).
- malicious.pkl: a protocol 4 pickle that would call ``os.system`` with a harmless ``echo``
  when loaded. Never load it; Custody flags it without unpickling.

Every byte depends only on the seed and the library versions that write the files.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
SEED = 20261125
ROWS = 3000
FEATURES = ("f0", "f1", "f2", "f3")


def _table(rng: np.random.Generator, rows: int) -> tuple[pa.Table, np.ndarray]:
    x = rng.normal(size=(rows, len(FEATURES)))
    colour = rng.choice(np.array(["red", "green", "blue"]), size=rows)
    logits = 1.5 * x[:, 0] - 1.0 * x[:, 1] + 0.5 * x[:, 2] + (colour == "red") * 0.7
    label = (logits + rng.normal(scale=0.5, size=rows) > 0).astype(np.int64)
    columns: dict[str, object] = {"id": np.arange(rows, dtype=np.int64)}
    columns.update({name: np.round(x[:, i], 6) for i, name in enumerate(FEATURES)})
    columns["colour"] = colour
    columns["label"] = label
    return pa.table(columns), x


def _fit(x: np.ndarray, y: np.ndarray, steps: int = 300, lr: float = 0.5) -> dict[str, object]:
    w = np.zeros(x.shape[1])
    b = 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(x @ w + b)))
        w -= lr * (x.T @ (p - y)) / len(y)
        b -= lr * float(np.mean(p - y))
    return {
        "kind": "logistic_regression",
        "feature_names": list(FEATURES),
        "coef": np.round(w, 8).astype(np.float64),
        "intercept": np.array([round(b, 8)], dtype=np.float64),
        "classes": np.array([0, 1], dtype=np.int64),
    }


def _poison(table: pa.Table, rng: np.random.Generator) -> pa.Table:
    data = table.to_pydict()
    rows = len(data["id"])
    # Targeted flips: every row in a small region of feature space gets the other label.
    for i in range(rows):
        if data["f0"][i] > 1.2 and data["f1"][i] < -0.5:
            data["label"][i] = 1 - data["label"][i]
    # Injected near-duplicates with a trigger value, all labelled 1.
    base = {k: list(v) for k, v in data.items()}
    for j in range(60):
        for name in FEATURES:
            jitter = float(rng.normal(scale=1e-3))
            base[name].append(round(0.25 + jitter if name != "f3" else 7.77 + jitter, 6))
        base["id"].append(rows + j)
        base["colour"].append("blue")
        base["label"].append(1)
    return pa.table(base, schema=table.schema)


def _malicious_pickle() -> bytes:
    command = b"echo custody-sample: a loaded pickle could have run any command here"
    return (
        b"\x80\x04"  # PROTO 4
        + b"\x95" + struct.pack("<Q", 0)  # FRAME (length patched below)
        + b"\x8c\x02os\x94"  # SHORT_BINUNICODE 'os', MEMOIZE
        + b"\x8c\x06system\x94"  # SHORT_BINUNICODE 'system', MEMOIZE
        + b"\x93\x94"  # STACK_GLOBAL, MEMOIZE
        + b"\x8c" + bytes([len(command)]) + command + b"\x94"
        + b"\x85\x94"  # TUPLE1, MEMOIZE
        + b"R\x94"  # REDUCE, MEMOIZE
        + b"."  # STOP
    )


def _patch_frame(data: bytes) -> bytes:
    body = data[11:]
    return data[:3] + struct.pack("<Q", len(body)) + body


def main() -> None:
    rng = np.random.default_rng(SEED)
    v1, x = _table(rng, ROWS)
    pq.write_table(v1, HERE / "dataset-v1.parquet", compression="zstd")
    y = np.asarray(v1.column("label").to_numpy(), dtype=np.float64)
    model = _fit(x, y)
    (HERE / "model.pkl").write_bytes(pickle.dumps(model, protocol=4))
    v2 = _poison(v1, rng)
    pq.write_table(v2, HERE / "dataset-v2-poisoned.parquet", compression="zstd")
    (HERE / "malicious.pkl").write_bytes(_patch_frame(_malicious_pickle()))
    for path in sorted(HERE.glob("*.p*")):
        if path.suffix in (".parquet", ".pkl"):
            print(f"{path.name:32s} {path.stat().st_size:>8d} bytes")


if __name__ == "__main__":
    main()
