"""Ledger speed (issue 6) on SQLite and a throwaway PostgreSQL (initdb in a temp dir, loopback).

1. appends/s through ``Ledger.append_version`` (sign + append + tree update, as
   ``tests/ledger_helpers.append_one``): one writer, and 8 writer processes at once;
2. ``Ledger.prove_inclusion`` / ``prove_consistency`` at 1,000,000 bulk-loaded leaves (real leaf
   hashes, every complete subtree, signed checkpoints), verified; peer: pymerkle in memory;
3. upstream ``lineage()`` at depth 20 over 1,000,000 edges (one recursive CTE); peer: a naive
   breadth-first walk, one ``Ledger.edges`` call per hop.

    python benchmarks/bench_ledger.py [--quick] [--no-peer] [--write-docs]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import platform
import random
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, insert, text

from custody.provenance.ledger import models
from custody.provenance.ledger.store import Ledger
from custody.provenance.ledger.tree import encode_frontier
from custody.provenance.log.checkpoint import (
    Checkpoint,
    NoteSigner,
    sign_checkpoint,
    verify_checkpoint,
)
from custody.provenance.log.merkle import (
    CompactRange,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from custody.provenance.verification.lineage import lineage
from custody.provenance.workspace import Workspace, init_workspace, load_workspace
from custody.signing.statement import canonical_json

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "benchmarks.md"
START, END = "<!-- bench_ledger:start -->", "<!-- bench_ledger:end -->"
BATCH = 20_000
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Sizes:  # appends per run (one writer / each of 8), log leaves, proof queries per run,
    appends: int  # lineage DAG width (21 layers), lineage queries per run, runs
    per_writer: int
    leaves: int
    queries: int
    width: int
    walks: int
    runs: int


FULL = Sizes(appends=1000, per_writer=250, leaves=1_000_000, queries=200, width=25_000, walks=20,
             runs=5)
QUICK = Sizes(appends=100, per_writer=20, leaves=20_000, queries=50, width=500, walks=10, runs=3)
WRITERS, DEPTH = 8, 20


def helpers() -> Any:
    spec = importlib.util.spec_from_file_location(
        "h", REPO / "tests" / "support" / "ledger_helpers.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def table(model: Any) -> Any:
    return model.__table__


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


# --- throwaway PostgreSQL (as tests/conftest.py's ThrowawayPostgres) -----------------------------

class Postgres:
    OPTS = "-c synchronous_commit=off -c max_connections=100"  # fsync stays on

    def __init__(self, root: Path):
        found = shutil.which("initdb") or next(
            iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)), None)
        if found is None:
            raise SystemExit("no PostgreSQL binaries (initdb); apt-get install postgresql")
        self.bindir, self.root, self.as_root = Path(found).parent, root / "pg", os.geteuid() == 0
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])

    def _run(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        full = ["runuser", "-u", "postgres", "--", *cmd] if self.as_root else list(cmd)
        return subprocess.run(full, capture_output=True, text=True, check=False, timeout=300)

    def start(self) -> str:
        self.root.mkdir(mode=0o755)
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
        data = str(self.root / "data")
        for cmd in ([str(self.bindir / "initdb"), "-D", data, "-A", "trust", "-U", "postgres",
                     "-E", "UTF8"],
                    [str(self.bindir / "pg_ctl"), "-D", data, "-l", str(self.root / "log"), "-w",
                     "-o", f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                     f"-c unix_socket_directories={self.root} {self.OPTS}", "start"]):
            done = self._run(*cmd)
            if done.returncode:
                raise SystemExit(f"PostgreSQL did not start: {done.stderr.strip()}")
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/"

    def version(self, url: str) -> str:
        with create_engine(url + "postgres").connect() as conn:
            return str(conn.execute(text("SHOW server_version")).scalar()).split()[0]

    def create_db(self, url: str, name: str) -> str:
        engine = create_engine(url + "postgres", isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return url + name

    def stop(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "stop")


# --- 1. appends ----------------------------------------------------------------------------------

def appender(home: Path) -> Callable[[int, str], None]:
    """``run(count, prefix)``: append as tests/support/ledger_writer.py does (odd records trained on
    the one before), each a real signed record through ``Ledger.append_version``."""
    from custody.signing.key_signer import ECKeySigner
    from custody.signing.keys import load_private_key

    h, ledger = helpers(), load_workspace(home).open_ledger(append=True)
    signer = ECKeySigner(load_private_key(home / "keys" / "signing.key"))

    def run(count: int, prefix: str) -> None:
        previous = None
        for i in range(count):
            inputs = [previous] if previous is not None and i % 2 else None
            previous = h.append_one(ledger, signer, f"{prefix}-{i}",
                                    "model" if inputs else "dataset", f"{prefix} {i}".encode(),
                                    inputs)
    return run


def writer_main(home: Path, count: int, prefix: str) -> None:
    """Writer process: warm up, say READY, wait for GO, append ``count``, print start/end."""
    run = appender(home)
    run(4, f"{prefix}-warm")
    print("READY", flush=True)
    sys.stdin.readline()
    start = time.monotonic()
    run(count, prefix)
    print(f"DONE {start} {time.monotonic()}", flush=True)


def single_writer(home: Path, count: int, tag: str) -> tuple[float, float]:
    """(appends per wall second, appends per CPU second of this process)."""
    run = appender(home)
    run(10, f"{tag}-warm")
    wall, cpu = time.perf_counter(), time.process_time()
    run(count, tag)
    return count / (time.perf_counter() - wall), count / (time.process_time() - cpu)


def many_writers(ws: Workspace, count: int, tag: str) -> float:
    procs = [subprocess.Popen([sys.executable, __file__, "--writer", str(ws.home), str(count),
                               f"{tag}-w{i}"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True) for i in range(WRITERS)]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "READY"
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("GO\n")
        p.stdin.flush()
    spans = []
    for p in procs:
        out, _ = p.communicate(timeout=600)
        if p.returncode:
            raise SystemExit(f"writer failed ({p.returncode})")
        _, start, end = out.split()
        spans.append((float(start), float(end)))
    return WRITERS * count / (max(e for _, e in spans) - min(s for s, _ in spans))


# --- bulk loads ----------------------------------------------------------------------------------

def load(engine: Engine, table: Any, rows: Iterator[dict[str, Any]]) -> None:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            with engine.begin() as conn:
                conn.execute(insert(table), batch)
            batch = []
    if batch:
        with engine.begin() as conn:
            conn.execute(insert(table), batch)


def payload(i: int) -> bytes:
    return canonical_json({"type": "bench_entry", "seq": i, "note": "synthetic leaf"})


def checkpoint_row(signer: NoteSigner, frontier: CompactRange) -> dict[str, Any]:
    root = frontier.root()
    note = sign_checkpoint(Checkpoint(signer.name, frontier.size, root), signer)
    return {"size": frontier.size, "root": root.hex(), "note": note.decode(),
            "frontier": encode_frontier(frontier.hashes), "created_at": NOW}


def load_log(ledger: Ledger, n: int, marks: set[int]) -> None:
    """Entries 0..n-1, every complete subtree, signed checkpoints at ``marks`` and at ``n``."""
    assert ledger.signer is not None
    frontier, nodes, checkpoints = CompactRange(), [], []
    tables, ends = (table(models.LedgerEntry), table(models.MerkleNode)), marks | {n}

    def entries() -> Iterator[dict[str, Any]]:
        for i in range(n):
            body = payload(i)
            leaf = leaf_hash(body)
            nodes.extend({"level": x.level, "index": x.index, "hash": x.hash}
                         for x in frontier.append(leaf))
            if frontier.size in ends:
                checkpoints.append(checkpoint_row(ledger.signer, frontier))  # type: ignore[arg-type]
            yield {"idx": i, "entry_type": "bench_entry", "payload": body.decode(),
                   "leaf_hash": leaf.hex(), "created_at": NOW}
            if len(nodes) >= BATCH:
                load(ledger.engine, tables[1], iter(nodes))
                nodes.clear()

    load(ledger.engine, tables[0], entries())
    load(ledger.engine, tables[1], iter(nodes))
    load(ledger.engine, table(models.CheckpointRow), iter(checkpoints))


def load_graph(engine: Engine, width: int) -> None:
    """A layered DAG: 21 layers x ``width`` versions (id = layer * width + column + 1), each above
    layer 0 made from its own and the next column below: 40 * width edges, each with an entry."""
    versions, edges = width * (DEPTH + 1), 2 * width * DEPTH

    def edge(e: int) -> dict[str, Any]:
        out = width + e // 2  # 0-based position of the output version
        src = (out - width) // width * width + (out % width + e % 2) % width
        return {"input_version_id": src + 1, "output_version_id": out + 1,
                "activity": "derived_from", "entry_idx": versions + e}

    tables: list[tuple[Any, Iterator[dict[str, Any]]]] = [
        (models.LedgerEntry, ({"idx": i, "entry_type": "artifact_version" if i < versions
                               else "lineage_edge", "payload": "{}", "leaf_hash": "0" * 64,
                               "created_at": NOW} for i in range(versions + edges))),
        (models.Artifact, ({"id": c + 1, "name": f"node-{c:06d}", "kind": "dataset",
                            "created_at": NOW} for c in range(width))),
        (models.ArtifactVersion, ({
            "id": i + 1, "artifact_id": i % width + 1, "version": i // width + 1, "entry_idx": i,
            "digest_algorithm": "sha256", "digest": hashlib.sha256(b"%d" % i).hexdigest(),
            "size": i, "file_count": 1, "signer": "bench", "scan_verdict": "clean",
            "scan_max_severity": None, "recorded_at": NOW} for i in range(versions))),
        (models.LineageEdge, (edge(e) for e in range(edges))),
    ]
    for model, rows in tables:
        load(engine, table(model), rows)


def analyze(engine: Engine) -> None:
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE"))


def timed(fn: Callable[..., Any], *args: Any, **kw: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn(*args, **kw)
    return (time.perf_counter() - start) * 1000, out


# --- 2. proofs and 3. lineage --------------------------------------------------------------------

def proofs(ws: Workspace, s: Sizes, rng: random.Random) -> dict[str, Any]:
    signer = ws.ledger_signer()
    ledger = Ledger.open(ws.ledger_url, signer=signer)
    n, marks = s.leaves, {rng.randrange(1, s.leaves) for _ in range(3)} | {1 << 19}
    start = time.perf_counter()
    load_log(ledger, n, {m for m in marks if m < n})
    analyze(ledger.engine)
    out: dict[str, Any] = {"load_s": time.perf_counter() - start}
    head = ledger.head()
    assert signer is not None and head.size == n
    verify_checkpoint(head.note, signer.verifier())
    root = bytes.fromhex(head.root)
    for kind in ("inclusion", "consistency"):
        prove = ledger.prove_inclusion if kind == "inclusion" else ledger.prove_consistency
        runs: list[list[float]] = []
        budget = time.perf_counter() + 60  # a slow plan still gets >= 1 run of s.queries
        while len(runs) < s.runs and (not runs or time.perf_counter() < budget):
            runs.append([timed(prove, a, n)[0] for a in rng.choices(range(1, n), k=s.queries)])
        times = [t for run in runs for t in run]
        out[kind] = (statistics.median(statistics.median(r) for r in runs), pct(times, 0.99),
                     len(times))
    checked = 0
    for idx in rng.sample(range(n), 5):  # real proofs: they verify against the signed root
        verify_inclusion(leaf_hash(ledger.entry(idx).payload.encode()), idx, n,
                         ledger.prove_inclusion(idx, n), root)
        checked += 1
    for m in sorted(marks):
        if m < n:
            old = ledger.checkpoint(m)
            verify_consistency(m, n, ledger.prove_consistency(m, n), bytes.fromhex(old.root), root)
            checked += 1
    out["verified"], out["root"] = checked, root
    ledger.close()
    return out


def naive_bfs(ledger: Ledger, root_id: int, depth: int) -> int:
    """One ``Ledger.edges`` call (edges + versions at the other end) per hop."""
    seen, frontier, edges = {root_id}, [root_id], set()
    for _ in range(depth):
        hop = ledger.edges(frontier, upstream=True)
        edges |= {(e.input_version_id, e.output_version_id) for e, _ in hop}
        frontier = sorted({v.id for _, v in hop} - seen)
        seen |= set(frontier)
        if not frontier:
            break
    return len(edges)


def lineage_bench(url: str, s: Sizes, rng: random.Random) -> dict[str, Any]:
    created = Ledger.create(url, signer=NoteSigner.generate("bench.custody/lineage"))
    start = time.perf_counter()
    load_graph(created.engine, s.width)
    analyze(created.engine)
    created.close()
    out: dict[str, Any] = {"load_s": time.perf_counter() - start}
    ledger = Ledger.open(url)
    expected = DEPTH * (DEPTH + 1)  # 2 edges per reached version: 2 * (1 + 2 + ... + 20)
    cols = [rng.randrange(s.width) for _ in range(3 + s.walks * s.runs)]
    ref = f"node-{cols[0]:06d}@{DEPTH + 1}"
    for _ in range(3):  # warm-up
        lineage(ledger, ref, upstream=True, depth=DEPTH)
    times: dict[str, list[float]] = {"cte": [], "walk": [], "bfs": []}
    for col in cols[3:]:
        ref = f"node-{col:06d}@{DEPTH + 1}"
        ms, graph = timed(lineage, ledger, ref, upstream=True, depth=DEPTH)
        assert len(graph.edges) == expected and max(n.depth for n in graph.nodes) == DEPTH
        root = ledger.resolve(ref)
        walk_ms, (rows, _) = timed(ledger.walk, root, upstream=True, depth=DEPTH)
        bfs_ms, count = timed(naive_bfs, ledger, root.id, DEPTH)
        assert count == len(rows) == expected, (count, len(rows))
        for key, value in (("cte", ms), ("walk", walk_ms), ("bfs", bfs_ms)):
            times[key].append(value)
    with ledger.engine.connect() as conn:
        out["edges"] = conn.execute(text("SELECT count(*) FROM lineage_edges")).scalar()
    out.update({k: (statistics.median(v), pct(v, 0.99), len(v)) for k, v in times.items()},
               expected=expected)
    ledger.close()
    return out


def pymerkle_peer(n: int, root: bytes, s: Sizes, rng: random.Random) -> dict[str, Any] | None:
    try:
        from pymerkle import InmemoryTree
    except ImportError:
        return None
    start, tree = time.perf_counter(), InmemoryTree(algorithm="sha256")
    for i in range(n):
        tree.append_entry(payload(i))
    out: dict[str, Any] = {"build_s": time.perf_counter() - start}
    assert tree.get_root(n) == root, "pymerkle disagrees with the ledger's signed root"
    for kind in ("inclusion", "consistency"):
        prove = tree.prove_inclusion if kind == "inclusion" else tree.prove_consistency
        times = [timed(prove, a, n)[0] for a in rng.choices(range(1, n), k=s.runs * s.queries)]
        out[kind] = (statistics.median(times), pct(times, 0.99), len(times))
    return out


# --- report --------------------------------------------------------------------------------------

def ms(stat: tuple[float, float, int]) -> str:
    return f"{stat[0]:.2f} ms / {stat[1]:.2f} ms"


def report(s: Sizes, res: dict[str, dict[str, Any]], peer: dict[str, Any] | None,
           loads: list[float], pg_version: str, elapsed: float) -> str:
    lite, pg = res["sqlite"], res["postgresql"]

    def met(ok: bool) -> str:
        return "yes" if ok else "**no**"

    rows = [
        ("Appends/s, 1 writer (median of runs)", f"{lite['single']:,.0f}/s",
         f"{pg['single']:,.0f}/s", ">= 1,000/s on SQLite", met(lite["single"] >= 1000)),
        ("Appends per CPU-second of the writer, 1 writer (load-independent; SQLite runs in it)",
         f"{lite['single_cpu']:,.0f}/s", "-", "-", "-"),
        (f"Appends/s, {WRITERS} writer processes, total", f"{lite['multi']:,.0f}/s",
         f"{pg['multi']:,.0f}/s", "-", "-"),
    ]
    for kind in ("inclusion", "consistency"):
        worst = max(lite[kind][0], pg[kind][0], lite[kind][1], pg[kind][1])
        rows.append((f"`prove_{kind}` at {s.leaves:,} leaves, median / p99 "
                     f"({lite[kind][2]} random queries)", ms(lite[kind]), ms(pg[kind]),
                     "< 5 ms", met(worst < 5)))
    worst = max(lite["cte"][0], pg["cte"][0])
    rows += [
        (f"Upstream `lineage()` depth {DEPTH}, {lite['edges']:,} edges, median / p99 "
         f"({lite['cte'][2]} queries)", ms(lite["cte"]), ms(pg["cte"]), "< 50 ms", met(worst < 50)),
        ("of which `Ledger.walk` (recursive CTE + versions), median / p99", ms(lite["walk"]),
         ms(pg["walk"]), "-", "-"),
        (f"peer: naive BFS, one `Ledger.edges` call per hop ({DEPTH} hops), median / p99",
         ms(lite["bfs"]), ms(pg["bfs"]), "-", "-"),
    ]
    if peer is not None:
        for kind in ("inclusion", "consistency"):
            rows.append((f"peer: pymerkle `InmemoryTree.prove_{kind}` (in memory), median / p99",
                         ms(peer[kind]), "(same, in memory)", "-", "-"))
    loaded = (f"(load: SQLite {lite['load_s']:.0f} s, PostgreSQL {pg['load_s']:.0f} s)",
              f"(load: SQLite {lite['lineage_load_s']:.0f} s, PostgreSQL "
              f"{pg['lineage_load_s']:.0f} s)")
    out = [
        f"Sizes: {s.appends:,} appends per single-writer run, {WRITERS} x {s.per_writer:,} per "
        f"multi-writer run; a log of {s.leaves:,} leaves; a lineage graph of {lite['edges']:,} "
        f"edges. Proofs: median of up to {s.runs} run medians, p99 of all calls. Lineage: over "
        f"random top-layer versions, each walk {lite['expected']} edges. All through the public "
        "`Ledger` API (a session and its queries per call).",
        "",
        "| Benchmark | SQLite | PostgreSQL | target | met |",
        "|---|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows],
        "",
        "- Appends: real signed records (`tests/ledger_helpers.append_one`: in-toto statement, EC "
        "signature, DSSE bundle, entry + lineage edge for every other record, Merkle nodes, "
        "Ed25519 checkpoint), no file hashing. Writers are processes warmed up before a common "
        "start signal; total = all appends / wall time.",
        f"- Proof ledgers: `Ledger.create` (Alembic schema), then {s.leaves:,} entries, every "
        "complete subtree (`CompactRange.append`) and signed checkpoints bulk-loaded with "
        f"SQLAlchemy Core executemany {loaded[0]}. {lite['verified']} proofs per database "
        "verified against signed roots" + (f"; pymerkle's root over the same entries equals "
                                           f"the ledger's (build {peer['build_s']:.0f} s)."
                                           if peer else "."),
        f"- Lineage: a layered DAG, {DEPTH + 1} layers x {s.width:,} versions, each made from two "
        f"of the layer below, every row with its ledger entry {loaded[1]}. PostgreSQL ANALYZEd "
        "after the load; SQLite not (Custody does not run ANALYZE).",
        f"- Machine: nproc {os.cpu_count()}, Python {platform.python_version()}, SQLite "
        f"{sqlite3.sqlite_version}, PostgreSQL {pg_version} (fsync on, `synchronous_commit=off`, "
        "as SQLite's WAL `synchronous=NORMAL`: a crash cannot corrupt, a power cut may lose the "
        "last commits). Load average (1 min) at start / middle / end: "
        + " / ".join(f"{x:.2f}" for x in loads) + " on a shared 2-core machine.",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} in {elapsed / 60:.1f} min. Reproduce: "
        f"`python benchmarks/bench_ledger.py{' --quick' if s is QUICK else ''} --write-docs`",
    ]
    return "\n".join(out)


def write_docs(body: str) -> None:
    doc = DOCS.read_text(encoding="utf-8")
    block = f"{START}\n\n{body}\n\n{END}"
    if START in doc and END in doc:
        doc = doc[:doc.index(START)] + block + doc[doc.index(END) + len(END):]
    else:
        doc = (doc.rstrip("\n") + "\n\n## Ledger (issue 6)\n\nScript: `benchmarks/bench_ledger.py`."
               f"\n\n{block}\n")
    DOCS.write_text(doc, encoding="utf-8")


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--writer":
        writer_main(Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument("--no-peer", action="store_true", help="skip pymerkle")
    parser.add_argument("--write-docs", action="store_true", help="refresh docs/benchmarks.md")
    args = parser.parse_args()
    s, rng, began = QUICK if args.quick else FULL, random.Random(6), time.perf_counter()
    loads = [os.getloadavg()[0]]
    tmp = Path(tempfile.mkdtemp(prefix="custody-bench-ledger-"))
    tmp.chmod(0o755)
    server = Postgres(tmp)
    res: dict[str, dict[str, Any]] = {}
    peer = None
    try:
        base = server.start()
        urls = {"sqlite": lambda name: f"sqlite:///{tmp / name}.db",
                "postgresql": lambda name: server.create_db(base, name)}
        for backend, url in urls.items():
            print(f"[{backend}] appends", file=sys.stderr, flush=True)
            (tmp / backend).mkdir()
            ws = init_workspace(tmp / backend, ledger=url("appends"))
            r = res[backend] = {}
            assert ws.home is not None
            single = [single_writer(ws.home, s.appends, f"s{i}") for i in range(s.runs)]
            r["single"] = statistics.median(x for x, _ in single)
            r["single_cpu"] = statistics.median(c for _, c in single)
            r["multi"] = statistics.median(many_writers(ws, s.per_writer, f"m{i}")
                                           for i in range(max(3, s.runs - 2)))
            print(f"[{backend}] proofs", file=sys.stderr, flush=True)
            (tmp / f"{backend}-log").mkdir()
            r.update(proofs(init_workspace(tmp / f"{backend}-log", ledger=url("log")), s, rng))
            if backend == "sqlite":
                loads.append(os.getloadavg()[0])
            print(f"[{backend}] lineage", file=sys.stderr, flush=True)
            proof_load = r["load_s"]
            r.update(lineage_bench(url("lineage"), s, rng))
            r["lineage_load_s"], r["load_s"] = r["load_s"], proof_load
            print(f"[{backend}] {r}", file=sys.stderr, flush=True)
        if not args.no_peer:
            print("[pymerkle] build", file=sys.stderr, flush=True)
            peer = pymerkle_peer(s.leaves, res["sqlite"]["root"], s, rng)
        pg_version = server.version(base)
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    loads.append(os.getloadavg()[0])
    body = report(s, res, peer, loads, pg_version, time.perf_counter() - began)
    print(body)
    if args.write_docs:
        write_docs(body)


if __name__ == "__main__":
    main()
