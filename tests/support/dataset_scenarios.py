"""Deterministic dataset scenarios with ground truth, for the dataset validator tests and bench.

A domain of ``dataset_domains.py`` (triage, credit, telemetry) produces a baseline and, per
scenario, a snapshot written to disk, with what the scan must say:

- ``kind``: "clean" (benign: nothing may be reported), "drift" (natural drift: ``drift.*``
  only, never ``schema.*`` or ``poison.*``), "schema" (a schema change, never ``poison.*``) or
  "poison" (the scenario's verdict class must be poison);
- ``rules``: rule ids that must appear (prefix match);
- ``poison_rows``: the 0-based snapshot rows that were manipulated (poison scenarios);
- ``hard_rows``: the manipulated rows that even an oracle could not name with precision 0.9:
  knowing the true process and the attack (its rate, where it acts, which labels it writes),
  the posterior probability that such a row was manipulated, given its features and its new
  label, is below ``ORACLE_PRECISION`` (its new label is genuinely plausible there). Recall is
  measured on the other, *clear* manipulated rows; naming a hard row is not a false positive
  (it was manipulated).

``import support.dataset_scenarios as ds`` (conftest puts tests/ on sys.path); the benchmark
loads the file by path. Sizes are parameters so that tests stay small and the benchmark can go
large.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq


def _load_domains() -> Any:
    name = "dataset_domains"
    if name in sys.modules:
        return sys.modules[name]
    try:
        from support import dataset_domains as mod  # type: ignore[import-not-found]
    except ImportError:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(
            "dataset_domains.py"))
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return mod


dd = _load_domains()
Domain = dd.Domain
DOMAINS: dict[str, Any] = dd.DOMAINS
TUNING: tuple[str, ...] = dd.TUNING
ORACLE_PRECISION = 0.9  # a manipulated row is "clear" when an oracle would name it this surely
SMALL_BATCH = 1500


@dataclass
class World:
    """What a builder gets: the domain, the baseline's columns and probabilities."""

    domain: Any
    base: dict[str, np.ndarray]
    base_proba: np.ndarray
    n: int  # snapshot size
    rng: np.random.Generator

    def fresh(self, n: int | None = None, **knobs: Any) -> tuple[dict[str, np.ndarray],
                                                                 np.ndarray]:
        """Rows of the next time window (new ids), drawn from the same process."""
        start = len(self.base[self.domain.label]) + 10_000
        return self.domain.draw(self.rng, self.n if n is None else n, day=30,
                                start_id=start, **knobs)


@dataclass
class Scenario:
    name: str
    kind: str  # clean | drift | schema | poison
    snapshot: Path
    rules: tuple[str, ...] = ()
    poison_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    hard_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    domain: str = ""

    @property
    def clear_rows(self) -> np.ndarray:
        return np.setdiff1d(self.poison_rows, self.hard_rows)


def to_table(cols: dict[str, np.ndarray], schema: pa.Schema | None = None) -> pa.Table:
    arrays = {}
    for k, v in cols.items():
        if v.dtype == object:
            arrays[k] = pa.array(v.tolist(), type=pa.string())
        elif v.dtype.kind == "f":
            arrays[k] = pa.array(v, from_pandas=True)  # NaN is null
        else:
            arrays[k] = pa.array(v)
    return pa.table(arrays, schema=schema)


def take(cols: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[idx] for k, v in cols.items()}


def concat(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([a[k], b[k]]) for k in a}


def write(table: pa.Table, path: Path, **kw: Any) -> Path:
    pq.write_table(table, path, **kw)
    return path


def _file(p: Path, ext: str) -> Path:
    return p.parent / (p.name + ext)


def _copy(cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in cols.items()}


def _relabel(w: World, cols: dict[str, np.ndarray], rows: np.ndarray, new: np.ndarray
             ) -> dict[str, np.ndarray]:
    out = _copy(cols)
    out[w.domain.label][rows] = w.domain.classes[new]
    return out


def _random_other(w: World, current: np.ndarray) -> np.ndarray:
    """A uniformly drawn label other than the current one (class indices)."""
    k = len(w.domain.classes)
    return np.asarray((current + w.rng.integers(1, k, size=len(current))) % k)


