"""Model-file scanner (issue 3): Custody against picklescan, modelscan and fickling, in one run.

1. Detection and false alarms on the corpus of ``tests/support/scan_corpus.py`` (generated into a
   temp
   dir): a malicious sample counts as detected when the tool reports it unsafe (any of its files);
   a benign one is a false positive when the tool flags it (Custody: a finding at medium or
   above; picklescan: a dangerous global; modelscan: an issue at medium or above; fickling: a
   severity above "likely safe"). A crash (an exception, or an error the tool reports instead
   of a verdict) is a miss on a malicious sample and a false positive on a benign one.
2. Speed and memory on two torch checkpoints made at run time: one 1 GiB tensor, and 100,000
   one-element tensors. Each scan runs in a fresh process; the scan time is measured inside it
   (imports excluded), the process wall time and peak RSS (``wait4``) around it.

Every tool runs in its own worker subprocess (``--worker``), so its imports, memory and crashes
stay its own; a worker that dies or hangs is restarted after the file it was scanning.

Usage: ``python benchmarks/bench_scan.py [--quick] [--runs N] [--write-docs]``
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
HEADING = "## Model scanner (issue 3)"
START, END = "<!-- bench_scan:start -->", "<!-- bench_scan:end -->"
TOOLS = ("custody", "picklescan", "modelscan", "fickling")
SPEED_TOOLS = ("custody", "custody-no-2nd", "picklescan", "modelscan", "fickling")
TARGETS = {"big": (0.2, None), "many": (2.0, 300.0)}  # seconds, MB
CASES = {
    "big": "1 GiB checkpoint (one float32 tensor of 2^28 elements)",
    "many": "100,000 one-element tensors (`torch.save({f't{i}': torch.zeros(1) ...})`)",
}
MAKE_CHECKPOINT = {
    "big": "torch.save({'weight': torch.zeros(1 << 28)}, sys.argv[1])",
    "many": "torch.save({f't{i}': torch.zeros(1) for i in range(100_000)}, sys.argv[1])",
}
_PEER_LEVELS = ("MEDIUM", "HIGH", "CRITICAL")


# -- worker side: one tool, in its own process ----------------------------------------------
def scan_one(tool: str, path: Path) -> bool:
    """Whether ``tool`` flags the file; raises when the tool crashes or reports an error."""
    if tool.startswith("custody"):
        from custody.validators.interface import ScanOptions
        from custody.validators.scan import scan_files

        options = ScanOptions(second_opinion=tool == "custody")
        report = scan_files(path.name, [(path, path.name, path.stat().st_size)], options=options)
        return bool(report.refused)
    if tool == "picklescan":
        from picklescan.scanner import scan_file_path

        result = scan_file_path(str(path))
        if result.issues_count or result.infected_files:
            return True
        if result.scan_err:
            raise RuntimeError("picklescan reported a scan error")
        return False
    if tool == "modelscan":
        from modelscan.modelscan import ModelScan

        out = ModelScan().scan(str(path))
        if any(i.get("severity") in _PEER_LEVELS for i in out.get("issues", [])):
            return True
        if out.get("errors"):
            raise RuntimeError(f"modelscan reported errors: {str(out['errors'])[:200]}")
        return False
    if tool == "fickling":
        import fickling

        if zipfile.is_zipfile(path):
            members = fickling.scan_zip_archive(str(path), graceful=True)
            return any(not result for result in members.values())
        return not fickling.scan_file(str(path), graceful=True)
    raise ValueError(tool)


def prepare(tool: str) -> None:
    """Import what ``tool`` needs, so that imports are not counted as scan time."""
    modules = {
        "custody": ("custody.validators.scan", "picklescan.scanner"),
        "custody-no-2nd": ("custody.validators.scan",),
        "picklescan": ("picklescan.scanner",),
        "modelscan": ("modelscan.modelscan",),
        "fickling": ("fickling",),
    }[tool]
    for name in modules:
        with contextlib.suppress(ImportError):  # scan_one raises it again: counted as a crash
            importlib.import_module(name)


def _protocol_out() -> Any:
    """A private copy of stdout for our lines; the tools' own prints go to stderr."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    return out


def worker(kind: str, tool: str, arg: str) -> None:
    out = _protocol_out()
    if kind == "corpusgen":  # torch and scikit-learn stay out of the parent (see make_corpus)
        samples = [[s.name, s.malicious, [str(f) for f in s.files]] for s in _generate(Path(arg))]
        out.write(json.dumps(samples) + "\n")
        return
    prepare(tool)
    if kind == "speed":
        started = time.perf_counter()
        try:
            flagged, crash = scan_one(tool, Path(arg)), None
        except Exception as exc:  # noqa: BLE001 - a peer's crash is a measured outcome
            flagged, crash = False, f"{type(exc).__name__}: {exc}"[:300]
        seconds = time.perf_counter() - started
        out.write(json.dumps({"seconds": seconds, "flagged": flagged, "crash": crash}) + "\n")
        return
    for index, path in json.loads(Path(arg).read_text()):
        out.write(f"START {index}\n")
        started = time.perf_counter()
        try:
            flagged, crash = scan_one(tool, Path(path)), None
        except Exception as exc:  # noqa: BLE001 - a peer's crash is a measured outcome
            flagged, crash = False, f"{type(exc).__name__}: {exc}"[:300]
        seconds = time.perf_counter() - started
        verdict = {"flagged": flagged, "crash": crash, "seconds": seconds}
        out.write(f"DONE {index} {json.dumps(verdict)}\n")


# -- parent side -------------------------------------------------------------------------
@dataclass
class Child:
    lines: list[str]
    wall: float
    max_rss: int  # bytes
    timed_out: bool


def run_child(args: list[str], idle_timeout: float) -> Child:
    """Run a worker; kill it when it prints nothing for ``idle_timeout`` seconds."""
    started = time.perf_counter()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    got: list[str] = []
    timed_out = False
    while True:
        try:
            line = lines.get(timeout=idle_timeout)
        except queue.Empty:
            proc.kill()
            timed_out = True
            break
        if line is None:
            break
        got.append(line)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    return Child(got, time.perf_counter() - started, usage.ru_maxrss * 1024, timed_out)


@dataclass
class Sample:
    name: str
    malicious: bool
    files: list[Path]


@dataclass
class CorpusResult:
    tool: str
    flagged: dict[str, bool] = field(default_factory=dict)
    crashes: dict[str, str] = field(default_factory=dict)
    scan_seconds: float = 0.0
    wall: float = 0.0
    max_rss: int = 0


