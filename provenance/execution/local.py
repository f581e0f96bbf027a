"""The local engine (the default): threads for I/O-bound work, processes for CPU-bound work.

Hashing reads files (hashlib releases the GIL on large updates), so it runs on a thread pool;
scanning and profiling are Python-heavy, so ``cpu=True`` work runs on a process pool (the
``forkserver`` start method: no fork of a process that already runs threads).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import (
    FIRST_EXCEPTION,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from typing import Self, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


class LocalExecutor:
    """``local[N]``: N threads (or N processes for ``cpu=True``) on this machine."""

    def __init__(self, workers: int | None = None):
        self._workers = workers or default_workers()
        self._threads: ThreadPoolExecutor | None = None
        self._processes: ProcessPoolExecutor | None = None

    @property
    def name(self) -> str:
        return f"local[{self._workers}]"

    @property
    def workers(self) -> int:
        return self._workers

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        for pool in (self._threads, self._processes):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self._threads = self._processes = None

    def map(self, fn: Callable[[T], R], items: Sequence[T], *, cpu: bool = False,
            on_done: Callable[[int], None] | None = None) -> Iterator[R]:
        pool = self._pool(cpu)
        futures: list[Future[R]] = [pool.submit(fn, item) for item in items]
        index = {id(f): n for n, f in enumerate(futures)}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for future in sorted(done, key=lambda f: index[id(f)]):
                    future.result()  # the first failure raises here
                    if on_done is not None:
                        on_done(index[id(future)])
        finally:
            for future in pending:
                future.cancel()
        return (f.result() for f in futures)

    def _pool(self, cpu: bool) -> Executor:
        if cpu:
            if self._processes is None:
                context = multiprocessing.get_context("forkserver")
                self._processes = ProcessPoolExecutor(self._workers, mp_context=context)
            return self._processes
        if self._threads is None:
            self._threads = ThreadPoolExecutor(self._workers, thread_name_prefix="custody-exec")
        return self._threads