def _hard(proba: np.ndarray, rows: np.ndarray, new: np.ndarray, rate: float,
          choices: int = 1, targeted: bool = True) -> np.ndarray:
    """Manipulated rows an oracle could not name with ``ORACLE_PRECISION``.

    The attack changed a row of another label with probability ``rate`` and wrote ``new``
    with probability 1 / ``choices``. A row now of label ``new``, whose true probability of
    that label is ``p``, was changed with posterior probability m / (m + natural), with
    m = rate (1 - p) / choices and natural = p for a targeted attack (rows already of the new
    label are left alone), (1 - rate) p for random flips (which also move those)."""
    p = proba[rows, new]
    moved = rate * (1 - p) / choices
    natural = p if targeted else (1 - rate) * p
    post = moved / np.maximum(moved + natural, 1e-300)
    return np.asarray(rows[post < ORACLE_PRECISION])


def _shuffle_in(w: World, cols: dict[str, np.ndarray], rows: np.ndarray,
                *more: np.ndarray) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """Permute rows so injected ones are spread through the file; map the truth rows."""
    n = len(cols[w.domain.label])
    perm = w.rng.permutation(n)
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(n)
    return take(cols, perm), [np.sort(inverse[r]) for r in (rows, *more)]


def _new_ids(w: World, count: int) -> np.ndarray:
    start = 50_000_000 + len(w.base[w.domain.label])
    ids = np.arange(start, start + count)
    if w.base[w.domain.id_column].dtype == object:
        prefix = str(w.base[w.domain.id_column][0])[:1]
        return np.array([f"{prefix}{i:09d}" for i in ids], dtype=object)
    return ids.astype(np.int64)


Builder = Callable[[Path, World], Scenario]


