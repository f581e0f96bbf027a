"""Benchmark for issue 4: dataset validators against great-expectations and a statistics baseline.

Every scenario of ``tests/support/dataset_scenarios.py`` (benign resamples, drift, every schema
change, label flips, backdoors, conflicting duplicates, injected clusters) is written at the
benchmark size (default: 240k-row snapshots against a 200k-row baseline), then each tool scans each
snapshot in its own fresh process (so peak RSS is per run):

- ``custody``: ``compare_datasets(snapshot, baseline)``, the full scan (schema, drift, poisoning);
- ``great-expectations``: the suite Custody exports from the baseline profile (ordered columns,
  not-null, ranges, mean bands, value sets), validated on the snapshot with GX 1.x (pandas);
- ``stats``: a hand-rolled statistics baseline: pyarrow schema diff, PSI on ten baseline decile
  bins per numeric column (> 0.1), chi-square test per categorical column and the label
  (p < 0.01).

Reported: scenario accuracy (detection: flagged vs clean; class: clean/drift/schema/poison),
row-level precision/recall on the poisoning scenarios (rows a tool names), median scan wall time
(the call itself, imports excluded) and peak RSS of the process. ``--big`` also runs custody on a
10M-row snapshot (against a 2M-row baseline), which takes a few minutes to generate.

Reproduce: ``python benchmarks/bench_dataset.py --write-docs [--big]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "benchmarks.md"
START, END = "<!-- bench_dataset:start -->", "<!-- bench_dataset:end -->"
HEADING = "## Dataset validators (issue 4)"
TOOLS = ("custody", "great-expectations", "stats")


def _scenarios_module() -> Any:
    spec = importlib.util.spec_from_file_location("dataset_scenarios",
                                                  REPO / "tests" / "support"
                                                  / "dataset_scenarios.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["dataset_scenarios"] = mod
    spec.loader.exec_module(mod)
    return mod


# --- workers (one process per tool and snapshot) ----------------------------------------------


def _work_custody(snap: Path, base: Path, extra: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    from custody.validators.dataset.compare import compare_datasets
    from custody.validators.findings import Severity

    start = time.perf_counter()
    c = compare_datasets(snap, base)
    elapsed = time.perf_counter() - start
    rows = np.unique(np.concatenate(list(c.rows.values()))) if c.rows else np.zeros(0, int)
    # "flagged" = any finding of severity low or more (the report's verdict blocks at medium)
    return {"seconds": elapsed, "rules": sorted({f.rule_id for f in c.report.findings}),
            "flagged": any(f.severity >= Severity.LOW for f in c.report.findings),
            "rows": rows.tolist()}


def _read_arrow(path: Path) -> Any:
    import pyarrow as pa

    from custody.validators.dataset.reader import open_source

    source = open_source(path)
    return pa.Table.from_batches(list(source.batches()), schema=source.schema)


def _work_gx(snap: Path, base: Path, extra: dict[str, Any]) -> dict[str, Any]:
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    suite = gx.ExpectationSuite(**json.loads(Path(extra["suite"]).read_text()))
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_def = (context.data_sources.add_pandas("bench").add_dataframe_asset("snapshot")
                 .add_batch_definition_whole_dataframe("all"))
    start = time.perf_counter()
    frame = _read_arrow(snap).to_pandas()
    batch = batch_def.get_batch(batch_parameters={"dataframe": frame})
    result = batch.validate(suite, result_format={"result_format": "COMPLETE"}).to_json_dict()
    elapsed = time.perf_counter() - start
    rows: set[int] = set()
    failed = []
    for item in result["results"]:
        if not item["success"]:
            failed.append(item["expectation_config"]["type"])
            index = (item.get("result") or {}).get("unexpected_index_list") or []
            rows.update(i for i in index if isinstance(i, int))
    return {"seconds": elapsed, "rules": sorted(set(failed)), "flagged": bool(failed),
            "rows": sorted(rows)}


def _psi(expected: Any, actual: Any) -> float:
    import numpy as np

    e = np.clip(expected, 1e-4, None)
    a = np.clip(actual, 1e-4, None)
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def _work_stats(snap: Path, base: Path, extra: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    from scipy.stats import chi2_contingency

    start = time.perf_counter()
    b, s = _read_arrow(base), _read_arrow(snap)
    rules: list[str] = []
    if b.schema.names != s.schema.names:
        rules.append("schema.columns")
    for f in b.schema:
        if f.name in s.schema.names and s.schema.field(f.name).type != f.type:
            rules.append("schema.type")
    for name in (n for n in b.schema.names if n in s.schema.names):
        bt, st = b.schema.field(name).type, s.schema.field(name).type
        if pa.types.is_floating(bt) and pa.types.is_floating(st):
            bx = b.column(name).to_numpy(zero_copy_only=False)
            sx = s.column(name).to_numpy(zero_copy_only=False)
            bx, sx = bx[np.isfinite(bx)], sx[np.isfinite(sx)]
            edges = np.unique(np.quantile(bx, np.linspace(0, 1, 11))[1:-1])
            eb = np.bincount(np.searchsorted(edges, bx), minlength=len(edges) + 1)
            es = np.bincount(np.searchsorted(edges, sx), minlength=len(edges) + 1)
            if _psi(eb / eb.sum(), es / es.sum()) > 0.1:
                rules.append(f"psi:{name}")
        elif (pa.types.is_string(bt) or pa.types.is_integer(bt)) and st == bt:
            vb, vs = pc.value_counts(b.column(name)), pc.value_counts(s.column(name))
            if len(vb) > 50:
                continue
            cb = dict(zip(vb.field("values").to_pylist(), vb.field("counts").to_pylist(),
                          strict=True))
            cs = dict(zip(vs.field("values").to_pylist(), vs.field("counts").to_pylist(),
                          strict=True))
            keys = sorted(set(cb) | set(cs), key=str)
            table = np.array([[cb.get(k, 0) for k in keys], [cs.get(k, 0) for k in keys]])
            table = table[:, table.sum(axis=0) > 0]
            if table.shape[1] > 1 and chi2_contingency(table)[1] < 0.01:
                rules.append(f"chi2:{name}")
    elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "rules": rules, "flagged": bool(rules), "rows": []}


WORKERS = {"custody": _work_custody, "great-expectations": _work_gx, "stats": _work_stats}


def worker(tool: str, snap: Path, base: Path, extra: dict[str, Any]) -> None:
    out = WORKERS[tool](snap, base, extra)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sys.stdout.write(json.dumps(out))


def run_worker(tool: str, snap: Path, base: Path, extra: dict[str, Any]) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", tool, str(snap), str(base), json.dumps(extra)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                          env={**os.environ, "GX_ANALYTICS_ENABLED": "false"})
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{tool} on {snap.name} failed:\n{proc.stderr[-3000:]}")
    out = dict(json.loads(proc.stdout.strip().splitlines()[-1]))
    out["process_seconds"] = elapsed  # interpreter start, imports, reading and scan
    return out


# --- driver -------------------------------------------------------------------------------------


def _class_of(tool: str, out: dict[str, Any], ds: Any) -> str:
    if tool == "custody":
        return str(ds.verdict_class(out["rules"]))
    if tool == "stats":
        if any(r.startswith("schema.") for r in out["rules"]):
            return "schema"
        return "drift" if out["rules"] else "clean"
    return "flagged" if out["flagged"] else "clean"


def evaluate(data: Path, n_base: int, n_snap: int, runs: int,
             only: set[str] | None = None) -> dict[str, Any]:
    ds = _scenarios_module()
    load_start = os.getloadavg()[0]
    start = time.perf_counter()
    base, scenarios = ds.scenarios(data, n_base, n_snap, only=only)
    print(f"generated {len(scenarios)} scenarios in {time.perf_counter() - start:.1f} s",
          file=sys.stderr)
    from custody.validators.dataset.expectations import baseline_suite
    from custody.validators.dataset.profile import profile_dataset

    suite_path = data / "gx-suite.json"
    suite_path.write_text(json.dumps(baseline_suite(profile_dataset(base, label="label"),
                                                    skip=frozenset({"id"}))))
    extra = {"suite": str(suite_path)}
    table: dict[str, dict[str, Any]] = {t: {"detect": 0, "klass": 0, "tp": 0, "fp": 0, "fn": 0,
                                            "seconds": [], "rss": [], "full": [],
                                            "process": []}
                                        for t in TOOLS}
    per_scenario: list[dict[str, Any]] = []
    for sc in scenarios:
        import numpy as np

        row: dict[str, Any] = {"scenario": sc.name, "kind": sc.kind}
        for tool in TOOLS:
            outs = [run_worker(tool, sc.snapshot, base, extra)
                    for _ in range(runs if sc.name == "resample" else 1)]
            out = outs[0]
            t = table[tool]
            klass = _class_of(tool, out, ds)
            t["detect"] += int(out["flagged"] == (sc.kind != "clean"))
            t["klass"] += int(klass == sc.kind)
            truth = set(np.asarray(sc.poison_rows).tolist())
            found = set(out["rows"])
            if sc.kind == "poison":
                t["tp"] += len(found & truth)
                t["fn"] += len(truth - found)
            t["fp"] += len(found - truth)
            t["seconds"] += [o["seconds"] for o in outs]
            t["process"] += [o["process_seconds"] for o in outs]
            t["rss"] += [o["peak_rss_mb"] for o in outs]
            if sc.name == "resample":
                t["full"] = [o["seconds"] for o in outs]
            row[tool] = f"{klass}" + (f" ({len(found & truth)}/{len(truth)} rows, "
                                      f"{len(found - truth)} extra)" if sc.kind == "poison"
                                      else "")
        per_scenario.append(row)
        print(json.dumps(row), file=sys.stderr)
    return {"tools": table, "scenarios": per_scenario, "count": len(scenarios),
            "load": (load_start, os.getloadavg()[0])}


def big_run(data: Path, n_base: int, n_snap: int) -> dict[str, Any]:
    """custody alone on a large poisoned snapshot (near-duplicate clusters + flips)."""
    import numpy as np
    import pyarrow.parquet as pq

    ds = _scenarios_module()
    base = data / f"big-baseline-{n_base}.parquet"
    snap = data / f"big-snapshot-{n_snap}.parquet"
    truth_file = data / f"big-truth-{n_snap}.npy"
    start = time.perf_counter()
    if not base.exists():
        _write_chunks(ds, base, n_base, seed=1, start_id=0)
    if not snap.exists():
        truth = _write_chunks(ds, snap, n_snap, seed=2, start_id=n_base, poison=True)
        np.save(truth_file, truth)
    print(f"big data ready in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    out = run_worker("custody", snap, base, {})
    truth_rows = set(np.load(truth_file).tolist())
    found = set(out["rows"])
    return {"n_base": pq.ParquetFile(base).metadata.num_rows,
            "n_snap": pq.ParquetFile(snap).metadata.num_rows, "seconds": out["seconds"],
            "peak_rss_mb": out["peak_rss_mb"], "rules": out["rules"],
            "precision": len(found & truth_rows) / max(len(found), 1),
            "recall": len(found & truth_rows) / max(len(truth_rows), 1)}


def _write_chunks(ds: Any, path: Path, n: int, seed: int, start_id: int,
                  poison: bool = False) -> Any:
    """Write ``n`` rows of the process in 1M-row chunks; with ``poison``, every chunk gets
    1% label flips and a 0.05% near-duplicate cluster. Returns the poisoned rows."""
    import numpy as np
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    chunk = 1_000_000
    truth: list[Any] = []
    writer = None
    done = 0
    try:
        while done < n:
            m = min(chunk, n - done)
            cols = ds.process(rng, m, start_id=start_id + done, start_time=done)
            if poison:
                flips = np.flatnonzero(rng.random(m) < 0.01)
                cols["label"][flips] = 1 - cols["label"][flips]
                k = m // 2000
                at = rng.choice(m, size=k, replace=False)
                for name, centre in (("f0", -0.7), ("f1", 0.9), ("f2", 0.2), ("f3", 2.2),
                                     ("f4", -1.1)):
                    cols[name][at] = np.round(centre + rng.normal(scale=1e-3, size=k), 6)
                cols["colour"][at] = "blue"
                cols["label"][at] = 1
                truth.append(np.union1d(flips, at) + done)
            table = ds.to_table(cols)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema, compression="snappy")
            writer.write_table(table, row_group_size=256_000)
            done += m
    finally:
        if writer is not None:
            writer.close()
    return np.concatenate(truth) if truth else np.zeros(0, dtype=np.int64)


def render(res: dict[str, Any], big: dict[str, Any] | None, n_base: int, n_snap: int) -> str:
    count = res["count"]
    lines = [
        f"{count} scenarios from `tests/support/dataset_scenarios.py`, each a {n_snap:,}-row "
        "snapshot "
        f"(appends and copies: the baseline's size plus the change) against a {n_base:,}-row "
        "baseline; every tool runs in a fresh process per snapshot. Detection = flagged when "
        "the scenario is not clean (and not flagged when it is); class = the verdict names the "
        "right kind (clean / drift / schema / poison; great-expectations only says pass or "
        "fail). Rows: the rows a tool names, against the manipulated rows of the poisoning "
        "scenarios. Time = the scan call (imports excluded), median over all scenarios; "
        "\"full scan\" = the benign-resample snapshot, median of repeated runs; \"process\" = "
        "the whole worker process (interpreter start, imports, read, scan), median over all "
        f"scenarios. Load average (1 min) at start / end: {res['load'][0]:.2f} / "
        f"{res['load'][1]:.2f} on a machine shared with other work.",
        "",
        "| Tool | detection accuracy | class accuracy | row precision | row recall | "
        f"full scan ({n_snap:,} vs {n_base:,}) | median scan | process | peak RSS (max) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for tool in TOOLS:
        t = res["tools"][tool]
        found = t["tp"] + t["fp"]
        prec = f"{t['tp'] / found:.2f}" if found else "-"
        rec = f"{t['tp'] / (t['tp'] + t['fn']):.2f}" if t["tp"] + t["fn"] and found else "-"
        klass = f"{t['klass']}/{count}" if tool != "great-expectations" else "-"
        lines.append(
            f"| {tool} | {t['detect']}/{count} | {klass} | {prec} | {rec} | "
            f"{statistics.median(t['full']):.2f} s | {statistics.median(t['seconds']):.2f} s | "
            f"{statistics.median(t['process']):.2f} s | {max(t['rss']):.0f} MB |")
    lines += ["", f"Targets (custody, full scan of a 240,000-row snapshot against a 200,000-row "
              f"baseline): under 1.5 s and 400 MB RSS. This run ({n_snap:,} vs {n_base:,}): "
              f"{_met(res['tools']['custody'], 1.5, 400)}.", ""]
    if big is not None:
        ok = big["seconds"] < 60 and big["peak_rss_mb"] < 1536
        lines += [
            f"Large run (custody only): {big['n_snap']:,}-row snapshot against a "
            f"{big['n_base']:,}-row baseline, poisoned with 1% random label flips and "
            f"near-duplicate clusters: {big['seconds']:.1f} s, peak RSS "
            f"{big['peak_rss_mb']:.0f} MB (targets 60 s and 1.5 GB: "
            f"{'met' if ok else 'NOT met'}); row precision {big['precision']:.2f}, "
            f"recall {big['recall']:.2f}; rules: "
            f"{', '.join(big['rules'])}.", ""]
    lines += ["Per scenario (verdict class; poisoning: manipulated rows found / total, extra "
              "rows named):", "", "| scenario | truth | " + " | ".join(TOOLS) + " |",
              "|---|---|" + "---|" * len(TOOLS)]
    for row in res["scenarios"]:
        lines.append(f"| {row['scenario']} | {row['kind']} | "
                     + " | ".join(row[t] for t in TOOLS) + " |")
    lines += ["", "Machine:", "", f"- nproc: {os.cpu_count()}",
              f"- Python: {platform.python_version()}", f"- {_versions()}", "",
              f"Measured {dt.date.today().isoformat()}. Reproduce: "
              "`python benchmarks/bench_dataset.py --write-docs --big`", ""]
    return "\n".join(lines)


def _met(t: dict[str, Any], seconds: float, mb: float) -> str:
    s, r = statistics.median(t["full"]), max(t["rss"])
    return f"{s:.2f} s and {r:.0f} MB: {'met' if s < seconds and r < mb else 'NOT met'}"


def _versions() -> str:
    from importlib.metadata import version

    names = ("pyarrow", "numpy", "scipy", "great-expectations", "pandas")
    return ", ".join(f"{n} {version(n)}" for n in names)


def write_docs(body: str) -> None:
    text = DOCS.read_text(encoding="utf-8")
    block = f"{START}\n\n{body}\n{END}"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = (text.rstrip("\n") + f"\n\n{HEADING}\n\nScript: `benchmarks/bench_dataset.py`.\n\n"
                + block + "\n")
    DOCS.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        worker(argv[1], Path(argv[2]), Path(argv[3]), json.loads(argv[4]))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=int, default=200_000)
    ap.add_argument("--snap", type=int, default=240_000)
    ap.add_argument("--runs", type=int, default=5, help="repeats of the full-scan measurement")
    ap.add_argument("--big", action="store_true", help="also the 10M-row custody run")
    ap.add_argument("--big-rows", type=int, default=10_000_000)
    ap.add_argument("--big-base", type=int, default=2_000_000)
    ap.add_argument("--data", type=Path, help="scratch folder (default: a temp dir)")
    ap.add_argument("--only", help="comma-separated scenario names (a quick check)")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args(argv)
    data = args.data or Path(tempfile.mkdtemp(prefix="custody-bench-dataset-"))
    data.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(",")) if args.only else None
    res = evaluate(data / "scenarios", args.base, args.snap, args.runs, only)
    big = big_run(data, args.big_base, args.big_rows) if args.big else None
    body = render(res, big, args.base, args.snap)
    print(body)
    if args.write_docs:
        write_docs(body)


if __name__ == "__main__":
    main()
