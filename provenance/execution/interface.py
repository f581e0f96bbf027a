"""The executor interface: run one function over many items, results in order.

Everything that runs past one machine (hashing shards, scanning model shards) goes through
:class:`Executor`, which is small on purpose so that a third engine (Ray) is one more class
(docs/scaling.md):

- ``map(fn, items, cpu=..., on_done=...)`` runs ``fn`` on every item and yields the results **in
  the items' order**; ``on_done(i)`` is called as item ``i`` finishes (any order: progress bars).
  ``fn`` must be a module-level function (engines pickle it by reference) and each item must say
  where its bytes are (a path or a URI), never carry them: each worker reads for itself.
  ``cpu=True`` says the work is CPU-bound (scanning, profiling): the local engine then uses
  processes instead of threads.
- ``name`` (``local[4]``, ``dask://host:8786``) and ``workers`` (how many items can run at once).
- a context manager: the engine's pools or its client live inside the ``with`` block.

:func:`parse_executor` turns ``--executor`` into an engine: ``local``, ``local[N]``,
``dask://HOST:PORT``; without the option, ``CUSTODY_DASK_SCHEDULER`` (``HOST:PORT`` or
``dask://HOST:PORT``) selects Dask, else the caller's own local path runs (no executor).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, Self, TypeVar

from custody.errors import UsageError

T = TypeVar("T")
R = TypeVar("R")

ENV_SCHEDULER = "CUSTODY_DASK_SCHEDULER"
_LOCAL = re.compile(r"^local(?:\[(\d+)\])?$")
_DASK = re.compile(r"^(?:dask|tcp)://([^/\s]+:\d+)/?$")
_FORMS = "local, local[N] or dask://HOST:PORT"


class Executor(Protocol):
    """An engine that runs one function over many items (see the module docstring)."""

    @property
    def name(self) -> str: ...

    @property
    def workers(self) -> int: ...

    def map(self, fn: Callable[[T], R], items: Sequence[T], *, cpu: bool = False,
            on_done: Callable[[int], None] | None = None) -> Iterator[R]: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


def parse_executor(spec: str | None) -> Executor | None:
    """The engine ``spec`` names, or the one ``CUSTODY_DASK_SCHEDULER`` names when ``spec`` is
    None; None when neither says anything (the caller's plain local path)."""
    if spec is None:
        env = os.environ.get(ENV_SCHEDULER, "").strip()
        if not env:
            return None
        spec = env if "://" in env else f"dask://{env}"
        source = ENV_SCHEDULER
    else:
        source = "--executor"
    text = spec.strip()
    local = _LOCAL.match(text)
    if local is not None:
        from custody.provenance.execution.local import LocalExecutor

        count = int(local.group(1)) if local.group(1) else None
        if count == 0:
            raise UsageError(f"{source} {text}: a local executor needs at least one worker",
                             hint=f"give {_FORMS}", subject=text)
        return LocalExecutor(count)
    dask = _DASK.match(text)
    if dask is not None:
        from custody.provenance.execution.dask_engine import DaskExecutor

        return DaskExecutor(f"tcp://{dask.group(1)}")
    raise UsageError(f"{source} {text!r} names no executor", hint=f"give {_FORMS}",
                     subject=text)