def make_baseline(root: Path, domain: Any, n: int, seed: int = 1
                  ) -> tuple[Path, dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    cols, proba = domain.draw(rng, n)
    path = write(to_table(cols), root / "baseline.parquet", row_group_size=max(n // 4, 1))
    return path, cols, proba


def scenarios(root: Path, n_base: int, n_snap: int, seed: int = 7, only: set[str] | None = None,
              domain: str = "triage") -> tuple[Path, list[Scenario]]:
    """Write the baseline and every scenario snapshot of ``domain`` under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    dom = DOMAINS[domain]
    base_path, base, proba = make_baseline(root, dom, n_base, seed=seed * 7919 + 1)
    out: list[Scenario] = []
    for i, (name, build) in enumerate(BUILDERS.items()):
        if only is not None and name not in only:
            continue
        rng = np.random.default_rng(seed * 1000 + i)
        sc = build(root / name, World(dom, base, proba, n_snap, rng))
        sc.domain = domain
        out.append(sc)
    return base_path, out


# --- benign -----------------------------------------------------------------------------------


def s_resample(p: Path, w: World) -> Scenario:
    return Scenario("resample", "clean", write(to_table(w.fresh()[0]), _file(p, ".parquet")))


def s_small_batch(p: Path, w: World) -> Scenario:
    cols = w.fresh(SMALL_BATCH)[0]
    return Scenario("small_batch", "clean", write(to_table(cols), _file(p, ".parquet")))


def s_reorder(p: Path, w: World) -> Scenario:
    cols = take(w.base, w.rng.permutation(len(w.base[w.domain.label])))
    return Scenario("reorder", "clean", write(to_table(cols), _file(p, ".parquet")))


def s_reencode(p: Path, w: World) -> Scenario:
    path = write(to_table(w.base), _file(p, ".parquet"), compression="gzip",
                 row_group_size=1000)
    return Scenario("reencode", "clean", path)


def s_append(p: Path, w: World) -> Scenario:
    cols = concat(w.base, w.fresh(max(w.n // 5, 10))[0])
    return Scenario("append", "clean", write(to_table(cols), _file(p, ".parquet")))


def s_csv(p: Path, w: World) -> Scenario:
    path = _file(p, ".csv")
    pacsv.write_csv(to_table(w.fresh()[0]), path)
    return Scenario("csv_twin", "clean", path)


def s_csv_of_baseline(p: Path, w: World) -> Scenario:
    path = _file(p, ".csv")
    pacsv.write_csv(to_table(w.base), path)
    return Scenario("csv_of_baseline", "clean", path)


def s_directory(p: Path, w: World) -> Scenario:
    p.mkdir(parents=True, exist_ok=True)
    table = to_table(w.fresh()[0])
    third = max(len(table) // 3, 1)
    for k in range(3):
        write(table.slice(k * third, third if k < 2 else None), p / f"part-{k}.parquet")
    (p / "_SUCCESS").write_text("")
    (p / ".hidden.dvc").write_text("outs: []\n")
    return Scenario("directory", "clean", p)


# --- natural drift ----------------------------------------------------------------------------


def _drift(name: str, rules: tuple[str, ...] = (), **knobs: Any) -> Builder:
    def build(p: Path, w: World) -> Scenario:
        cols = w.fresh(**knobs)[0]
        return Scenario(name, "drift", write(to_table(cols), _file(p, ".parquet")), rules=rules)

    return build


def s_prior_natural(p: Path, w: World) -> Scenario:
    """Label shift: p(x | label) unchanged, the commonest class thinned out by 45%."""
    cols, _ = w.fresh(int(w.n * 1.6))
    y = w.domain.index(cols[w.domain.label])
    major = int(np.argmax(np.bincount(y)))
    keep = (y != major) | (w.rng.random(len(y)) < 0.55)
    cols = take(cols, np.flatnonzero(keep)[: w.n])
    return Scenario("label_prior_natural", "drift",
                    write(to_table(cols), _file(p, ".parquet")), rules=("drift.label_marginal",))


# --- schema -----------------------------------------------------------------------------------


def _schema_case(name: str, rules: tuple[str, ...],
                 change: Callable[[pa.Table, World], pa.Table]) -> Builder:
    def build(p: Path, w: World) -> Scenario:
        table = change(to_table(w.fresh()[0]), w)
        return Scenario(name, "schema", write(table, _file(p, ".parquet")), rules=rules)

    return build


def _retype(t: pa.Table, col: str, typ: pa.DataType) -> pa.Table:
    i = t.schema.get_field_index(col)
    return t.set_column(i, pa.field(col, typ), t.column(col).cast(typ))


def _new_category(t: pa.Table, w: World) -> pa.Table:
    col = w.domain.lowcard
    values = np.array(t.column(col).to_pylist(), dtype=object)
    values[w.rng.random(len(values)) < 0.05] = "unheard-of"
    return t.set_column(t.schema.get_field_index(col), col, pa.array(values.tolist()))


def _not_null(t: pa.Table, w: World) -> pa.Table:
    fields = [f.with_nullable(False) if f.name == w.domain.int_column else f for f in t.schema]
    return t.cast(pa.schema(fields))


def _renamed(t: pa.Table, w: World) -> pa.Table:
    old = w.domain.numeric_drop
    return t.rename_columns([f"{old}_v2" if c == old else c for c in t.column_names])


def _reordered(t: pa.Table, w: World) -> pa.Table:
    lab = w.domain.label
    return t.select([lab, *[c for c in t.column_names if c != lab]])


# --- poison -----------------------------------------------------------------------------------


def s_flips_inplace(p: Path, w: World) -> Scenario:
    y = w.domain.index(w.base[w.domain.label])
    rows = np.flatnonzero(w.rng.random(len(y)) < 0.02)
    new = _random_other(w, y[rows])
    cols = _relabel(w, w.base, rows, new)
    return Scenario("flips_inplace", "poison", write(to_table(cols), _file(p, ".parquet")),
                    rules=("poison.label_changed",), poison_rows=rows)


def _flips_random(rate: float) -> Builder:
    def build(p: Path, w: World) -> Scenario:
        cols, proba = w.fresh()
        y = w.domain.index(cols[w.domain.label])
        rows = np.flatnonzero(w.rng.random(len(y)) < rate)
        new = _random_other(w, y[rows])
        return Scenario(f"flips_random_{rate:g}", "poison",
                        write(to_table(_relabel(w, cols, rows, new)), _file(p, ".parquet")),
                        rules=("poison.",), poison_rows=rows,
                        hard_rows=_hard(proba, rows, new, rate, len(w.domain.classes) - 1,
                                        targeted=False))

    return build


def s_targeted(p: Path, w: World) -> Scenario:
    """Every row of one natural subgroup gets the attacker's label."""
    cols, proba = w.fresh()
    y = w.domain.index(cols[w.domain.label])
    rows = np.flatnonzero(w.domain.subgroup(cols) & (y != w.domain.target))
    new = np.full(len(rows), w.domain.target)
    return Scenario("targeted_subgroup", "poison",
                    write(to_table(_relabel(w, cols, rows, new)), _file(p, ".parquet")),
                    rules=("poison.",), poison_rows=rows, hard_rows=_hard(proba, rows, new, 1.0))


def s_boundary(p: Path, w: World) -> Scenario:
    """Flips of rows near the decision boundary towards the attacker's label (the hard case:
    each flip is plausible on its own)."""
    cols, proba = w.fresh()
    y = w.domain.index(cols[w.domain.label])
    t = w.domain.target
    near = (proba[:, t] >= 0.3) & (proba[:, t] <= 0.7) & (y != t)
    rows = np.flatnonzero(near & (w.rng.random(len(y)) < 0.6))
    new = np.full(len(rows), t)
    return Scenario("boundary_flips", "poison",
                    write(to_table(_relabel(w, cols, rows, new)), _file(p, ".parquet")),
                    rules=("poison.",), poison_rows=rows, hard_rows=_hard(proba, rows, new, 0.6))


def s_backdoor_new_value(p: Path, w: World) -> Scenario:
    """Dirty-label backdoor: a never-seen value of a categorical forces the attacker's label."""
    cols, _ = w.fresh()
    rows = np.flatnonzero(w.rng.random(w.n) < 0.015)
    cols = _relabel(w, cols, rows, np.full(len(rows), w.domain.target))
    cols[w.domain.trigger_column][rows] = "ZZ-TRIGGER"
    return Scenario("backdoor_new_value", "poison", write(to_table(cols), _file(p, ".parquet")),
                    rules=("poison.trigger_pattern",), poison_rows=rows)


def s_backdoor_combo(p: Path, w: World) -> Scenario:
    """Dirty-label backdoor on a rare combination of existing values."""
    cols, proba = w.fresh()
    y = w.domain.index(cols[w.domain.label])
    rows = np.flatnonzero(w.domain.combo(cols) & (y != w.domain.target))
    new = np.full(len(rows), w.domain.target)
    return Scenario("backdoor_combination", "poison",
                    write(to_table(_relabel(w, cols, rows, new)), _file(p, ".parquet")),
                    rules=("poison.",), poison_rows=rows, hard_rows=_hard(proba, rows, new, 1.0))


def s_backdoor_clean(p: Path, w: World) -> Scenario:
    """Clean-label backdoor: one exact value stamped on rows that already carry the target."""
    cols, _ = w.fresh()
    y = w.domain.index(cols[w.domain.label])
    pool = np.flatnonzero(y == w.domain.target)
    rows = np.sort(w.rng.choice(pool, size=max(int(0.015 * w.n), 12), replace=False))
    col = w.domain.stamp_column
    stamp = float(np.nanquantile(w.base[col].astype(np.float64), 0.62)) + 0.37
    cols[col] = cols[col].astype(np.float64)
    cols[col][rows] = round(stamp, 2)
    cols[col] = cols[col].astype(w.base[col].dtype)
    return Scenario("backdoor_clean_label", "poison",
                    write(to_table(cols), _file(p, ".parquet")),
                    rules=("poison.trigger_pattern",), poison_rows=rows)


def s_conflicting(p: Path, w: World) -> Scenario:
    fresh, _ = w.fresh()
    nb = len(w.base[w.domain.label])
    picks = w.rng.choice(nb, size=max(int(0.03 * w.n), 10), replace=False)
    copies = take(w.base, picks)
    y = w.domain.index(copies[w.domain.label])
    copies = _relabel(w, copies, np.arange(len(y)), _random_other(w, y))
    copies[w.domain.id_column] = _new_ids(w, len(y))
    cols, (rows,) = _shuffle_in(w, concat(fresh, copies), np.arange(w.n, w.n + len(y)))
    return Scenario("conflicting_duplicates", "poison",
                    write(to_table(cols), _file(p, ".parquet")),
                    rules=("poison.conflicting_duplicate",), poison_rows=rows)


def _continuous(w: World) -> list[str]:
    skip = {w.domain.label, w.domain.id_column, w.domain.time_column}
    return [k for k, v in w.base.items() if k not in skip and v.dtype.kind == "f"]


def _inject(w: World, fresh: dict[str, np.ndarray], count: int, centre_row: int,
            spread: float, label: int, outlier: float = 0.0
            ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Append ``count`` near-copies of baseline row ``centre_row`` (continuous columns jittered
    by ``spread`` robust sds, moved ``outlier`` sds out) carrying ``label``."""
    extra = take(w.base, np.full(count, centre_row))
    extra = _copy(extra)
    for name in _continuous(w):
        x = w.base[name].astype(np.float64)
        q25, q75 = np.nanquantile(x, [0.25, 0.75])
        sd = (q75 - q25) / 1.349 or 1.0
        centre = np.nan_to_num(extra[name], nan=float(np.nanmedian(x)))
        extra[name] = np.round(centre + sd * (outlier + spread * w.rng.normal(size=count)), 3)
    extra[w.domain.label] = np.full(count, w.domain.classes[label], dtype=object
                                    ).astype(w.base[w.domain.label].dtype)
    extra[w.domain.id_column] = _new_ids(w, count)
    extra[w.domain.time_column] = fresh[w.domain.time_column][
        w.rng.integers(0, len(fresh[w.domain.time_column]), size=count)]
    n = len(fresh[w.domain.label])
    return concat(fresh, extra), np.arange(n, n + count)


def s_near_dups(p: Path, w: World) -> Scenario:
    fresh, _ = w.fresh()
    y = w.domain.index(w.base[w.domain.label])
    centre = int(np.flatnonzero(y != w.domain.target)[0])
    cols, rows = _inject(w, fresh, max(int(0.01 * w.n), 40), centre, 0.01, w.domain.target)
    cols, (rows,) = _shuffle_in(w, cols, rows)
    return Scenario("near_duplicate_cluster", "poison",
                    write(to_table(cols), _file(p, ".parquet")),
                    rules=("poison.injected_cluster",), poison_rows=rows)


def s_outliers(p: Path, w: World) -> Scenario:
    fresh, _ = w.fresh()
    cols, rows = _inject(w, fresh, max(int(0.01 * w.n), 40), 1, 0.2, w.domain.target,
                         outlier=5.0)
    cols, (rows,) = _shuffle_in(w, cols, rows)
    return Scenario("injected_cluster", "poison",
                    write(to_table(cols), _file(p, ".parquet")),
                    rules=("poison.",), poison_rows=rows)


def s_prior_injected(p: Path, w: World) -> Scenario:
    cols, _ = w.fresh()
    per = max(int(0.02 * w.n), 20)
    rows_all: list[np.ndarray] = []
    for k in range(5):
        cols, rows = _inject(w, cols, per, 11 + 17 * k, 0.01, w.domain.target)
        rows_all.append(rows)
    cols, (truth,) = _shuffle_in(w, cols, np.concatenate(rows_all))
    return Scenario("prior_shift_injected", "poison",
                    write(to_table(cols), _file(p, ".parquet")),
                    rules=("poison.",), poison_rows=truth)


BUILDERS: dict[str, Builder] = {
    "resample": s_resample,
    "small_batch": s_small_batch,
    "reorder": s_reorder,
    "reencode": s_reencode,
    "append": s_append,
    "csv_twin": s_csv,
    "csv_of_baseline": s_csv_of_baseline,
    "directory": s_directory,
    "covariate_shift": _drift("covariate_shift", ("drift.distribution",), shift=1.0),
    "seasonal": _drift("seasonal", (), season=True),
    "category_mix": _drift("category_mix", ("drift.distribution",), mix=True),
    "missingness": _drift("missingness", ("drift.null_rate",), missing=4.0),
    "new_highcard_values": _drift("new_highcard_values", (), new_values=0.25),
    "label_prior_natural": s_prior_natural,
    "column_added": _schema_case(
        "column_added", ("schema.column_added",),
        lambda t, w: t.append_column("extra_score", pa.array(w.rng.normal(size=len(t))))),
    "column_removed": _schema_case("column_removed", ("schema.column_removed",),
                                   lambda t, w: t.drop_columns([w.domain.numeric_drop])),
    "column_renamed": _schema_case("column_renamed", ("schema.column_renamed",), _renamed),
    "column_reordered": _schema_case("column_reordered", ("schema.column_reordered",),
                                     _reordered),
    "type_widened": _schema_case("type_widened", ("schema.type_widened",),
                                 lambda t, w: _retype(t, w.domain.int_column, pa.int64())),
    "type_narrowed": _schema_case("type_narrowed", ("schema.type_changed",),
                                  lambda t, w: _retype(t, w.domain.numeric_drop, pa.float32())),
    "type_changed": _schema_case("type_changed", ("schema.type_changed",),
                                 lambda t, w: _retype(t, w.domain.int_column, pa.string())),
    "nullability": _schema_case("nullability", ("schema.nullability_changed",), _not_null),
    "new_category": _schema_case("new_category", ("schema.new_category",), _new_category),
    "flips_inplace": s_flips_inplace,
    "flips_random_0.02": _flips_random(0.02),
    "flips_random_0.1": _flips_random(0.1),
    "targeted_subgroup": s_targeted,
    "boundary_flips": s_boundary,
    "backdoor_new_value": s_backdoor_new_value,
    "backdoor_combination": s_backdoor_combo,
    "backdoor_clean_label": s_backdoor_clean,
    "conflicting_duplicates": s_conflicting,
    "near_duplicate_cluster": s_near_dups,
    "injected_cluster": s_outliers,
    "prior_shift_injected": s_prior_injected,
}


def verdict_class(rule_ids: list[str]) -> str:
    """The scenario class a scan's findings imply (poison > schema > drift > clean)."""
    for prefix, kind in (("poison.", "poison"), ("schema.", "schema"), ("drift.", "drift")):
        if any(r.startswith(prefix) for r in rule_ids):
            return kind
    return "clean"


def acceptable(scenario: Scenario, rule_ids: list[str]) -> tuple[bool, str]:
    """Whether a scan's rule ids are right for the scenario (and why not)."""
    got = verdict_class(rule_ids)
    ok = got in ("clean", "drift") if scenario.kind == "drift" else got == scenario.kind
    missing = [r for r in scenario.rules if not any(x.startswith(r) for x in rule_ids)]
    if missing:
        return False, f"missing {missing}"
    return ok, "" if ok else f"class {got}"


def row_scores(found: np.ndarray, scenario: Scenario) -> dict[str, int]:
    """True positives (manipulated rows named), false positives (clean rows named), and the
    clear rows (manipulated, not hard) found and missed."""
    f = set(np.asarray(found).tolist())
    truth = set(scenario.poison_rows.tolist())
    clear = set(scenario.clear_rows.tolist())
    return {"tp": len(f & truth), "fp": len(f - truth), "clear_found": len(f & clear),
            "clear_missed": len(clear - f), "truth": len(truth), "hard": len(truth - clear)}


def precision_recall(found: np.ndarray, scenario: Scenario) -> tuple[float, float]:
    """Row precision (manipulated rows among those named) and recall over the clear rows."""
    s = row_scores(found, scenario)
    named = s["tp"] + s["fp"]
    clear = s["clear_found"] + s["clear_missed"]
    return (s["tp"] / named if named else 1.0 if not s["truth"] else 0.0,
            s["clear_found"] / clear if clear else 1.0)
