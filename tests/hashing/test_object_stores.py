"""Object stores through fsspec: the same manifest as on disk, identities, refusals, no secrets.

A real S3 protocol server (moto_server on 127.0.0.1, versioned buckets), ``memory://`` and
``file://``; the CLI is the real one (``cli`` fixture). Changes "during hashing" are made from
the progress callback, so they happen between two reads, never after a sleep.
"""

from __future__ import annotations

import hashlib
import http.server
import importlib.util
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.s3_server import S3Server

from custody.errors import ArtifactError, UsageError, VerificationError
from custody.provenance.hashing.files import hash_path
from custody.provenance.hashing.locations import redact_uri, scrub
from custody.provenance.hashing.object_reads import BLOCK
from custody.provenance.hashing.objects import fetch_private, hash_into, hash_uri, list_uri

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with S3Server.start() as server:
        yield server


@pytest.fixture
def aws(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The usual credential chain (environment) pointed at the local server."""
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return s3


def _tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def _memory(files: dict[str, bytes]) -> str:
    base = f"/custody-tests/{uuid.uuid4().hex}/art"
    fs = fsspec.filesystem("memory")
    for rel, data in files.items():
        fs.pipe(f"{base}/{rel}", data)
    return f"memory://{base}"


# a tree: 1-6 files, nested names, bytes of any length including empty
_names = st.lists(st.text("abcxyz._-", min_size=1, max_size=6).filter(
    lambda s: s not in (".", "..")), min_size=1, max_size=3).map("/".join)
_trees = st.dictionaries(_names, st.binary(max_size=3000), min_size=1, max_size=6).filter(
    lambda t: not any(b.startswith(a + "/") for a in t for b in t))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=_trees)
def test_memory_and_file_uris_give_hash_paths_manifest(files: dict[str, bytes],
                                                       tmp_path_factory: pytest.TempPathFactory
                                                       ) -> None:
    """Differential: the same bytes in memory://, under file:// and on disk, one manifest."""
    disk = _tree(tmp_path_factory.mktemp("t") / "art", files)
    expected = hash_path(disk)
    from_memory = hash_uri(_memory(files))
    from_file = hash_uri(f"file://{disk}")
    assert from_memory.manifest == expected
    assert from_file.manifest == expected
    assert [o.relpath for o in from_memory.locations.objects] == sorted(files)


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=_trees)
def test_s3_prefix_gives_hash_paths_manifest(files: dict[str, bytes], aws: S3Server,
                                             tmp_path_factory: pytest.TempPathFactory) -> None:
    disk = _tree(tmp_path_factory.mktemp("t") / "art", files)
    bucket = aws.bucket()
    aws.put_tree(bucket, "models/art", disk)
    hashed = hash_uri(f"s3://{bucket}/models/art")
    assert hashed.manifest == hash_path(disk)
    assert hash_uri(f"s3://{bucket}/models/art/").manifest == hashed.manifest


def test_large_object_read_in_concurrent_ranges_hashes_like_disk(aws: S3Server,
                                                                 tmp_path: Path) -> None:
    """An object of several blocks (read in parallel ranges) and one of exactly one block."""
    big = os.urandom(3 * BLOCK + 12345)
    files = {"weights.bin": big, "exact.bin": os.urandom(BLOCK), "empty": b""}
    disk = _tree(tmp_path / "model", files)
    bucket = aws.bucket()
    aws.put_tree(bucket, "model", disk)
    seen: list[int] = []
    hashed = hash_uri(f"s3://{bucket}/model", progress=seen.append)
    assert hashed.manifest == hash_path(disk)
    assert sum(seen) == sum(len(b) for b in files.values())  # every byte read once
    single = hash_uri(f"s3://{bucket}/model/weights.bin")
    assert single.manifest == hash_path(disk / "weights.bin")
    assert single.manifest.digest == hashlib.sha256(big).hexdigest()


def test_locations_carry_version_ids_and_etags(aws: S3Server) -> None:
    bucket = aws.bucket()
    version = aws.put(bucket, "m/model.pkl", b"weights")
    hashed = hash_uri(f"s3://{bucket}/m/model.pkl")
    (location,) = hashed.locations.objects
    assert location.uri == f"s3://{bucket}/m/model.pkl"
    assert location.identity.version_id == version
    assert location.identity.etag == '"' + hashlib.md5(b"weights").hexdigest() + '"'  # noqa: S324
    assert location.identity.size == 7
    assert hashed.source == f"s3://{bucket}/m/model.pkl"
    assert list_uri(f"s3://{bucket}/m/model.pkl").locations == hashed.locations


