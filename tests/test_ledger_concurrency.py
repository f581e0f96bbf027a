"""Many writers and killed writers, on SQLite and PostgreSQL: gapless, complete, auditable."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from custody.provenance.ledger.audit import audit_ledger
from custody.provenance.workspace import load_workspace

WRITER = Path(__file__).resolve().parent / "ledger_writer.py"


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


def test_writers_killed_at_random_moments_lose_nothing_acknowledged(ws) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(20261125)
    acked: list[tuple[str, int]] = []
    kills = 0
    for round_ in range(22):
        proc = _writer(ws.home, 100_000, f"k{round_}")
        time.sleep(0.5 + rng.random() * 0.6)  # start-up, then a random moment mid-append
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL
        kills += 1
        acked.extend(_acks(out))
    assert kills >= 20
    assert acked, "no writer got far enough to acknowledge an append"
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