def load_corpus_module() -> ModuleType:
    path = ROOT / "tests" / "support" / "scan_corpus.py"
    spec = importlib.util.spec_from_file_location("custody_scan_corpus", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def make_corpus(out: Path, timeout: float) -> list[Sample]:
    """The corpus, written by a child process.

    The parent never imports torch or scikit-learn: a child's peak RSS (``wait4``) includes the
    parent's memory image it was forked from, so a large parent would inflate every tool's RSS.
    """
    child = run_child(["corpusgen", "-", str(out)], timeout)
    if not child.lines:
        raise SystemExit("generating the corpus failed")
    return [Sample(n, bool(m), [Path(f) for f in fs]) for n, m, fs in json.loads(child.lines[-1])]


def _generate(out: Path) -> list[Sample]:
    corpus = load_corpus_module()
    samples: list[Sample] = []
    for group, registry in (("malicious", corpus.MALICIOUS), ("benign", corpus.BENIGN)):
        for name, make in sorted(registry.items()):
            folder = out / group / name
            folder.mkdir(parents=True)
            target = make(folder)
            samples.append(Sample(name, group == "malicious", corpus.files_under(target)))
    return samples + _ecosystem_samples(out / "ecosystems")


def _ecosystem_samples(out: Path) -> list[Sample]:
    """Benign files of whole ecosystems (``tests/support/scan_ecosystems.py``): one sample per
    object, its files the object pickled, joblib'd or written by ``to_pickle`` several ways."""
    sys.path.insert(0, str(ROOT / "tests"))
    from support import scan_ecosystems

    by_object: dict[str, list[Path]] = {}
    for name, generate in scan_ecosystems.ECOSYSTEMS.items():
        try:
            items = list(generate())
        except ImportError:
            continue  # the library is not installed
        for label, data in items:
            obj, _, rest = label.partition(".")
            path = out / name / obj.replace("/", "_") / rest
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            by_object.setdefault(f"eco:{obj}", []).append(path)
    return [Sample(name, False, files) for name, files in sorted(by_object.items())]


def run_corpus(tool: str, samples: list[Sample], scratch: Path, timeout: float) -> CorpusResult:
    files = [(s.name, f) for s in samples for f in s.files]
    result = CorpusResult(tool)
    pending = list(range(len(files)))
    per_file: dict[int, dict[str, Any]] = {}
    while pending:
        listing = scratch / f"{tool}-files.json"
        listing.write_text(json.dumps([[i, str(files[i][1])] for i in pending]))
        child = run_child(["corpus", tool, str(listing)], timeout)
        result.wall += child.wall
        result.max_rss = max(result.max_rss, child.max_rss)
        current = None
        for line in child.lines:
            word, index, *rest = line.split(" ", 2)
            current = int(index) if word == "START" else None
            if word == "DONE":
                per_file[int(index)] = json.loads(rest[0])
        if not child.lines:  # the worker could not start at all
            for i in pending:
                per_file[i] = {"flagged": False, "crash": "worker failed to start"}
            break
        if current is not None:  # died or hung on this file
            why = "timeout" if child.timed_out else "worker process died"
            per_file[current] = {"flagged": False, "crash": why, "seconds": 0.0}
        pending = [i for i in pending if i not in per_file]
        if current is None and pending:  # died between files: count the next one as crashed
            per_file[pending[0]] = {"flagged": False, "crash": "worker process died"}
            pending = pending[1:]
    for i, (sample, _path) in enumerate(files):
        verdict = per_file[i]
        result.flagged[sample] = result.flagged.get(sample, False) or bool(verdict["flagged"])
        if verdict["crash"]:
            result.crashes.setdefault(sample, str(verdict["crash"]))
        result.scan_seconds += float(verdict.get("seconds", 0.0))
    return result


def counted_as_flagged(res: CorpusResult, sample: Sample) -> bool:
    """The benchmark's rule: a crash is a miss on malicious files, a false positive on benign."""
    flagged = res.flagged.get(sample.name, False)
    if sample.malicious:
        return flagged
    return flagged or sample.name in res.crashes


@dataclass
class SpeedResult:
    tool: str
    case: str
    scan: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    max_rss: int = 0
    flagged: bool = False
    crash: str | None = None
    timed_out: bool = False


def make_checkpoints(out: Path) -> dict[str, Path]:
    paths = {}
    for case, code in MAKE_CHECKPOINT.items():
        path = out / f"{case}.pt"
        script = f"import sys, torch\n{code}\n"
        subprocess.run([sys.executable, "-c", script, str(path)], check=True)
        paths[case] = path
    return paths


def run_speed(tool: str, case: str, path: Path, runs: int, timeout: float) -> SpeedResult:
    res = SpeedResult(tool, case)
    for _ in range(runs):
        child = run_child(["speed", tool, str(path)], timeout)
        res.max_rss = max(res.max_rss, child.max_rss)
        if child.timed_out or not child.lines:
            res.timed_out = child.timed_out
            res.crash = "timeout" if child.timed_out else "worker process died"
            res.wall.append(child.wall)
            break  # a timeout or a hard crash is not repeated
        out = json.loads(child.lines[-1])
        res.scan.append(float(out["seconds"]))
        res.wall.append(child.wall)
        res.flagged, res.crash = bool(out["flagged"]), out["crash"]
        if res.crash:
            break
    return res


# -- report ------------------------------------------------------------------------------
def _pct(n: int, total: int) -> str:
    return f"{100.0 * n / total:.1f}% ({n}/{total})" if total else "-"


def _mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB"


def _version(tool: str) -> str:
    if tool.startswith("custody"):
        return "working tree"
    try:
        return importlib.metadata.version(tool)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def render_corpus(samples: list[Sample], results: list[CorpusResult]) -> list[str]:
    bad = [s for s in samples if s.malicious]
    good = [s for s in samples if not s.malicious]
    eco = [s for s in good if s.name.startswith("eco:")]
    out = [
        f"Corpus: `tests/support/scan_corpus.py`, {len(bad)} malicious samples and "
        f"{len(good) - len(eco)} benign samples written by the real libraries, plus "
        f"{len(eco)} benign objects of whole ecosystems (`tests/support/scan_ecosystems.py`: "
        "every scikit-learn estimator, pandas dtypes and indexes, xgboost, lightgbm, catboost, "
        "numpy, scipy, torch, standard-library values; each pickled, joblib'd or written by "
        f"`to_pickle` several ways); {sum(len(s.files) for s in samples)} files.",
        "",
        "| Tool | version | detection | false positives | crashes (malicious / benign) "
        "| scan time (sum) | process wall | peak RSS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        detected = sum(counted_as_flagged(res, s) for s in bad)
        false_pos = sum(counted_as_flagged(res, s) for s in good)
        crash_bad = sum(s.name in res.crashes for s in bad)
        crash_good = sum(s.name in res.crashes for s in good)
        out.append(
            f"| {res.tool} | {_version(res.tool)} | {_pct(detected, len(bad))} "
            f"| {_pct(false_pos, len(good))} | {crash_bad} / {crash_good} "
            f"| {res.scan_seconds:.2f} s | {res.wall:.2f} s | {_mb(res.max_rss)} |"
        )
    out += ["", "Misses and false positives per tool:", ""]
    for res in results:
        missed = [s.name for s in bad if not counted_as_flagged(res, s)]
        false_pos_names = [s.name for s in good if counted_as_flagged(res, s)]
        eco_fp = [n for n in false_pos_names if n.startswith("eco:")]
        if len(eco_fp) > 12:  # name the corpus samples; count the ecosystem objects per library
            per: dict[str, int] = {}
            for n in eco_fp:
                per[n[4:].split("/")[0]] = per.get(n[4:].split("/")[0], 0) + 1
            false_pos_names = [n for n in false_pos_names if not n.startswith("eco:")] + [
                f"{k}: {v} objects" for k, v in sorted(per.items())]
        out.append(
            f"- {res.tool}: missed {len(missed)}"
            + (f" ({', '.join(f'`{n}`' for n in missed)})" if missed else "")
            + f"; false positives {len(false_pos_names)}"
            + (f" ({', '.join(f'`{n}`' for n in false_pos_names)})" if false_pos_names else "")
        )
    return out


def render_speed(results: list[SpeedResult], runs: int) -> list[str]:
    out = [
        f"Each cell: median of up to {runs} runs, each in a fresh process (page cache warm). "
        "Scan = inside the process, imports excluded; process = wall time of the whole "
        "process; RSS = peak resident set of that process.",
        "",
        "| Checkpoint | Tool | scan (median) | process (median) | peak RSS | verdict | target |",
        "|---|---|---|---|---|---|---|",
    ]
    for res in results:
        seconds, mb = TARGETS[res.case]
        if res.scan:
            scan = f"{statistics.median(res.scan):.3f} s"
            wall = f"{statistics.median(res.wall):.2f} s"
        else:
            scan = wall = f"> {res.wall[-1]:.0f} s (timeout)" if res.timed_out else "crashed"
        verdict = f"crash: {res.crash}" if res.crash else ("flagged" if res.flagged else "clean")
        target = "-"
        if res.tool.startswith("custody") and res.scan:
            ok = statistics.median(res.scan) < seconds and (mb is None or res.max_rss / 1e6 < mb)
            limit = f"< {seconds:g} s" + (f", < {mb:g} MB" if mb else "")
            target = f"{limit}: {'met' if ok else '**not met**'}"
        out.append(
            f"| {CASES[res.case]} | {res.tool} | {scan} | {wall} | {_mb(res.max_rss)} "
            f"| {verdict.replace('|', '/')} | {target} |"
        )
    return out


def render(corpus: list[str], speed: list[str], quick: bool) -> str:
    machine = [
        f"- nproc: {os.cpu_count()}; Python {platform.python_version()}; "
        + "; ".join(f"{t} {_version(t)}" for t in TOOLS[1:])
    ]
    note = ["", "*Quick run (`--quick`): one run per speed cell.*"] if quick else []
    return "\n".join(
        [
            "",
            "Script: `benchmarks/bench_scan.py` (all four tools in one run).",
            "",
            "### Detection and false positives",
            "",
            *corpus,
            "",
            "Rules: detected = the tool reports the sample unsafe (Custody: a finding at medium "
            "or above; picklescan: a dangerous global; modelscan: an issue at medium or above; "
            "fickling: `scan_file`/`scan_zip_archive` severity above likely-safe). A crash or "
            "an error reported instead of a verdict is a miss on a malicious sample and a false "
            "positive on a benign one. Peers get each file by its path and pick formats their "
            "own way (modelscan and picklescan by extension).",
            "",
            "### Speed and memory",
            "",
            *speed,
            *note,
            "",
            "Machine:",
            "",
            *machine,
            "",
            f"Measured {time.strftime('%Y-%m-%d')}. Reproduce: `pip install modelscan fickling` "
            "(peers for this benchmark only: neither is a dependency or an extra of Custody), "
            "then `python benchmarks/bench_scan.py --write-docs`",
            "",
        ]
    )


def write_docs(body: str) -> None:
    text = DOCS.read_text()
    block = f"{START}\n{body}\n{END}"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + f"\n\n{HEADING}\n\n{block}\n"
    DOCS.write_text(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run per speed cell")
    parser.add_argument("--runs", type=int, default=3, help="runs per speed cell (default 3)")
    parser.add_argument("--timeout", type=float, default=0.0, help="seconds per scan")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument(
        "--worker", nargs=3, metavar=("KIND", "TOOL", "ARG"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.worker:
        worker(*args.worker)
        return
    runs = 1 if args.quick else max(3, args.runs)
    timeout = args.timeout or (120.0 if args.quick else 300.0)
    with tempfile.TemporaryDirectory(prefix="custody-bench-scan-") as tmp:
        scratch = Path(tmp)
        samples = make_corpus(scratch / "corpus", timeout)
        corpus_results = []
        for tool in TOOLS:
            print(f"corpus: {tool} ...", file=sys.stderr)
            corpus_results.append(run_corpus(tool, samples, scratch, timeout))
        print("making checkpoints ...", file=sys.stderr)
        checkpoints = make_checkpoints(scratch)
        speed_results = []
        for case, path in checkpoints.items():
            for tool in SPEED_TOOLS:
                print(f"speed: {case} {tool} ...", file=sys.stderr)
                speed_results.append(run_speed(tool, case, path, runs, timeout))
    corpus_lines = render_corpus(samples, corpus_results)
    body = render(corpus_lines, render_speed(speed_results, runs), args.quick)
    print(body)
    if args.write_docs:
        write_docs(body)


if __name__ == "__main__":
    main()