def test_one_byte_changed_gives_another_digest(aws: S3Server) -> None:
    bucket = aws.bucket()
    aws.put(bucket, "d/a.bin", b"A" * 1000)
    aws.put(bucket, "d/b.bin", b"B" * 1000)
    before = hash_uri(f"s3://{bucket}/d")
    aws.put(bucket, "d/b.bin", b"B" * 999 + b"C")
    after = hash_uri(f"s3://{bucket}/d")
    assert after.manifest.digest != before.manifest.digest
    assert [f.relpath for f in after.manifest.files
            if f not in before.manifest.files] == ["b.bin"]


def test_object_replaced_with_the_same_name_is_noticed(aws: S3Server) -> None:
    """Same key, same bytes, new version: the sha256 stays, the identity tells it apart."""
    bucket = aws.bucket()
    first = aws.put(bucket, "m/model.pkl", b"weights")
    one = hash_uri(f"s3://{bucket}/m/model.pkl")
    second = aws.put(bucket, "m/model.pkl", b"weights")
    two = hash_uri(f"s3://{bucket}/m/model.pkl")
    assert first != second
    assert two.manifest == one.manifest
    assert one.locations.objects[0].identity.version_id == first
    assert two.locations.objects[0].identity.version_id == second
    assert one.locations.objects[0].identity.differs(two.locations.objects[0].identity) == [
        "version_id"]


def test_copy_at_another_uri_has_the_same_digest_and_another_location(aws: S3Server) -> None:
    bucket, other = aws.bucket(), aws.bucket()
    aws.put(bucket, "m/model.pkl", b"weights")
    aws.client().copy_object(Bucket=other, Key="elsewhere/model.pkl",
                             CopySource={"Bucket": bucket, "Key": "m/model.pkl"})
    one = hash_uri(f"s3://{bucket}/m/model.pkl")
    two = hash_uri(f"s3://{other}/elsewhere/model.pkl")
    assert two.manifest.digest == one.manifest.digest
    assert two.locations.objects[0].uri != one.locations.objects[0].uri
    assert two.locations.objects[0].identity.version_id != \
        one.locations.objects[0].identity.version_id


def test_missing_object_and_bucket_exit_2_naming_the_uri(aws: S3Server, cli) -> None:  # type: ignore[no-untyped-def]
    bucket = aws.bucket()
    aws.put(bucket, "m/a", b"x")
    cli("hash", f"s3://{bucket}/m/absent.pkl").expect(
        2, f"s3://{bucket}/m/absent.pkl", "no such object", "check the bucket and the key")
    cli("hash", "s3://custody-no-such-bucket/m").expect(
        2, "s3://custody-no-such-bucket/m", "bucket does not exist")
    cli("scan", f"s3://{bucket}/nothing/").expect(2, f"s3://{bucket}/nothing/")


def test_bad_credentials_exit_2_with_the_credential_chain_and_no_secret(
        aws: S3Server, cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    bucket = aws.bucket()
    aws.put(bucket, "m/model.pkl", b"weights")
    wrong_secret = "WrongSecretKeyValue/abcdefghijklmnopqrstuvw"
    with aws.authenticating():
        cli("hash", f"s3://{bucket}/m/model.pkl").expect(0)  # the right key works
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong_secret)
        for uri in (f"s3://{bucket}/m/model.pkl", f"s3://{bucket}/m"):
            result = cli("hash", uri, "--json").expect(
                2, uri, "refused the credentials", "AWS_ACCESS_KEY_ID", "AWS_PROFILE",
                "docs/object-stores.md")
            assert wrong_secret not in result.out + result.err
            assert aws.secret_key not in result.out + result.err
            assert aws.access_key not in result.out + result.err
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNKEY000000")
        cli("scan", f"s3://{bucket}/m/model.pkl").expect(2, "refused the credentials")


def test_missing_extra_names_it(cli) -> None:  # type: ignore[no-untyped-def]
    """A scheme whose package is not installed: exit 2, the extra to install named."""
    absent = [(scheme, extra) for scheme, module, extra in (
        ("gs", "gcsfs", "gcs"), ("az", "adlfs", "azure"), ("hf", "huggingface_hub", "hf"))
        if importlib.util.find_spec(module) is None]
    if not absent:
        pytest.skip("gcsfs, adlfs and huggingface_hub are all installed here")
    for scheme, extra in absent:
        cli("hash", f"{scheme}://bucket/model").expect(2, f"pip install 'custody[{extra}]'")
    with pytest.raises(UsageError, match=r"custody\[" + absent[0][1]):
        hash_uri(f"{absent[0][0]}://bucket/model")


