"""Executors that wrap a real engine to stage worker faults, for tests/execution.

The wrapped function is module-level here, so Dask workers (which have tests/ on sys.path
through the spawned processes) import it by name. A gate synchronises on files, never on time:
the task writes ``started`` (with its worker's pid) when it begins, which the test waits for.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Self


def _once_then_block(fn: Callable[[Any], Any], gate: str, item: Any) -> Any:
    """The first task to start writes its pid and blocks (until its worker is killed); every
    later task, including the re-run of the blocked one, just runs."""
    try:  # the claim stays: exactly one task ever blocks
        fd = os.open(Path(gate) / "claimed", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return fn(item)
    os.close(fd)
    (Path(gate) / "started.tmp").write_text(str(os.getpid()))
    (Path(gate) / "started.tmp").replace(Path(gate) / "started")
    threading.Event().wait(120)  # never set: the test kills this process first
    raise RuntimeError("the test did not kill the blocked worker")


def _always_die(fn: Callable[[Any], Any], item: Any, doomed: Any) -> Any:
    if item == doomed:
        os.kill(os.getpid(), signal.SIGKILL)
    return fn(item)


def refuse(item: str) -> str:
    """A task that refuses on purpose: its error must reach the client with its rule."""
    from custody.errors import VerificationError

    raise VerificationError(f"{item} refused on a worker", rule="object.changed",
                            hint="a hint", subject=item)


class Gated:
    """Runs ``inner`` with every task going through ``_once_then_block``."""

    def __init__(self, inner: Any, gate: Path, *, die_on: Any = None):
        self.inner, self.gate, self.die_on = inner, gate, die_on

    @property
    def name(self) -> str:
        return str(self.inner.name)

    @property
    def workers(self) -> int:
        return int(self.inner.workers)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], *, cpu: bool = False,
            on_done: Callable[[int], None] | None = None) -> Iterator[Any]:
        if self.die_on is not None:
            doomed = items[self.die_on]
            wrapped = partial(_always_die, fn, doomed=doomed)
        else:
            wrapped = partial(_once_then_block, fn, str(self.gate))
        return self.inner.map(wrapped, items, cpu=cpu, on_done=on_done)


def kill_when_started(gate: Path, killed: threading.Event) -> threading.Thread:
    """A thread that waits for the gate's ``started`` file and SIGKILLs the pid in it."""

    def run() -> None:
        started = gate / "started"
        while not started.exists():
            if killed.wait(0.02):  # the run ended without the gate: nothing to kill
                return
        os.kill(int(started.read_text()), signal.SIGKILL)
        killed.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread
