"""Load test of the HTTP service (issue 8): 2 replicas on one PostgreSQL, 50 clients, 30 s.

Loopback only and bounded: a throwaway PostgreSQL (or --postgres URL), a fresh workspace, two
`custody serve` processes, and 50 concurrent clients for --seconds mixing verify (by digest),
lineage reads and signed appends (POST /v1/records). Afterwards: zero errors, every acknowledged
append is in the ledger (none lost, none extra), and `audit_ledger` passes.

    python benchmarks/bench_service.py [--seconds 30] [--clients 50] [--write-docs]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib.util
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmarks.md"
START, END = "<!-- bench_service:start -->", "<!-- bench_service:end -->"
SECTION = "## Service (issue 8)"


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


support = _load("service_support", REPO / "tests" / "support" / "service_support.py")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


class Load:
    def __init__(self, bases: list[str], tokens: dict[str, str], signer: Any, seed: dict[str, Any],
                 seconds: float):
        self.bases, self.tokens, self.signer, self.seed = bases, tokens, signer, seed
        self.seconds = seconds
        self.lat: dict[str, list[float]] = {"verify": [], "lineage": [], "append": []}
        self.errors: list[str] = []
        self.appended: list[str] = []
        self.digests: list[str] = [seed["digest"]]

    async def client(self, n: int) -> None:
        rng = random.Random(n)
        name, version = f"bench-c{n:02d}", 0
        reader = support.auth(self.tokens["reader"])
        publisher = support.auth(self.tokens["publisher"])
        async with httpx.AsyncClient(timeout=60) as http:
            end = time.monotonic() + self.seconds
            i = 0
            while time.monotonic() < end:
                base = self.bases[(n + i) % len(self.bases)]
                i += 1
                roll = rng.random()
                t0 = time.perf_counter()
                if roll < 0.45:
                    kind = "verify"
                    r = await http.post(base + "/v1/verify", headers=reader,
                                        json={"digest": rng.choice(self.digests)})
                    ok = r.status_code == 200 and r.json().get("verdict") == "verified"
                elif roll < 0.8:
                    kind = "lineage"
                    ref = f"{name}@{version}" if version else self.seed["ref"]
                    r = await http.get(base + f"/v1/lineage/{ref}", headers=reader,
                                       params={"direction": "upstream", "depth": 5})
                    ok = r.status_code == 200
                else:
                    kind = "append"
                    content = f"{name}-{version + 1}-{uuid.uuid4()}".encode()
                    body = support.signed_record(self.signer, name, "model", version + 1, content,
                                                 inputs=[{"name": "bench-data", "version": 1,
                                                          "digest": self.seed["digest"]}])
                    r = await http.post(base + "/v1/records", headers=publisher, json=body)
                    ok = r.status_code == 201
                    if ok:
                        version += 1
                        self.appended.append(r.json()["ref"])
                        self.digests.append("sha256:" + hashlib.sha256(content).hexdigest())
                self.lat[kind].append(time.perf_counter() - t0)
                if not ok:
                    self.errors.append(f"{kind} {r.status_code} {r.text[:200]}")

    async def run(self, clients: int) -> float:
        t0 = time.perf_counter()
        await asyncio.gather(*(self.client(n) for n in range(clients)))
        return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--postgres", help="server URL (default: a throwaway one)")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    args.seconds = min(args.seconds, 120.0)  # bounded
    conftest = _load("service_conftest", REPO / "tests" / "conftest.py")
    server = None
    if args.postgres:
        pg = args.postgres
    else:
        bindir = conftest.find_bindir()
        if bindir is None:
            print("no PostgreSQL binaries (initdb)", file=sys.stderr)
            return 2
        server = conftest.ThrowawayPostgres(bindir)
        pg = server.start()
    try:
        return run(args, pg)
    finally:
        if server is not None:
            server.stop()


def run(args: argparse.Namespace, pg: str) -> int:
    from custody.provenance.ledger.audit import audit_ledger
    from custody.provenance.workspace import init_workspace

    name = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(pg, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = pg.rsplit("/", 1)[0] + f"/{name}"
    root = Path(tempfile.mkdtemp(prefix="custody-bench-service-"))
    ws = init_workspace(root, ledger=url)
    tokens = support.make_tokens(url)
    signer = support.signer_from(root / ".custody" / "keys" / "signing.key")
    seed_content = b"benchmark dataset"
    seed_body = support.signed_record(signer, "bench-data", "dataset", 1, seed_content)
    logs = root / "logs"
    logs.mkdir()
    with support.running_server(root, log=logs / "a.log") as a, \
            support.running_server(root, log=logs / "b.log") as b:
        bases = [a, b][: args.replicas]
        r = httpx.post(a + "/v1/records", json=seed_body, headers=support.auth(tokens["publisher"]),
                       timeout=60)
        r.raise_for_status()
        seed = r.json()
        load = Load(bases, tokens, signer, seed, args.seconds)
        wall = asyncio.run(load.run(args.clients))
    with ws.open_ledger() as ledger:
        stored = {v.ref for v in ledger.list_versions() if v.name.startswith("bench-c")}
        report = audit_ledger(ledger, ws.ledger_verifier())
    lost = sorted(set(load.appended) - stored)
    extra = sorted(stored - set(load.appended))
    total = sum(len(v) for v in load.lat.values())
    everything = [x for v in load.lat.values() for x in v]
    rows = []
    for kind, values in (*load.lat.items(), ("all", everything)):
        rows.append(f"| {kind} | {len(values):,} | {len(values) / wall:,.1f} | "
                    f"{statistics.median(values) * 1000 if values else 0:,.1f} ms | "
                    f"{pct(values, 0.99) * 1000:,.1f} ms |")
    ok = not load.errors and not lost and not extra
    table = "\n".join([
        f"{args.clients} concurrent clients for {args.seconds:.0f} s against {len(bases)} "
        "`custody serve` replicas (uvicorn, one worker each) sharing one PostgreSQL ledger, all on "
        "loopback. Mix per request: 45% `POST /v1/verify` by digest (record, signature, "
        "inclusion proof and upstream chain checked), 35% `GET /v1/lineage` (depth 5), 20% "
        "`POST /v1/records` (a client-signed record with one input, appended under the ledger's "
        "lock). Clients alternate replicas.",
        "",
        "| request | count | requests/s | p50 | p99 |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"- errors: {len(load.errors)}; appends acknowledged: {len(load.appended):,}; "
        f"in the ledger afterwards: {len(stored):,} (lost {len(lost)}, unexpected {len(extra)})",
        f"- `audit_ledger` afterwards: passed ({report.entries:,} entries, "
        f"{report.checkpoints:,} signed checkpoints, {report.signatures:,} signatures)",
        f"- total {total:,} requests in {wall:.1f} s = {total / wall:,.1f} requests/s",
        f"- machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{_pg_version(url)}",
        "",
        f"Measured {datetime.now(UTC).date().isoformat()}. Reproduce: "
        "`python benchmarks/bench_service.py --write-docs`",
    ])
    print(table)
    for line in load.errors[:20]:
        print("error:", line, file=sys.stderr)
    if args.write_docs and ok:
        write_docs(table)
    return 0 if ok else 1


def _pg_version(url: str) -> str:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SHOW server_version")).scalar()).join(
                ("PostgreSQL ", ""))
    finally:
        engine.dispose()


def write_docs(table: str) -> None:
    doc = DOC.read_text(encoding="utf-8")
    block = f"{START}\n\n{table}\n\n{END}"
    if START in doc and END in doc:
        head, rest = doc.split(START, 1)
        doc = head + block + rest.split(END, 1)[1]
    else:
        doc = doc.rstrip("\n") + f"\n\n{SECTION}\n\nScript: `benchmarks/bench_service.py`.\n\n" \
            f"{block}\n"
    DOC.write_text(doc, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