def test_unknown_and_chained_schemes_are_usage_errors(cli) -> None:  # type: ignore[no-untyped-def]
    cli("hash", "ftp://host/x").expect(2, "not an object store Custody reads", "s3://")
    cli("hash", "simplecache::s3://b/x").expect(2, "chained")
    cli("hash", "s3://").expect(2, "names no bucket")
    cli("hash", "memory://").expect(2, "names no bucket")


# --- changes while hashing ---------------------------------------------------------------------


def _once(action):  # type: ignore[no-untyped-def]
    """A progress callback that runs ``action`` at the first block read."""
    done = threading.Event()

    def progress(_: int) -> None:
        if not done.is_set():
            done.set()
            action()
    return progress


def test_object_added_during_hashing_refuses(aws: S3Server) -> None:
    bucket = aws.bucket()
    for i in range(4):
        aws.put(bucket, f"p/{i}.bin", bytes([i]) * 100)
    with pytest.raises(VerificationError) as caught:
        hash_uri(f"s3://{bucket}/p", workers=1,
                 progress=_once(lambda: aws.put(bucket, "p/late.bin", b"new")))
    assert caught.value.rule == "object.listing_changed"
    assert "added: late.bin" in caught.value.message
    assert caught.value.subject == f"s3://{bucket}/p"


def test_object_removed_during_hashing_refuses(aws: S3Server) -> None:
    bucket = aws.bucket()
    for i in range(3):
        aws.put(bucket, f"p/{i}.bin", b"x" * 10)
    with pytest.raises(VerificationError) as caught:
        hash_uri(f"s3://{bucket}/p", workers=1,
                 progress=_once(lambda: aws.client().delete_object(Bucket=bucket,
                                                                   Key="p/0.bin")))
    assert caught.value.rule == "object.listing_changed"
    assert "removed: 0.bin" in caught.value.message


@pytest.mark.parametrize("versioned", [True, False])
def test_object_replaced_during_hashing_refuses(aws: S3Server, versioned: bool) -> None:
    """Overwritten between two of its ranges: a versioned read stays on the listed version and
    the second listing shows the new one; an unversioned read fails its If-Match. Both refuse."""
    bucket = aws.bucket(versioned=versioned)
    aws.put(bucket, "m/weights.bin", os.urandom(3 * BLOCK))
    with pytest.raises(VerificationError) as caught:
        hash_uri(f"s3://{bucket}/m/weights.bin", workers=1, progress=_once(
            lambda: aws.put(bucket, "m/weights.bin", os.urandom(3 * BLOCK))))
    assert caught.value.rule == "object.changed"
    assert caught.value.subject == f"s3://{bucket}/m/weights.bin"


def test_memory_object_replaced_during_hashing_refuses() -> None:
    uri = _memory({"a.bin": b"a" * 100, "b.bin": b"b" * 100})
    fs = fsspec.filesystem("memory")
    with pytest.raises(VerificationError) as caught:
        hash_uri(uri, workers=1, progress=_once(
            lambda: fs.pipe(uri.removeprefix("memory://") + "/b.bin", b"B" * 101)))
    assert caught.value.rule == "object.changed"


# --- the private copy ----------------------------------------------------------------------


def test_private_copy_holds_exactly_the_hashed_bytes_and_is_removed(aws: S3Server,
                                                                    tmp_path: Path) -> None:
    files = {"model.pkl": (SAMPLES / "model.pkl").read_bytes(), "cfg/a.json": b"{}",
             "big.bin": os.urandom(2 * BLOCK + 1)}
    disk = _tree(tmp_path / "model", files)
    bucket = aws.bucket()
    aws.put_tree(bucket, "model", disk)
    with fetch_private(f"s3://{bucket}/model") as fetched:
        assert fetched.copy is not None
        assert fetched.copy.name == "model"
        assert hash_path(fetched.copy) == fetched.manifest == hash_path(disk)
        assert fetched.copy.parent.stat().st_mode & 0o777 == 0o700
        assert (fetched.copy / "big.bin").stat().st_mode & 0o777 == 0o600
        home = fetched.copy.parent
    assert not home.exists()
    into = tmp_path / "staging"
    into.mkdir()
    single = hash_into(f"s3://{bucket}/model/model.pkl", into)
    assert single.copy == into / "model.pkl"
    assert single.copy.read_bytes() == files["model.pkl"]


