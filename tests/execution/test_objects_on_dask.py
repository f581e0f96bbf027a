"""An object prefix hashed on a cluster gives the local manifest: a real S3 server (moto) whose
credentials the workers take from their own environment, and file:// URIs."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.s3_server import S3Server

from custody.errors import UsageError, VerificationError
from custody.provenance.execution.dask_engine import DaskExecutor
from custody.provenance.hashing.files import hash_path
from custody.provenance.hashing.objects import hash_uri

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with S3Server.start() as server:
        yield server


@pytest.fixture(scope="module")
def cluster(s3: S3Server) -> Iterator[str]:
    """The 2-process LocalCluster, its workers started with the S3 credentials in their
    environment (each worker's own credential chain; none travels with the tasks)."""
    import dask

    with pytest.MonkeyPatch.context() as env:
        for key, value in s3.env.items():
            env.setenv(key, value)
        env.delenv("AWS_PROFILE", raising=False)
        with dask.config.set({"distributed.scheduler.allowed-failures": 1}), \
                distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                         dashboard_address=None, scheduler_port=0) as local:
            yield "tcp://" + local.scheduler_address.split("://", 1)[1]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("objects") / "art"
    for n in range(24):
        path = root / f"d{n % 3}" / ("sub" if n % 2 else "") / f"f{n:02d}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(n * 1499))
    (root / "empty").write_bytes(b"")
    (root / "big").write_bytes(os.urandom(17 * 1024 * 1024 + 5))  # several 8 MiB ranges
    return root


def _dump(manifest: object) -> str:
    return json.dumps(manifest.to_json(), sort_keys=True)  # type: ignore[attr-defined]


def test_s3_prefix_on_the_cluster_gives_the_local_manifest_and_locations(
        s3: S3Server, cluster: str, tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    bucket = s3.bucket()
    s3.put_tree(bucket, "models/art", tree)
    uri = f"s3://{bucket}/models/art/"
    local = hash_uri(uri)
    with DaskExecutor(cluster) as engine:
        remote = hash_uri(uri, executor=engine)
    assert _dump(remote.manifest) == _dump(local.manifest) == _dump(hash_path(tree))
    assert remote.locations == local.locations
    assert all(o.identity.version_id for o in remote.locations.objects)


def test_file_uri_on_the_cluster_gives_the_disk_manifest(cluster: str, tree: Path) -> None:
    with DaskExecutor(cluster) as engine:
        remote = hash_uri(tree.as_uri() + "/", executor=engine)
    assert _dump(remote.manifest) == _dump(hash_path(tree))


def test_an_object_replaced_while_workers_read_is_refused(
        s3: S3Server, cluster: str, tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The listing is pinned: a worker reads the listed version, and the second listing on the
    client sees the new version and refuses (object.changed), as the local read does."""
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    bucket = s3.bucket()
    s3.put_tree(bucket, "p", tree)
    uri = f"s3://{bucket}/p/"

    class Replacing:
        """Replaces one object after the listing, before the shards run."""

        def __init__(self, inner: DaskExecutor):
            self.inner, self.name = inner, inner.name

        @property
        def workers(self) -> int:
            return self.inner.workers

        def map(self, fn, items, *, cpu=False, on_done=None):  # type: ignore[no-untyped-def]
            s3.put(bucket, "p/d0/f00", b"replaced")
            return self.inner.map(fn, items, cpu=cpu, on_done=on_done)

    with DaskExecutor(cluster) as engine, \
            pytest.raises(VerificationError, match="changed while it was hashed") as info:
        hash_uri(uri, executor=Replacing(engine))  # type: ignore[arg-type]
    assert info.value.rule == "object.changed"


def test_credentials_in_the_uri_are_not_sent_to_workers(cluster: str, tree: Path) -> None:
    with DaskExecutor(cluster) as engine, pytest.raises(UsageError, match="not sent"):
        hash_uri(tree.as_uri() + "/?token=abcdefgh", executor=engine)


def test_a_large_file_uri_hashes_its_own_bytes_every_time(tmp_path: Path) -> None:
    """Regression: the ranges of a local file were fetched concurrently through one shared
    handle (seek + read), so reads interleaved: short ranges, or the wrong bytes hashed."""
    root = tmp_path / "art"
    root.mkdir()
    (root / "big").write_bytes(os.urandom(40 * 1024 * 1024 + 1))
    (root / "small").write_bytes(b"x")
    expected = _dump(hash_path(root))
    for _ in range(3):
        assert _dump(hash_uri(root.as_uri() + "/").manifest) == expected
