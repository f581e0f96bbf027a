"""Hashing on an executor gives exactly the local manifest: real LocalCluster, 2 processes."""

from __future__ import annotations

import json
import os
import socket
import threading
from functools import partial
from pathlib import Path

import pytest
from support.dask_gates import Gated, kill_when_started, refuse

from custody.errors import ArtifactError, ExecutionError, UsageError, VerificationError
from custody.provenance.execution.dask_engine import DaskExecutor
from custody.provenance.execution.interface import parse_executor
from custody.provenance.execution.local import LocalExecutor
from custody.provenance.hashing.files import hash_path, hash_shard


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Nested directories, empty files, many small files and one large file."""
    root = tmp_path_factory.mktemp("tree") / "dataset"
    for n in range(40):
        sub = root / f"part-{n % 4}" / ("deep/er" if n % 3 == 0 else "")
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"file-{n:02d}.bin").write_bytes(os.urandom(n * 997))
    (root / "empty-a").write_bytes(b"")
    (root / "part-1" / "empty-b").write_bytes(b"")
    (root / "large.bin").write_bytes(os.urandom(9 * 1024 * 1024 + 3))
    return root


def _manifest_bytes(path: Path, **kwargs: object) -> bytes:
    manifest = hash_path(path, **kwargs)  # type: ignore[arg-type]
    return json.dumps(manifest.to_json(), sort_keys=True).encode()


def test_dask_manifest_is_byte_identical_to_the_local_one(tree: Path, cluster: str) -> None:
    local = _manifest_bytes(tree)
    ticked: list[int] = []
    with DaskExecutor("tcp://" + cluster.split("://", 1)[1]) as engine:
        assert engine.workers == 2
        remote = _manifest_bytes(tree, executor=engine, progress=ticked.append)
    assert remote == local
    assert sum(ticked) == sum(f.stat().st_size for f in tree.rglob("*") if f.is_file())


def test_local_executor_gives_the_same_manifest(tree: Path) -> None:
    with LocalExecutor(3) as engine:
        assert _manifest_bytes(tree, executor=engine) == _manifest_bytes(tree)


def test_errors_raised_on_a_worker_reach_the_caller_as_themselves(tmp_path: Path,
                                                                  cluster: str) -> None:
    missing = tmp_path / "gone"
    executor = parse_executor(cluster)
    assert executor is not None
    with executor:
        with pytest.raises(ArtifactError, match=r"cannot read .*gone") as unreadable:
            list(executor.map(partial(hash_shard, follow=False), [((str(missing), "gone"),)]))
        assert unreadable.value.hint == "check the path"
        with pytest.raises(VerificationError, match="x refused on a worker") as refused:
            list(executor.map(refuse, ["x"]))
    assert (refused.value.rule, refused.value.hint, refused.value.subject) == (
        "object.changed", "a hint", "x")


def test_a_worker_killed_mid_run_is_retried_and_the_manifest_is_the_same(
        tree: Path, cluster: str, tmp_path: Path) -> None:
    expected = _manifest_bytes(tree)
    killed = threading.Event()
    with DaskExecutor("tcp://" + cluster.split("://", 1)[1]) as engine:
        killer = kill_when_started(tmp_path, killed)
        got = _manifest_bytes(tree, executor=Gated(engine, tmp_path))
        killer.join()
    assert killed.is_set(), "no task started behind the gate"
    assert got == expected


def test_a_run_whose_workers_keep_dying_raises_and_says_why(tree: Path, cluster: str,
                                                            tmp_path: Path) -> None:
    with DaskExecutor("tcp://" + cluster.split("://", 1)[1]) as engine, \
            pytest.raises(ExecutionError, match=r"could not finish on dask://.*died") as info:
        hash_path(tree, executor=Gated(engine, tmp_path, die_on=0))
    assert info.value.exit_code == 2
    assert "nothing was assembled or recorded" in info.value.message


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_scheduler_exits_2_naming_the_address(cli, tree: Path) -> None:  # type: ignore[no-untyped-def]
    import dask

    address = f"127.0.0.1:{_closed_port()}"
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        result = cli("hash", tree, "--executor", f"dask://{address}")
    assert result.code == 2
    assert f"dask://{address}" in result.err
    assert "cannot reach the Dask scheduler" in result.err


def test_the_scheduler_can_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTODY_DASK_SCHEDULER", "10.0.0.7:8786")
    engine = parse_executor(None)
    assert isinstance(engine, DaskExecutor)
    assert engine.name == "dask://10.0.0.7:8786"
    monkeypatch.delenv("CUSTODY_DASK_SCHEDULER")
    assert parse_executor(None) is None
    local = parse_executor("local[3]")
    assert isinstance(local, LocalExecutor)
    assert local.workers == 3


@pytest.mark.parametrize("spec", ["local[0]", "ray://x:1", "dask://nohostport", "local[-1]"])
def test_a_malformed_executor_is_a_usage_error(spec: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_executor(spec)
    assert info.value.hint == "give local, local[N] or dask://HOST:PORT"
    assert spec in info.value.message


def test_cli_hash_on_the_cluster_prints_the_local_digest(cli, tree: Path,  # type: ignore[no-untyped-def]
                                                         cluster: str) -> None:
    local = cli("hash", tree, "--json").expect(0).json()
    remote = cli("hash", tree, "--json", "--executor", cluster).expect(0).json()
    assert remote == local
