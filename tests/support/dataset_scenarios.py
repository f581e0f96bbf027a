"""Deterministic dataset scenarios with ground truth, for the dataset validator tests and bench.

One synthetic process (tabular binary classification) produces a baseline and, per scenario,
a snapshot written to disk, with what the scan must say:

- ``kind``: "clean", "drift", "schema" or "poison" (the scenario's verdict class);
- ``rules``: rule ids that must appear (prefix match);
- ``poison_rows``: the 0-based snapshot rows that were manipulated (poison scenarios).

Load with importlib (tests/ is not a package)::

    spec = importlib.util.spec_from_file_location("dataset_scenarios", PATH)

Sizes are parameters so that tests stay small and the benchmark can go large.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

COLOURS = np.array(["red", "green", "blue", "yellow"])
REGIONS = np.array(["north", "south", "east", "west", "centre", "coast"])
T0 = np.datetime64("2026-01-01T00:00:00", "s")
FEATURES = ("f0", "f1", "f2", "f3", "f4")


@dataclass
class Scenario:
    name: str
    kind: str  # clean | drift | schema | poison
    snapshot: Path
    rules: tuple[str, ...] = ()
    poison_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    # rule ids that must NOT appear (prefixes); by default poison.* for non-poison scenarios
    forbid: tuple[str, ...] = ()


def process(rng: np.random.Generator, n: int, *, start_id: int = 0, start_time: int = 0,
            f0_shift: float = 0.0, colour_p: tuple[float, ...] = (0.3, 0.3, 0.25, 0.15),
            ) -> dict[str, np.ndarray]:
    """n rows of the data-generating process (columns as numpy arrays)."""
    x = rng.normal(size=(n, len(FEATURES)))
    x[:, 0] += f0_shift
    x[:, 3] = 0.6 * x[:, 2] + 0.8 * x[:, 3]  # a correlated pair
    colour = rng.choice(COLOURS, size=n, p=np.asarray(colour_p))
    region = rng.choice(REGIONS, size=n)
    items = rng.poisson(3.0, size=n).astype(np.int32)
    logit = (1.5 * x[:, 0] - 1.0 * x[:, 1] + 0.5 * x[:, 2] + 0.7 * (colour == "red")
             - 0.2 * (items - 3))
    label = (logit + rng.normal(scale=0.5, size=n) > 0).astype(np.int64)
    ts = T0 + (start_time + np.sort(rng.integers(0, 86_400 * 30, size=n))).astype(
        "timedelta64[s]")
    cols: dict[str, np.ndarray] = {"id": np.arange(start_id, start_id + n, dtype=np.int64),
                                   "ts": ts}
    for i, name in enumerate(FEATURES):
        cols[name] = np.round(x[:, i], 6)
    cols.update({"items": items, "colour": colour, "region": region, "label": label})
    return cols


def to_table(cols: dict[str, np.ndarray], schema: pa.Schema | None = None) -> pa.Table:
    return pa.table({k: pa.array(v) for k, v in cols.items()}, schema=schema)


def take(cols: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[idx] for k, v in cols.items()}


def concat(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([a[k], b[k]]) for k in a}


def write(table: pa.Table, path: Path, **kw: object) -> Path:
    pq.write_table(table, path, **kw)  # type: ignore[arg-type]
    return path


def _file(p: Path, ext: str) -> Path:
    return p.parent / (p.name + ext)


def _flip(cols: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    out = {k: v.copy() for k, v in cols.items()}
    out["label"][rows] = 1 - out["label"][rows]
    return out


def _inject(fresh: dict[str, np.ndarray], rng: np.random.Generator, count: int,
            centre: dict[str, float], spread: float, label: int, colour: str = "blue",
            ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Append ``count`` rows around ``centre`` carrying ``label``; return cols and their rows."""
    n = len(fresh["id"])
    extra = take(fresh, rng.integers(0, n, size=count))
    extra = {k: v.copy() for k, v in extra.items()}
    for name in FEATURES:
        extra[name] = np.round(centre.get(name, 0.0) + rng.normal(scale=spread, size=count), 6)
    extra["colour"] = np.full(count, colour)
    extra["label"] = np.full(count, label, dtype=np.int64)
    extra["id"] = np.arange(n + 10_000_000, n + 10_000_000 + count, dtype=np.int64)
    out = concat(fresh, extra)
    return out, np.arange(n, n + count)