def test_scan_reads_the_private_copy_once(aws: S3Server, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bucket = aws.bucket()
    aws.put(bucket, "bad/model.pkl", (SAMPLES / "malicious.pkl").read_bytes())
    aws.put(bucket, "good/model.pkl", (SAMPLES / "model.pkl").read_bytes())
    bad = cli("scan", f"s3://{bucket}/bad/model.pkl", "--json", "--sarif",
              tmp_path / "s.sarif").expect(1)
    assert bad.json()["path"] == f"s3://{bucket}/bad/model.pkl"
    assert any(f["rule_id"].startswith("pickle.") for f in bad.json()["findings"])
    # the report and SARIF name the URI, never the private copy's temporary path
    assert "custody-objects-" not in bad.out + bad.err + (tmp_path / "s.sarif").read_text()
    cli("scan", f"s3://{bucket}/good/").expect(0)


def test_hash_cli_prints_manifest_and_locations(aws: S3Server, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    disk = _tree(tmp_path / "art", {"a": b"1", "d/b": b"22"})
    bucket = aws.bucket()
    aws.put_tree(bucket, "art", disk)
    local = cli("hash", disk, "--json").expect(0).json()
    remote = cli("hash", f"s3://{bucket}/art", "--json").expect(0).json()
    assert {k: v for k, v in remote.items() if k != "locations"} == local
    assert [o["relpath"] for o in remote["locations"]["objects"]] == ["a", "d/b"]
    assert all(o["version_id"] for o in remote["locations"]["objects"])
    cli("hash", f"s3://{bucket}/art").expect(0, local["digest"]["value"], f"s3://{bucket}/art")


# --- file://, https:// and what is never shown -----------------------------------------------


def test_file_uri_refuses_symlinks(tmp_path: Path) -> None:
    disk = _tree(tmp_path / "art", {"a": b"1"})
    (disk / "link").symlink_to(disk / "a")
    with pytest.raises(ArtifactError, match="symbolic link"):
        hash_uri(f"file://{disk}")


def test_keys_that_cannot_be_files_are_refused(aws: S3Server) -> None:
    """S3 allows keys no directory on disk can hold: refused, since hash_path could not give
    their manifest."""
    bucket = aws.bucket()
    aws.put(bucket, "art/a", b"1")
    aws.put(bucket, "art/a/b", b"2")  # a key that is also a prefix
    with pytest.raises(ArtifactError, match="both an object and a prefix"):
        hash_uri(f"s3://{bucket}/art")
    other = aws.bucket()
    aws.put(other, "art/x//y", b"1")  # an empty segment
    with pytest.raises(ArtifactError, match="cannot be a file"):
        hash_uri(f"s3://{other}/art")


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def test_signed_https_url_is_read_but_never_recorded_or_shown(http_server, cli) -> None:  # type: ignore[no-untyped-def]
    base, root = http_server
    (root / "model.pkl").write_bytes((SAMPLES / "model.pkl").read_bytes())
    signature = "Zm9vYmFyc2VjcmV0c2lnbmF0dXJlMTIz"
    signed = (f"{base}/model.pkl?X-Amz-Credential=AKIAEXAMPLE0000%2F20260101&"
              f"X-Amz-Signature={signature}")
    hashed = hash_uri(signed)
    assert hashed.manifest == hash_path(root / "model.pkl")
    assert hashed.source == f"{base}/model.pkl"
    assert hashed.locations.objects[0].uri == f"{base}/model.pkl"
    assert signature not in repr(hashed)
    out = cli("hash", signed, "--json").expect(0)
    assert signature not in out.out + out.err
    missing = cli("hash", signed.replace("model.pkl", "absent.pkl")).expect(2, "absent.pkl")
    assert signature not in missing.out + missing.err
    assert "AKIAEXAMPLE0000" not in missing.out + missing.err
    cli("hash", f"{base}/").expect(0)  # a URL is one object, never a listing of links


def test_redaction_of_userinfo_queries_and_environment_secrets(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert redact_uri("https://user:pw@host.example/a/b?sig=1#frag") == "https://host.example/a/b"
    assert redact_uri("s3://bucket/key?versionId=3") == "s3://bucket/key"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value-xyz")
    monkeypatch.setenv("AZURE_STORAGE_SAS_TOKEN", "sv=2020&sig=abcdef")
    text = scrub("failed: https://u:p@h/x?token=zzz with s3cr3t-value-xyz and sv=2020&sig=abcdef")
    assert "s3cr3t-value-xyz" not in text
    assert "sig=abcdef" not in text
    assert "token=zzz" not in text
    assert "u:p@" not in text
