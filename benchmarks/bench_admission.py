"""Admission latency (issue 14): a real `custody serve` answering AdmissionReviews whose
storageUri is in a real S3 server (moto, versioned bucket) or on the local disk, all on loopback.

What is measured, per request, over HTTP with keep-alive (the API server's side of the call):

By default a listing of a model URI is reused for 2 s (CUSTODY_ADMISSION_LISTING_SECONDS): the
storage initializer lists and hashes again at pod start, so admission need not ask the store on
every review. The verdict is re-checked against the log's size on every review. Rows marked
"listed on every review" run a second server with the window set to 0, so every review makes the
store round trips (two requests to moto_server, which shares the machine's two cores).

- **location-bound** S3 prefix: the model was recorded from that URI (`custody record s3://…`),
  so the signed record names the location and the objects' version ids; the webhook lists the
  prefix, finds the location in its index and verifies the record (verdict cached per checkpoint
  size); no byte is read;
- **digest-bound** S3 prefix: the same bytes recorded from a local folder; the webhook lists the
  prefix and takes the digest from its cache (keyed by location + version ids + sizes);
- **file://** folder, digest-bound, the cache keyed by inode and change time;
- each of those with 8 concurrent clients;
- **cache miss**: a new object version each time (same bytes), so the webhook lists, hashes the
  object (16 MiB) and verifies: what the first review of an unrecorded location costs.

The model has an upstream training dataset (trained_on), so each verification checks two
records. Target: p99 under 20 ms on a cache hit.

    python benchmarks/bench_admission.py [--requests 500] [--write-docs]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmarks.md"
START, END = "<!-- bench_admission:start -->", "<!-- bench_admission:end -->"
SECTION = "## Admission latency (issue 14)"
TARGET_MS = 20.0
MISS_BYTES = 16 * 1024 * 1024


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


support = _load("service_support", REPO / "tests" / "support" / "service_support.py")
s3_server = _load("s3_server", REPO / "tests" / "support" / "s3_server.py")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def custody(*args: str, cwd: Path, env: dict[str, str]) -> str:
    out = subprocess.run([sys.executable, "-m", "custody", *args], cwd=cwd, env=env,
                         capture_output=True, text=True, check=False, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"custody {' '.join(args)} failed: {out.stderr[-2000:]}")
    return out.stdout


def review(uri: str) -> dict[str, Any]:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": str(uuid.uuid4()), "operation": "CREATE", "object": {
                "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                "metadata": {"name": "fraud"},
                "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"},
                                                 "storageUri": uri}}}}}}


class Client:
    def __init__(self, base: str, token: str):
        self.url = base + "/v1/admission/kubernetes"
        self.http = httpx.Client(headers=support.auth(token), timeout=120)

    def admit(self, uri: str, expect: str) -> float:
        started = time.perf_counter()
        r = self.http.post(self.url, json=review(uri))
        elapsed = (time.perf_counter() - started) * 1000
        response = r.json()["response"]
        if not response["allowed"] or response["auditAnnotations"]["artifact"] != expect:
            raise SystemExit(f"{uri}: not admitted as {expect}: {response}")
        return elapsed


def sequential(client: Client, uri: str, expect: str, n: int) -> list[float]:
    for _ in range(20):  # warm: the first review fills the caches
        client.admit(uri, expect)
    return [client.admit(uri, expect) for _ in range(n)]


def concurrent(base: str, token: str, uri: str, expect: str, n: int, workers: int = 8
               ) -> list[float]:
    clients = [Client(base, token) for _ in range(workers)]
    for c in clients:
        c.admit(uri, expect)
    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(clients[i % workers].admit, uri, expect) for i in range(n)]
        return [f.result() for f in futures]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--misses", type=int, default=20)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="custody-bench-admission-") as scratch, \
            s3_server.S3Server.start() as s3:
        return run(args, Path(scratch), s3)


def run(args: argparse.Namespace, root: Path, s3: Any) -> int:
    env = {k: v for k, v in os.environ.items() if k != "CUSTODY_LEDGER"}
    env.update(s3.env)
    work = root / "ws"
    work.mkdir()
    custody("init", cwd=work, env=env)
    (work / "train.csv").write_text("x,y\n" + "".join(f"{i},{i % 2}\n" for i in range(1000)))
    custody("record", "train.csv", "--name", "train", "--kind", "dataset", cwd=work, env=env)
    model = work / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(os.urandom(4 * 1024 * 1024))
    (model / "config.json").write_text('{"layers": 3}\n')
    bucket = s3.bucket()
    s3.put_tree(bucket, "registry/fraud-clf/1", model)
    s3.put_tree(bucket, "copies/fraud-clf", model)
    located = f"s3://{bucket}/registry/fraud-clf/1"
    custody("record", located, "--name", "fraud-clf", "--kind", "model", "--input",
            "train@1", cwd=work, env=env)
    custody("record", "model", "--name", "fraud-local", "--kind", "model", "--input",
            "train@1", cwd=work, env=env)  # same bytes: the copy binds by digest
    big = os.urandom(MISS_BYTES)
    (work / "big.bin").write_bytes(big)
    custody("record", "big.bin", "--name", "big", "--kind", "model", "--input", "train@1",
            cwd=work, env=env)
    token = support.make_tokens(f"sqlite:///{work / '.custody' / 'ledger.db'}")["reader"]
    rows: list[tuple[str, list[float], bool]] = []
    cases = [("S3 prefix, location-bound (2 objects, no read)", located, "fraud-clf@1"),
             ("S3 prefix, digest-bound (hash cache hit)", f"s3://{bucket}/copies/fraud-clf",
              "fraud-local@1"),
             ("file:// folder, digest-bound (hash cache hit)", model.as_uri(), "fraud-local@1")]
    with support.running_server(work, env=s3.env, log=root / "server.log") as base:
        client = Client(base, token)  # the default: a listing is reused for 2 s
        for label, uri, expect in cases:
            rows.append((label, sequential(client, uri, expect, args.requests), True))
        for label, uri, expect in cases[:2]:
            rows.append((label.replace("(", "(8 concurrent clients, ", 1),
                         concurrent(base, token, uri, expect, args.requests), True))
    strict = {**s3.env, "CUSTODY_ADMISSION_LISTING_SECONDS": "0"}
    with support.running_server(work, env=strict, log=root / "server-strict.log") as base:
        client = Client(base, token)
        for label, uri, expect in cases:
            rows.append((label.replace("(", "(listed on every review, ", 1),
                         sequential(client, uri, expect, args.requests), False))
        misses = []
        for _ in range(args.misses):
            s3.put(bucket, "miss/big.bin", big)  # a new version id: listed, hashed, verified
            misses.append(client.admit(f"s3://{bucket}/miss/big.bin", "big@1"))
        rows.append((f"S3 object, cache miss (a new version, {MISS_BYTES // 2**20} MiB hashed)",
                     misses, False))
    table = render(rows, args)
    print(table)
    ok = all(pct(values, 0.99) < TARGET_MS for _, values, hit in rows if hit)
    if args.write_docs and ok:
        write_docs(table)
    return 0 if ok else 1


def render(rows: list[tuple[str, list[float], bool]], args: argparse.Namespace) -> str:
    lines = [
        f"One `custody serve` (uvicorn, one worker, SQLite ledger) on loopback; a real S3 server "
        f"(moto_server, versioned bucket) on loopback; one client with keep-alive sending "
        f"{args.requests} AdmissionReviews per row after 20 warm-up reviews (8 clients sharing "
        "the requests where said). Each admitted model has an upstream dataset, so two records "
        "are checked. Milliseconds, measured at the client.",
        "",
        "| Review | p50 | p95 | p99 | max | target p99 | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, values, hit in rows:
        p99 = pct(values, 0.99)
        target = f"< {TARGET_MS:.0f} ms" if hit else "-"
        met = ("yes" if p99 < TARGET_MS else "no") if hit else "-"
        lines.append(f"| {label} | {statistics.median(values):.1f} | {pct(values, 0.95):.1f} | "
                     f"{p99:.1f} | {max(values):.1f} | {target} | {met} |")
    cpu = platform.processor() or platform.machine()
    lines += ["", "Machine:", "", f"- nproc: {os.cpu_count()}", f"- CPU: {_cpu() or cpu}",
              f"- Python: {platform.python_version()}", "",
              f"Measured {datetime.now(UTC):%Y-%m-%d}. Reproduce: "
              "`python benchmarks/bench_admission.py --write-docs`"]
    return "\n".join(lines)


def _cpu() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def write_docs(table: str) -> None:
    doc = DOC.read_text(encoding="utf-8")
    block = f"{START}\n\n{table}\n\n{END}"
    if START in doc and END in doc:
        head, rest = doc.split(START, 1)
        doc = head + block + rest.split(END, 1)[1]
    else:
        doc = doc.rstrip("\n") + f"\n\n{SECTION}\n\nScript: `benchmarks/bench_admission.py`.\n\n" \
            f"{block}\n"
    DOC.write_text(doc, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
