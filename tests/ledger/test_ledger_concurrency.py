"""Many writers and killed writers, on SQLite and PostgreSQL: gapless, complete, auditable."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

from custody.provenance.ledger.audit import audit_ledger
from custody.provenance.workspace import load_workspace

WRITER = Path(__file__).resolve().parents[1] / "support" / "ledger_writer.py"


def _writer(home: Path, count: int, prefix: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(WRITER), str(home), str(count), prefix],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _acks(text: str) -> list[tuple[str, int]]:
    out = []
    for line in text.splitlines():
        if line.startswith("ACK "):
            _, ref, idx = line.split()
            out.append((ref, int(idx)))
    return out


def _audit(home: Path):  # type: ignore[no-untyped-def]
    workspace = load_workspace(home)
    ledger = workspace.open_ledger()
    try:
        return audit_ledger(ledger, workspace.ledger_verifier()), ledger.list_versions()
    finally:
        ledger.close()


def test_eight_writers_five_hundred_appends_each(ws) -> None:  # type: ignore[no-untyped-def]
    writers = [_writer(ws.home, 500, f"w{i}") for i in range(8)]
    acked: list[tuple[str, int]] = []
    for proc in writers:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        acked.extend(_acks(out))
    assert len(acked) == 4000
    report, versions = _audit(ws.home)
    refs = {v.ref for v in versions}
    assert len(versions) == 4000 == len(refs)
    assert {ref for ref, _ in acked} == refs
    indices = sorted(idx for _, idx in acked)
    assert len(set(indices)) == 4000  # no two appends got one index
    # Each writer makes 250 models with one input each: 4000 versions + 2000 edge entries.
    assert report.size == ws.entry_count() == 6000
    rows = ws.sql("SELECT idx FROM ledger_entries ORDER BY idx")
    assert [r[0] for r in rows] == list(range(6000))  # gapless


def _kill_after_progress(home: Path, prefix: str, further: int, errors: Path) -> tuple[str, str]:
    """Start a writer, wait for its first acknowledged append, let it report ``further`` more
    progress lines (``START`` or ``ACK``), then SIGKILL it. Synchronised on the writer's own
    output, never on the clock: a slow machine only makes each round take longer. Returns all
    of its output and what the last line read before the kill was."""
    with errors.open("w") as err:
        proc = subprocess.Popen([sys.executable, str(WRITER), str(home), "100000", prefix],
                                stdout=subprocess.PIPE, stderr=err, text=True)
    assert proc.stdout is not None
    seen: list[str] = []
    while not seen or not seen[-1].startswith("ACK "):
        line = proc.stdout.readline()
        assert line, f"writer {prefix} exited before its first append: {errors.read_text()}"
        seen.append(line)
    for _ in range(further):
        line = proc.stdout.readline()
        assert line, f"writer {prefix} exited mid-run: {errors.read_text()}"
        seen.append(line)
    last = seen[-1].split()[0]
    os.kill(proc.pid, signal.SIGKILL)
    rest = proc.stdout.read()  # what it printed between our last read and the kill
    proc.stdout.close()
    assert proc.wait(timeout=60) == -signal.SIGKILL  # killed mid-run, not finished
    return "".join(seen) + rest, last


def test_writers_killed_at_random_moments_lose_nothing_acknowledged(ws, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """22 writers, each SIGKILLed at a random point of its run after its first acknowledged
    append: right after an ACK (between appends) or right after a START (inside an append)."""
    rng = random.Random(20261125)
    acked: list[tuple[str, int]] = []
    kill_points: list[str] = []
    for round_ in range(22):
        out, last = _kill_after_progress(ws.home, f"k{round_}", rng.randrange(0, 24),
                                         tmp_path / f"writer-{round_}.err")
        round_acks = _acks(out)
        assert round_acks, out
        acked.extend(round_acks)
        kill_points.append(last)
    assert len(kill_points) == 22
    assert {"START", "ACK"} <= set(kill_points)  # both between and inside appends
    report, versions = _audit(ws.home)
    refs = {v.ref for v in versions}
    missing = [ref for ref, _ in acked if ref not in refs]
    assert not missing, f"acknowledged but lost: {missing[:5]}"
    assert report.size == ws.entry_count()
    # After all the kills, the ledger still takes appends.
    proc = _writer(ws.home, 3, "after")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert len(_acks(out)) == 3
    _audit(ws.home)
