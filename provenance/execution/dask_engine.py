"""The Dask engine: items run as tasks on a ``distributed`` cluster's workers.

Custody never starts a cluster of its own: it connects a :class:`distributed.Client` to the
scheduler at ``dask://HOST:PORT`` (``tcp://`` on the wire). Tasks are submitted with
``pure=False`` (each run is new work, never a cached result); a worker that dies while running
one is replaced by its nanny and the scheduler runs the task again elsewhere, up to the
cluster's ``distributed.scheduler.allowed-failures``. A task that cannot finish ends the whole
run with :class:`~custody.errors.ExecutionError` (exit 2): nothing is assembled, nothing is
recorded. An error a task raises on purpose (a :class:`~custody.errors.CustodyError`, e.g. an
unreadable file) reaches the caller as itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Self, TypeVar

from custody.errors import ExecutionError

T = TypeVar("T")
R = TypeVar("R")

_EXTRA_HINT = "install the extra: pip install 'custody[dask]' (dask[distributed])"


class DaskExecutor:
    """``dask://HOST:PORT``: a client of an existing Dask scheduler."""

    def __init__(self, address: str, *, timeout: float | None = None):
        self.address = address  # tcp://HOST:PORT
        self.timeout = timeout  # None: Dask's distributed.comm.timeouts.connect
        self._client: Any = None  # a distributed.Client (partly untyped: held as Any)

    @property
    def name(self) -> str:
        return "dask://" + self.address.split("://", 1)[-1]

    @property
    def workers(self) -> int:
        info = self._connected().scheduler_info(n_workers=-1)
        threads = sum(int(w.get("nthreads", 1)) for w in info.get("workers", {}).values())
        return max(1, threads)

    def __enter__(self) -> Self:
        try:
            import distributed
        except ImportError:
            raise ExecutionError(f"--executor {self.name} needs Dask, which is not installed",
                                 hint=_EXTRA_HINT, subject=self.name) from None
        try:
            options: dict[str, Any] = {} if self.timeout is None else {"timeout": self.timeout}
            client: Any = distributed.Client
            self._client = client(self.address, set_as_default=False, **options)
        except OSError as exc:
            raise ExecutionError(
                f"cannot reach the Dask scheduler at {self.name}: {exc}",
                hint="start the scheduler (`dask scheduler`) and its workers, or check "
                f"--executor / CUSTODY_DASK_SCHEDULER (now {self.name})",
                subject=self.name) from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def map(self, fn: Callable[[T], R], items: Sequence[T], *, cpu: bool = False,
            on_done: Callable[[int], None] | None = None) -> Iterator[R]:
        import distributed
        from distributed.client import FutureCancelledError
        from distributed.scheduler import KilledWorker

        client = self._connected()
        completed: Any = distributed.as_completed
        if not items:
            return iter(())
        futures = client.map(fn, list(items), pure=False)
        index = {f.key: n for n, f in enumerate(futures)}
        results: dict[int, Any] = {}
        try:
            for future in completed(futures, loop=client.loop):
                n = index[future.key]
                try:
                    results[n] = future.result()
                except KilledWorker as exc:
                    raise ExecutionError(
                        f"task {n + 1} of {len(futures)} could not finish on {self.name}: "
                        f"every worker that ran it died ({exc}); nothing was assembled or "
                        "recorded", hint="check the workers' memory and logs, then run again",
                        subject=self.name) from None
                except (FutureCancelledError, OSError) as exc:
                    raise ExecutionError(
                        f"task {n + 1} of {len(futures)} was lost on {self.name}: {exc}; "
                        "nothing was assembled or recorded",
                        hint="check that the scheduler is still running, then run again",
                        subject=self.name) from None
                if on_done is not None:
                    on_done(n)
        finally:
            client.cancel([f for f in futures if not f.done()])
        return (results[n] for n in range(len(futures)))

    def _connected(self) -> Any:
        if self._client is None:
            raise ExecutionError(f"{self.name} is used outside its `with` block",
                                 hint="enter the executor before mapping", subject=self.name)
        return self._client