def _shuffle_in(cols: dict[str, np.ndarray], rows: np.ndarray, rng: np.random.Generator
                ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Permute rows so injected ones are spread through the file; map the truth rows."""
    perm = rng.permutation(len(cols["id"]))
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(len(perm))
    return take(cols, perm), np.sort(inverse[rows])


def make_baseline(root: Path, n: int, seed: int = 1) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    cols = process(rng, n)
    path = write(to_table(cols), root / "baseline.parquet", row_group_size=max(n // 4, 1))
    return path, cols


Builder = Callable[[Path, dict[str, np.ndarray], int, np.random.Generator], Scenario]


def _fresh(base: dict[str, np.ndarray], n: int, rng: np.random.Generator, **kw: float
           ) -> dict[str, np.ndarray]:
    return process(rng, n, start_id=int(base["id"].max()) + 1, start_time=86_400 * 30,
                   **kw)  # type: ignore[arg-type]


def scenarios(root: Path, n_base: int, n_snap: int, seed: int = 7,
              only: set[str] | None = None) -> tuple[Path, list[Scenario]]:
    """Write the baseline and every scenario snapshot under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    base_path, base = make_baseline(root, n_base)
    out: list[Scenario] = []
    for i, (name, build) in enumerate(BUILDERS.items()):
        if only is not None and name not in only:
            continue
        rng = np.random.default_rng(seed * 1000 + i)
        out.append(build(root / name, base, n_snap, rng))
    return base_path, out


# --- benign -----------------------------------------------------------------------------------


def s_resample(p: Path, base: dict[str, np.ndarray], n: int, rng: np.random.Generator
               ) -> Scenario:
    return Scenario("resample", "clean", write(to_table(_fresh(base, n, rng)),
                                               _file(p, ".parquet")))


def s_reorder(p: Path, base: dict[str, np.ndarray], n: int, rng: np.random.Generator
              ) -> Scenario:
    cols = take(base, rng.permutation(len(base["id"])))
    return Scenario("reorder", "clean", write(to_table(cols), _file(p, ".parquet")))


def s_reencode(p: Path, base: dict[str, np.ndarray], n: int, rng: np.random.Generator
               ) -> Scenario:
    path = write(to_table(base), _file(p, ".parquet"), compression="gzip",
                 row_group_size=1000)
    return Scenario("reencode", "clean", path)


def s_append(p: Path, base: dict[str, np.ndarray], n: int, rng: np.random.Generator
             ) -> Scenario:
    cols = concat(base, _fresh(base, max(n // 5, 10), rng))
    return Scenario("append", "clean", write(to_table(cols), _file(p, ".parquet")))


def s_csv(p: Path, base: dict[str, np.ndarray], n: int, rng: np.random.Generator) -> Scenario:
    path = _file(p, ".csv")
    table = to_table(_fresh(base, n, rng))
    pacsv.write_csv(table, path)
    return Scenario("csv", "clean", path)


def s_directory(p: Path, base: dict[str, np.ndarray], n: int, rng: np.random.Generator
                ) -> Scenario:
    p.mkdir(parents=True, exist_ok=True)
    table = to_table(_fresh(base, n, rng))
    third = max(len(table) // 3, 1)
    for k in range(3):
        write(table.slice(k * third, third if k < 2 else None), p / f"part-{k}.parquet")
    (p / "_SUCCESS").write_text("")
    (p / ".hidden.dvc").write_text("outs: []\n")
    return Scenario("directory", "clean", p)


# --- drift ------------------------------------------------------------------------------------


def s_covariate(p: Path, base: dict[str, np.ndarray], n: int, rng: np.random.Generator
                ) -> Scenario:
    cols = _fresh(base, n, rng, f0_shift=0.6)
    return Scenario("covariate_shift", "drift", write(to_table(cols), _file(p, ".parquet")),
                    rules=("drift.distribution",))


def s_category(p: Path, base: dict[str, np.ndarray], n: int, rng: np.random.Generator
               ) -> Scenario:
    cols = process(rng, n, start_id=int(base["id"].max()) + 1, start_time=86_400 * 30,
                   colour_p=(0.1, 0.2, 0.3, 0.4))
    return Scenario("category_shift", "drift", write(to_table(cols), _file(p, ".parquet")),
                    rules=("drift.distribution",))


def s_nulls(p: Path, base: dict[str, np.ndarray], n: int, rng: np.random.Generator
            ) -> Scenario:
    table = to_table(_fresh(base, n, rng))
    mask = rng.random(len(table)) < 0.15
    f2 = pa.array(table.column("f2").to_numpy(), mask=mask)
    table = table.set_column(table.schema.get_field_index("f2"), "f2", f2)
    return Scenario("null_rate", "drift", write(table, _file(p, ".parquet")),
                    rules=("drift.null_rate",))


def s_prior_natural(p: Path, base: dict[str, np.ndarray], n: int, rng: np.random.Generator
                    ) -> Scenario:
    cols = _fresh(base, int(n * 1.4), rng)
    keep = (cols["label"] == 1) | (rng.random(len(cols["label"])) < 0.55)
    cols = take(cols, np.flatnonzero(keep)[:n])
    return Scenario("label_prior_natural", "drift",
                    write(to_table(cols), _file(p, ".parquet")),
                    rules=("drift.label_marginal",))


# --- schema -----------------------------------------------------------------------------------


def _schema_case(name: str, rules: tuple[str, ...],
                 change: Callable[[pa.Table, np.random.Generator], pa.Table]) -> Builder:
    def build(p: Path, base: dict[str, np.ndarray], n: int, rng: np.random.Generator
              ) -> Scenario:
        table = change(to_table(_fresh(base, n, rng)), rng)
        return Scenario(name, "schema", write(table, _file(p, ".parquet")), rules=rules)

    return build


def _retype(t: pa.Table, col: str, typ: pa.DataType) -> pa.Table:
    i = t.schema.get_field_index(col)
    return t.set_column(i, pa.field(col, typ), t.column(col).cast(typ))


def _new_category(t: pa.Table, rng: np.random.Generator) -> pa.Table:
    region = t.column("region").to_numpy(zero_copy_only=False).copy()
    region[rng.random(len(region)) < 0.05] = "antarctica"
    return t.set_column(t.schema.get_field_index("region"), "region", pa.array(region))


def _not_null(t: pa.Table, rng: np.random.Generator) -> pa.Table:
    return t  # the baseline is written nullable; see s_nullability


def s_nullability(p: Path, base: dict[str, np.ndarray], n: int, rng: np.random.Generator
                  ) -> Scenario:
    table = to_table(_fresh(base, n, rng))
    # the snapshot declares f1 NOT NULL where the baseline allowed nulls
    fields = [f.with_nullable(False) if f.name == "f1" else f for f in table.schema]
    table = table.cast(pa.schema(fields))
    return Scenario("nullability", "schema", write(table, _file(p, ".parquet")),
                    rules=("schema.nullability_changed",))


# --- poison -----------------------------------------------------------------------------------


def _inplace_flips(rate: float) -> Builder:
    def build(p: Path, base: dict[str, np.ndarray], n: int, rng: np.random.Generator
              ) -> Scenario:
        rows = np.flatnonzero(rng.random(len(base["id"])) < rate)
        cols = _flip(base, rows)
        return Scenario(f"flips_inplace_{rate:g}", "poison",
                        write(to_table(cols), _file(p, ".parquet")),
                        rules=("poison.label_changed",), poison_rows=rows)

    return build


def _fresh_flips(rate: float) -> Builder:
    def build(p: Path, base: dict[str, np.ndarray], n: int, rng: np.random.Generator
              ) -> Scenario:
        cols = _fresh(base, n, rng)
        rows = np.flatnonzero(rng.random(n) < rate)
        return Scenario(f"flips_fresh_{rate:g}", "poison",
                        write(to_table(_flip(cols, rows)), _file(p, ".parquet")),
                        rules=("poison.knn_disagreement",), poison_rows=rows)

    return build


def s_targeted(p: Path, base: dict[str, np.ndarray], n: int, rng: np.random.Generator
               ) -> Scenario:
    cols = _fresh(base, n, rng)
    region = (cols["f0"] > 1.0) & (cols["f1"] < -0.5) & (cols["label"] == 1)
    rows = np.flatnonzero(region)
    return Scenario("targeted_flips", "poison",
                    write(to_table(_flip(cols, rows)), _file(p, ".parquet")),
                    rules=("poison.",), poison_rows=rows)


def s_backdoor_category(p: Path, base: dict[str, np.ndarray], n: int, rng: np.random.Generator
                        ) -> Scenario:
    cols = _fresh(base, n, rng)
    rows = np.flatnonzero(rng.random(n) < 0.02)
    cols["colour"] = cols["colour"].astype(object)
    cols["colour"][rows] = "magenta"
    cols["colour"] = cols["colour"].astype(str)
    cols["label"][rows] = 1  # dirty label: the trigger forces the target class
    return Scenario("backdoor_new_value", "poison",
                    write(to_table(cols), _file(p, ".parquet")),
                    rules=("poison.trigger_pattern",), poison_rows=rows)


def s_backdoor_clean(p: Path, base: dict[str, np.ndarray], n: int, rng: np.random.Generator
                     ) -> Scenario:
    cols = _fresh(base, n, rng)
    positives = np.flatnonzero(cols["label"] == 1)
    rows = np.sort(rng.choice(positives, size=max(int(0.02 * n), 12), replace=False))
    cols["f4"][rows] = 1.234567  # clean label: the trigger only on genuine positives
    return Scenario("backdoor_clean_label", "poison",
                    write(to_table(cols), _file(p, ".parquet")),
                    rules=("poison.trigger_pattern",), poison_rows=rows)


def s_backdoor_combo(p: Path, base: dict[str, np.ndarray], n: int, rng: np.random.Generator
                     ) -> Scenario:
    cols = _fresh(base, n, rng)
    combo = (cols["colour"] == "green") & (cols["region"] == "coast") & (cols["label"] == 0)
    rows = np.flatnonzero(combo)
    cols["label"][rows] = 1
    return Scenario("backdoor_combination", "poison",
                    write(to_table(cols), _file(p, ".parquet")),
                    rules=("poison.trigger_pattern",), poison_rows=rows)


def s_conflicting(p: Path, base: dict[str, np.ndarray], n: int, rng: np.random.Generator
                  ) -> Scenario:
    fresh = _fresh(base, n, rng)
    copies = take(base, rng.choice(len(base["id"]), size=max(int(0.03 * n), 10),
                                   replace=False))
    copies = _flip(copies, np.arange(len(copies["id"])))
    copies["id"] = np.arange(10**9, 10**9 + len(copies["id"]), dtype=np.int64)
    cols, rows = _shuffle_in(concat(fresh, copies), np.arange(n, n + len(copies["id"])), rng)
    return Scenario("conflicting_duplicates", "poison",
                    write(to_table(cols), _file(p, ".parquet")),
                    rules=("poison.conflicting_duplicate",), poison_rows=rows)


def s_near_dups(p: Path, base: dict[str, np.ndarray], n: int, rng: np.random.Generator
                ) -> Scenario:
    fresh = _fresh(base, n, rng)
    cols, rows = _inject(fresh, rng, max(int(0.01 * n), 40),
                         {"f0": -0.4, "f1": 0.3, "f2": 0.1, "f3": 2.5, "f4": -0.2}, 1e-3, 1)
    cols, rows = _shuffle_in(cols, rows, rng)
    return Scenario("near_duplicate_cluster", "poison",
                    write(to_table(cols), _file(p, ".parquet")),
                    rules=("poison.injected_cluster",), poison_rows=rows)


def s_outliers(p: Path, base: dict[str, np.ndarray], n: int, rng: np.random.Generator
               ) -> Scenario:
    fresh = _fresh(base, n, rng)
    cols, rows = _inject(fresh, rng, max(int(0.01 * n), 40),
                         {"f0": 4.5, "f1": -4.5, "f2": 0.0, "f3": 0.0, "f4": 4.0}, 0.15, 0)
    cols, rows = _shuffle_in(cols, rows, rng)
    return Scenario("outlier_cluster", "poison",
                    write(to_table(cols), _file(p, ".parquet")),
                    rules=("poison.",), poison_rows=rows)


def s_prior_injected(p: Path, base: dict[str, np.ndarray], n: int, rng: np.random.Generator
                     ) -> Scenario:
    cols = _fresh(base, n, rng)
    rows_all: list[np.ndarray] = []
    per = max(int(0.02 * n), 20)
    for k in range(5):
        centre = {"f0": -1.5 + 0.6 * k, "f1": 1.0, "f2": -0.5, "f3": 0.3 * k, "f4": 1.0}
        cols, rows = _inject(cols, rng, per, centre, 1e-3, 1)
        rows_all.append(rows)
    cols, truth = _shuffle_in(cols, np.concatenate(rows_all), rng)
    return Scenario("prior_shift_injected", "poison",
                    write(to_table(cols), _file(p, ".parquet")),
                    rules=("poison.prior_shift_injected",), poison_rows=truth)


BUILDERS: dict[str, Builder] = {
    "resample": s_resample,
    "reorder": s_reorder,
    "reencode": s_reencode,
    "append": s_append,
    "csv": s_csv,
    "directory": s_directory,
    "covariate_shift": s_covariate,
    "category_shift": s_category,
    "null_rate": s_nulls,
    "label_prior_natural": s_prior_natural,
    "column_added": _schema_case(
        "column_added", ("schema.column_added",),
        lambda t, r: t.append_column("f5", pa.array(r.normal(size=len(t))))),
    "column_removed": _schema_case("column_removed", ("schema.column_removed",),
                                   lambda t, r: t.drop_columns(["f4"])),
    "column_renamed": _schema_case(
        "column_renamed", ("schema.column_renamed",),
        lambda t, r: t.rename_columns(["feature_4" if c == "f4" else c for c in t.column_names])),
    "column_reordered": _schema_case(
        "column_reordered", ("schema.column_reordered",),
        lambda t, r: t.select(["label", *[c for c in t.column_names if c != "label"]])),
    "type_widened": _schema_case("type_widened", ("schema.type_widened",),
                                 lambda t, r: _retype(t, "items", pa.int64())),
    "type_narrowed": _schema_case("type_narrowed", ("schema.type_changed",),
                                  lambda t, r: _retype(t, "f2", pa.float32())),
    "type_changed": _schema_case("type_changed", ("schema.type_changed",),
                                 lambda t, r: _retype(t, "items", pa.string())),
    "nullability": s_nullability,
    "new_category": _schema_case("new_category", ("schema.new_category",), _new_category),
    "flips_inplace_0.02": _inplace_flips(0.02),
    "flips_inplace_0.1": _inplace_flips(0.1),
    "flips_fresh_0.05": _fresh_flips(0.05),
    "flips_fresh_0.15": _fresh_flips(0.15),
    "targeted_flips": s_targeted,
    "backdoor_new_value": s_backdoor_category,
    "backdoor_clean_label": s_backdoor_clean,
    "backdoor_combination": s_backdoor_combo,
    "conflicting_duplicates": s_conflicting,
    "near_duplicate_cluster": s_near_dups,
    "outlier_cluster": s_outliers,
    "prior_shift_injected": s_prior_injected,
}


def verdict_class(rule_ids: list[str]) -> str:
    """The scenario class a scan's findings imply (poison > schema > drift > clean)."""
    for prefix, kind in (("poison.", "poison"), ("schema.", "schema"), ("drift.", "drift")):
        if any(r.startswith(prefix) for r in rule_ids):
            return kind
    return "clean"


def precision_recall(found: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    f, t = set(found.tolist()), set(truth.tolist())
    hit = len(f & t)
    return (hit / len(f) if f else 1.0 if not t else 0.0), (hit / len(t) if t else 1.0)
