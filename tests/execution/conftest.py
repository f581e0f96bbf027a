"""A real Dask LocalCluster with 2 worker processes, started once per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """``dask://HOST:PORT`` of a LocalCluster: 2 nanny-managed worker processes, 1 thread each;
    a task whose worker dies is retried once (allowed-failures 1), then the run fails."""
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 1,
                          "distributed.worker.daemon": False}), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                     dashboard_address=None, scheduler_port=0) as local:
        yield "dask://" + local.scheduler_address.split("://", 1)[1]
