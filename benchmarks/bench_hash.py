"""Benchmark for issue 2: `custody hash` against `sha256sum`, and CLI latency.

Reproduce with ``python benchmarks/bench_hash.py --write-docs`` (about 2 GiB of scratch data under
the system temp dir, removed afterwards unless ``--keep``). Every command is the real CLI run as
a subprocess, so interpreter start-up is included. Each tool first reads the data once untimed
(warm page cache); the figures are medians of ``--runs`` timed runs, custody and its peer
interleaved so that drift hits both alike.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "benchmarks.md"
START, END = "<!-- bench_hash:start -->", "<!-- bench_hash:end -->"
HEADING = "## Hashing throughput and CLI latency (issue 2)"
MIB = 1024 * 1024
REPRODUCE = "python benchmarks/bench_hash.py --write-docs"


def run(cmd: Sequence[str], cwd: Path | None = None) -> tuple[float, str]:
    """Run ``cmd`` to completion; return (wall seconds, stdout). Fails loudly on a non-zero exit."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd[:3])} ... exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return elapsed, proc.stdout


def medians(cmds: dict[str, list[str]], runs: int, cwd: Path | None = None) -> dict[str, float]:
    """One untimed warm-up per command, then ``runs`` interleaved timed rounds; medians."""
    for cmd in cmds.values():
        run(cmd, cwd)
    times: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(runs):
        for name, cmd in cmds.items():
            times[name].append(run(cmd, cwd)[0])
    return {name: statistics.median(values) for name, values in times.items()}


def write_random(path: Path, size: int, rng: random.Random) -> None:
    with path.open("wb") as out:
        left = size
        while left:
            chunk = min(left, 16 * MIB)
            out.write(rng.randbytes(chunk))
            left -= chunk


def make_data(root: Path, file_mib: int, count: int, each_mib: int) -> tuple[Path, Path]:
    """A single big file and a directory of ``count`` files; reused when already the right size."""
    rng = random.Random(2)  # deterministic bytes: the same data on every machine
    big = root / "one_file.bin"
    if not (big.is_file() and big.stat().st_size == file_mib * MIB):
        write_random(big, file_mib * MIB, rng)
    many = root / "many_files"
    many.mkdir(exist_ok=True)
    for i in range(count):
        f = many / f"part-{i:05d}.bin"
        if not (f.is_file() and f.stat().st_size == each_mib * MIB):
            write_random(f, each_mib * MIB, rng)
    return big, many


def check_digests(custody_json: str, sha_out: str) -> None:
    """Both tools must agree on every file, or the timing compares different work."""
    theirs = {
        Path(name.lstrip("*")).name: digest
        for digest, name in (line.split(maxsplit=1) for line in sha_out.splitlines())
    }
    ours = {Path(r["name"]).name: r["digest"] for r in json.loads(custody_json)["resources"]}
    if ours != theirs:
        sys.exit("custody and sha256sum disagree on the digests: benchmark aborted")


def machine_facts() -> list[tuple[str, str]]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")),
        platform.processor() or "unknown",
    )
    flags = next(
        (ln.split(":", 1)[1].split() for ln in cpuinfo.splitlines() if ln.startswith("flags")), []
    )
    sha_version = run(["sha256sum", "--version"])[1].splitlines()[0]
    exe = shutil.which("custody") or ""
    shim = exe and Path(exe).read_bytes()[:64].startswith(b"#!/usr/bin/env bash")
    return [
        ("nproc", str(os.cpu_count())),
        ("CPU", model),
        ("CPU has sha_ni", "yes" if "sha_ni" in flags else "no"),
        ("Python", f"{platform.python_version()} ({ssl.OPENSSL_VERSION})"),
        ("sha256sum", sha_version),
        ("`custody` on PATH", "pyenv shell shim (adds its start-up)" if shim else "entry point"),
    ]


def mark(ok: bool) -> str:
    return "yes" if ok else "**no**"


