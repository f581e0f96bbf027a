"""Install weight (issue 11): time, size and package count of a fresh ``pip install``.

Reproduce with ``python benchmarks/bench_install.py --rev 8f4d942 --rev HEAD [--extra test]``.
For each git revision of this repository, ``git archive`` writes its tree to a scratch folder,
then each run makes a fresh venv (``python -m venv``, pip upgraded untimed) and times
``pip install --no-cache-dir SRC[EXTRA]`` (non-editable; wheels come from the package index, so
the time includes downloads and varies with the network). Size: the bytes under the venv's
site-packages, in MiB (as ``du -sm``). Packages: lines of ``pip list`` (pip and setuptools
included). Revisions are interleaved run by run so that network drift hits both alike; the
figures printed are medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def export(rev: str, dest: Path) -> Path:
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def site_mib(venv: Path) -> float:
    purelib = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.strip()
    total = 0
    for folder, _dirs, files in os.walk(purelib):
        for name in files:
            path = Path(folder) / name
            if not path.is_symlink():
                total += path.stat().st_blocks * 512  # allocated, as du counts
    return total / 2**20


def measure(src: Path, extra: str, scratch: Path) -> tuple[float, float, int]:
    venv = scratch / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = str(venv / "bin" / "pip")
    subprocess.run([pip, "install", "-q", "--upgrade", "pip"], check=True, capture_output=True)
    target = f"{src}[{extra}]" if extra else str(src)
    start = time.perf_counter()
    subprocess.run([pip, "install", "-q", "--no-cache-dir", target], check=True,
                   capture_output=True)
    seconds = time.perf_counter() - start
    listed = subprocess.run([pip, "list"], capture_output=True, text=True, check=True).stdout
    packages = len(listed.splitlines()) - 2  # header lines
    return seconds, site_mib(venv), packages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", action="append", required=True, help="git revision (repeat)")
    parser.add_argument("--extra", default="", help="an optional-dependency group, e.g. test")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-install-") as tmp:
        scratch = Path(tmp)
        sources = {rev: export(rev, scratch / f"src-{i}") for i, rev in enumerate(args.rev)}
        results: dict[str, list[tuple[float, float, int]]] = {rev: [] for rev in args.rev}
        for _ in range(args.runs):
            for rev, src in sources.items():
                results[rev].append(measure(src, args.extra, scratch))
    what = f"`pip install .[{args.extra}]`" if args.extra else "`pip install .`"
    print("| revision | install | time (s) | site-packages (MiB) | packages |")
    print("|---|---|---|---|---|")
    for rev, rows in results.items():
        seconds = statistics.median(r[0] for r in rows)
        mib = statistics.median(r[1] for r in rows)
        print(f"| {rev} | {what} | {seconds:.0f} | {mib:.0f} | {rows[0][2]} |")


if __name__ == "__main__":
    main()
