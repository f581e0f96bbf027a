"""Benchmark for issue 14: `custody hash s3://...` against download-then-sha256.

Reproduce with ``python benchmarks/bench_objects.py --write-docs``. A local S3 server
(``moto_server`` on 127.0.0.1, its own process; tests/support/s3_server.py) holds one 1 GiB
object and a prefix of 2,000 objects. Each command runs as its own process, so interpreter
start-up is included and its peak RSS is its own (``wait4``):

- custody: ``custody hash s3://BUCKET/KEY --json`` (the real CLI; streamed, nothing on disk);
- peer, the ``aws s3 cp`` way: boto3 ``download_file`` (its transfer manager: 8 MiB parts, 10
  threads) to a local file, then hashlib SHA-256 of that file; for the prefix, one listing and
  ``download_file`` per object on 10 threads (``aws s3 cp --recursive``'s default concurrency),
  then SHA-256 of every file.

Both are checked to give the same SHA-256 before timing. Medians of ``--runs`` (at least 3)
interleaved rounds after one untimed warm-up of each command.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

DOCS = REPO / "docs" / "benchmarks.md"
START, END = "<!-- bench_objects:start -->", "<!-- bench_objects:end -->"
HEADING = "## Object stores (issue 14)"
MIB = 1024 * 1024
REPRODUCE = "python benchmarks/bench_objects.py --write-docs"
PEER_THREADS = 10


def timed(cmd: Sequence[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Run ``cmd``; return (wall seconds, peak RSS in bytes, stdout). Exits on failure."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            sys.exit(f"{' '.join(cmd[:4])} ... exited {proc.returncode}:\n"
                     f"{err.read().decode()[-3000:]}")
        return elapsed, usage.ru_maxrss * 1024, out.read().decode()


# --- the peer, run as `python bench_objects.py --peer BUCKET PREFIX_OR_KEY DIR` -------------


def peer(bucket: str, key: str, scratch: Path, prefix: bool) -> None:
    """Download then hash, as `aws s3 cp` then `sha256sum` would (one process)."""
    import boto3
    from boto3.s3.transfer import TransferConfig

    client = boto3.client("s3")
    config = TransferConfig(max_concurrency=PEER_THREADS, multipart_chunksize=8 * MIB)
    if not prefix:
        target = scratch / Path(key).name
        client.download_file(bucket, key, str(target), Config=config)
        print(json.dumps({Path(key).name: _sha256(target)}))
        return
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                 Prefix=key + "/"):
        keys.extend(o["Key"] for o in page.get("Contents", []))

    def one(k: str) -> tuple[str, str]:
        rel = k[len(key) + 1:]
        target = scratch / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, k, str(target), Config=config)
        return rel, _sha256(target)

    with ThreadPoolExecutor(PEER_THREADS) as pool:
        print(json.dumps(dict(pool.map(one, keys))))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(4 * MIB):
            digest.update(block)
    return digest.hexdigest()


# --- the benchmark ---------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--object-kib", type=int, default=64)
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--peer", nargs=3, metavar=("BUCKET", "KEY", "DIR"))
    parser.add_argument("--prefix", action="store_true")
    args = parser.parse_args()
    if args.peer:
        bucket, key, scratch = args.peer
        peer(bucket, key, Path(scratch), args.prefix)
        return
    if args.runs < 3:
        sys.exit("--runs must be at least 3")
    from support.s3_server import S3Server

    scratch = Path(tempfile.mkdtemp(prefix="custody-bench-objects-"))
    try:
        with S3Server.start() as server:
            env = {**os.environ, **server.env}
            os.environ.update(server.env)
            rows = run_all(server, env, scratch, args)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    table = render(rows, args)
    print("\n".join(table))
    if args.write_docs:
        write_docs(table)


def run_all(server, env: dict[str, str], scratch: Path, args: argparse.Namespace  # type: ignore[no-untyped-def]
            ) -> list[dict[str, object]]:
    bucket = server.bucket()
    client = server.client()
    big = scratch / "weights.bin"
    with big.open("wb") as f:
        for _ in range(args.size_mib):
            f.write(os.urandom(MIB))
    from boto3.s3.transfer import TransferConfig

    client.upload_file(str(big), bucket, "big/weights.bin",
                       Config=TransferConfig(multipart_chunksize=64 * MIB))
    big_sha = _sha256(big)
    big.unlink()
    small = os.urandom(args.object_kib * 1024)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: client.put_object(
            Bucket=bucket, Key=f"many/part-{i // 100:02d}/obj-{i:05d}.bin",
            Body=small[i % 7:] + i.to_bytes(4, "big")), range(args.objects)))
    custody = [sys.executable, "-m", "custody.cli"] if shutil.which("custody") is None else [
        "custody"]
    cases = [
        (f"one object, {args.size_mib:,} MiB", f"s3://{bucket}/big/weights.bin",
         ("big/weights.bin", False), args.size_mib * MIB),
        (f"{args.objects:,} objects x {args.object_kib} KiB", f"s3://{bucket}/many",
         ("many", True), sum(len(small[i % 7:]) + 4 for i in range(args.objects))),
    ]
    rows = []
    theirs_dir = scratch / "peer"
    for label, uri, (key, prefix), total in cases:
        ours = [*custody, "hash", uri, "--json"]

        def theirs(key: str = key, prefix: bool = prefix) -> list[str]:
            shutil.rmtree(theirs_dir, ignore_errors=True)
            theirs_dir.mkdir()
            return [sys.executable, __file__, "--peer", bucket, key, str(theirs_dir),
                    *(["--prefix"] if prefix else [])]

        # warm-up, and the two agree on every file's SHA-256
        _, _, out = timed(ours, env)
        manifest = json.loads(out)
        mine = {r["name"]: r["digest"] for r in manifest["resources"]}
        _, _, peer_out = timed(theirs(), env)
        assert mine == json.loads(peer_out), "custody and the peer disagree"
        if not prefix:
            assert mine == {"weights.bin": big_sha}
        times: dict[str, list[float]] = {"custody": [], "peer": []}
        rss: dict[str, list[int]] = {"custody": [], "peer": []}
        for _ in range(args.runs):
            for name, cmd in (("custody", ours), ("peer", theirs())):
                seconds, peak, _ = timed(cmd, env)
                times[name].append(seconds)
                rss[name].append(peak)
        shutil.rmtree(theirs_dir, ignore_errors=True)
        rows.append({"label": label, "total": total,
                     "custody": statistics.median(times["custody"]),
                     "peer": statistics.median(times["peer"]),
                     "custody_rss": max(rss["custody"]), "peer_rss": max(rss["peer"]),
                     "runs": times})
    return rows


def render(rows: list[dict[str, object]], args: argparse.Namespace) -> list[str]:
    out = [
        f"Medians of {args.runs} interleaved runs after one untimed warm-up, against a local S3 "
        "server (`moto_server` on 127.0.0.1, its own process, versioned bucket). Every command "
        "is a fresh process (start-up included); peak RSS is the largest of its runs (`wait4`). "
        "MB/s = 10^6 bytes per second; ratio = peer time / custody time (above 1: custody is "
        "faster). The peer is the `aws s3 cp` way: boto3 `download_file` (8 MiB parts, 10 "
        "threads; 10 objects at a time for the prefix) to local disk, then hashlib SHA-256 of "
        "the files. Both are checked to give the same SHA-256 for every object first.",
        "",
        "| objects | custody hash URI | peak RSS | download, then sha256 | peak RSS | ratio | "
        "target | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        total, ours, theirs = int(row["total"]), float(row["custody"]), float(row["peer"])  # type: ignore[arg-type]
        ratio = theirs / ours
        out.append(
            f"| {row['label']} | {total / ours / 1e6:,.0f} MB/s ({ours:.2f} s) | "
            f"{int(row['custody_rss']) / MIB:,.0f} MiB | "  # type: ignore[call-overload]
            f"{total / theirs / 1e6:,.0f} MB/s ({theirs:.2f} s) | "
            f"{int(row['peer_rss']) / MIB:,.0f} MiB | {ratio:.2f}x | "  # type: ignore[call-overload]
            f">= 1.0x, bounded memory | {'yes' if ratio >= 1.0 else 'no'} |")
    out += ["", "Machine:", "", f"- nproc: {os.cpu_count()}",
            f"- Python: {platform.python_version()}",
            f"- s3fs {_version('s3fs')}, fsspec {_version('fsspec')}, "
            f"boto3 {_version('boto3')}, moto {_version('moto')}",
            f"- memory: {_mem_total()}"]
    return out


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def _mem_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB of memory"
    except OSError:
        pass
    return "unknown"


def write_docs(table: list[str]) -> None:
    today = dt.datetime.now(dt.UTC).date().isoformat()
    body = [START, "", *table, "", f"Measured {today}. Reproduce: `{REPRODUCE}`", "", END]
    text = DOCS.read_text()
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + "\n".join(body) + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + f"\n\n{HEADING}\n\nScript: `benchmarks/bench_objects.py`.\n\n"
        text += "\n".join(body) + "\n"
    DOCS.write_text(text)
    print(f"updated {DOCS.relative_to(REPO)}")


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    main()