def bench(args: argparse.Namespace, root: Path) -> tuple[list[str], list[str]]:
    """Run the four measurements; return (markdown table lines, one-line ratios summary)."""
    n_files, file_mib = 1000, args.mib
    print(f"generating data under {root} ...", flush=True)
    big, many = make_data(root, file_mib, n_files, 1)
    files = sorted(str(p) for p in many.iterdir())
    rows: list[str] = []

    # 1. One big file.
    c1 = ["custody", "hash", str(big), "--json"]
    s1 = ["sha256sum", str(big)]
    check_digests(run(c1)[1], run(s1)[1])
    print(f"[1/4] one {file_mib} MiB file, {args.runs} runs each ...", flush=True)
    t = medians({"custody": c1, "sha256sum": s1}, args.runs)
    mb = file_mib * MIB / 1e6
    r1 = t["sha256sum"] / t["custody"]
    rows.append(
        f"| `custody hash FILE --json`, one {file_mib} MiB file | {mb / t['custody']:,.0f} "
        f"MB/s ({t['custody']:.2f} s) | `sha256sum FILE`: {mb / t['sha256sum']:,.0f} MB/s "
        f"({t['sha256sum']:.2f} s) | {r1:.2f}x | >= 0.95x | {mark(r1 >= 0.95)} |"
    )

    # 2. A directory of 1,000 files of 1 MiB; the peer is ONE sha256sum process over the sorted
    # list (no per-file process start-up: the strongest sequential peer).
    c2 = ["custody", "hash", str(many), "--json"]
    s2 = ["sha256sum", *files]
    check_digests(run(c2)[1], run(s2)[1])
    print(f"[2/4] {n_files} files of 1 MiB, {args.runs} runs each ...", flush=True)
    t = medians({"custody": c2, "sha256sum": s2}, args.runs)
    mb = n_files * MIB / 1e6
    r2 = t["sha256sum"] / t["custody"]
    rows.append(
        f"| `custody hash DIR --json`, {n_files:,} files x 1 MiB | "
        f"{mb / t['custody']:,.0f} MB/s ({t['custody']:.2f} s) | `sha256sum f1 ... "
        f"f{n_files}` (one process, sorted list): {mb / t['sha256sum']:,.0f} MB/s "
        f"({t['sha256sum']:.2f} s) | {r2:.2f}x | >= 1.6x | {mark(r2 >= 1.6)} |"
    )

    # 3. Start-up.
    help_runs = max(10, args.runs)
    print(f"[3/4] custody --help, {help_runs} runs ...", flush=True)
    h = medians({"help": ["custody", "--help"]}, help_runs)["help"]
    rows.append(
        f"| `custody --help` (median of {help_runs}) | {h:.3f} s | - | - | < 0.3 s | "
        f"{mark(h < 0.3)} |"
    )

    # 4. Verify a small recorded file in a fresh workspace.
    ws = root / "workspace"
    shutil.rmtree(ws, ignore_errors=True)
    ws.mkdir()
    (ws / "small.bin").write_bytes(random.Random(4).randbytes(64 * 1024))
    run(["custody", "init", "--dir", str(ws)], ws)
    run(["custody", "record", "small.bin", "--name", "small", "--kind", "dataset"], ws)
    verify_runs = max(5, args.runs)
    print(f"[4/4] custody verify small.bin, {verify_runs} runs ...", flush=True)
    v = medians({"verify": ["custody", "verify", "small.bin"]}, verify_runs, ws)["verify"]
    rows.append(
        f"| `custody verify small.bin` (64 KiB, recorded; median of {verify_runs}) | "
        f"{v:.3f} s | - | - | < 1 s | {mark(v < 1.0)} |"
    )

    table = [
        f"Medians of {args.runs} timed runs (custody and peer interleaved) after one untimed "
        "warm-up run of every command, so the page cache is warm and the figures measure hashing "
        "plus process start-up, not the disk. MB/s = 10^6 bytes per second; ratio = custody "
        "throughput / peer throughput. Both tools' digests are checked to agree before timing.",
        "",
        "| Benchmark | custody | peer | ratio | target | met |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "Machine:",
        "",
        *(f"- {k}: {v}" for k, v in machine_facts()),
    ]
    return table, [
        f"single file {r1:.2f}x",
        f"directory {r2:.2f}x",
        f"--help {h:.3f} s",
        f"verify {v:.3f} s",
    ]


def write_docs(table: list[str]) -> None:
    today = dt.datetime.now(dt.UTC).date().isoformat()
    body = [START, "", *table, "", f"Measured {today}. Reproduce: `{REPRODUCE}`", "", END]
    if DOCS.exists():
        text = DOCS.read_text()
    else:
        text = (
            "# Benchmarks\n\nReproducible benchmarks of Custody against named peers, each run "
            "on one machine in one go. Each section is written by the script named in it "
            "(`benchmarks/`); re-run that script to refresh it.\n"
        )
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + "\n".join(body) + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + f"\n\n{HEADING}\n\nScript: `benchmarks/bench_hash.py`.\n\n"
        text += "\n".join(body) + "\n"
    DOCS.parent.mkdir(exist_ok=True)
    DOCS.write_text(text)
    print(f"updated {DOCS.relative_to(REPO)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per command (median)")
    parser.add_argument("--data", type=Path, help="scratch folder (default: a new temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    parser.add_argument("--write-docs", action="store_true", help=f"update {DOCS.name}")
    parser.add_argument("--mib", type=int, default=1024, help="size of the single file (MiB)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if shutil.which("custody") is None or shutil.which("sha256sum") is None:
        sys.exit("needs `custody` (pip install -e .) and `sha256sum` on PATH")
    created = args.data is None
    root = Path(tempfile.mkdtemp(prefix="custody-bench-")) if created else args.data.absolute()
    if root.resolve().is_relative_to(REPO):
        sys.exit("--data must be outside the repository")
    root.mkdir(parents=True, exist_ok=True)
    try:
        table, summary = bench(args, root)
    finally:
        if args.keep:
            print(f"data kept in {root}")
        elif created:
            shutil.rmtree(root, ignore_errors=True)
        else:
            for name in ("one_file.bin", "many_files", "workspace"):
                p = root / name
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
    print("\n" + "\n".join(table) + "\n\n" + "; ".join(summary))
    if args.write_docs:
        write_docs(table)


if __name__ == "__main__":
    main()
