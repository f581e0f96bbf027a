"""DVC's md5 values as Custody computes them (through dvc-data) equal what the real ``dvc add``
wrote.

Covers DVC 3 ``hash: md5`` files and folders (``.dir`` listings, ``.dvcignore``, non-ASCII
names, files over one read chunk), DVC 2 ``md5-dos2unix`` (against dvc_data's path-based
function and against values worked out here), workspace checks and their refusals, the naming
rule and ``dvc.lock`` ordering. The ``dvc`` application comes from the ``test`` extra.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from custody.errors import UsageError, VerificationError
from custody.provenance.hashing.dvc import (
    HASH_LEGACY,
    check_dvc_workspace,
    check_out,
    file_md5,
    load_lock,
    read_dvc_file,
)
from custody.provenance.hashing.dvc.check import cache_dir
from custody.provenance.integrations.dvc_lock import artifact_name

BIG = b"x" * (2**20 - 1) + b"\r\n" + b"line\r\n" * 1000  # CRLF split across the 1 MiB chunks
FILES: dict[str, bytes] = {
    "data/crlf.txt": b"a,b\r\n1,2\r\n",
    "data/binary.dat": b"\x00\x01\r\n\xff" * 50,
    "data/big.txt": BIG,
    "data/empty.txt": b"",
    "data/folder/a.txt": b"alpha\n",
    "data/folder/sub/b.bin": bytes(range(256)),
    "data/folder/sub/keep.tmp": b"kept by a nested !pattern\n",
    "data/folder/\u00fcber name.txt": "gr\u00fc\u00dfe\r\n".encode(),
    "data/folder/skip.tmp": b"ignored by .dvcignore\n",
    "data/folder/scratch/junk.bin": b"ignored folder\n",
}
ADDED = ["data/crlf.txt", "data/binary.dat", "data/big.txt", "data/empty.txt", "data/folder"]


def dvc(root: Path, *args: str) -> None:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    run = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, env=env,
                         capture_output=True, text=True, check=False, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dvc-hashing") / "repo"
    root.mkdir()
    dvc(root, "init", "--no-scm", "-q")
    for rel, data in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    with (root / ".dvcignore").open("a", encoding="utf-8") as f:
        f.write("*.tmp\nscratch/\n")
    # DVC refuses a .dvcignore inside the folder it adds; one above it applies, deepest first.
    (root / "data" / ".dvcignore").write_text("!keep.tmp\n", encoding="utf-8")
    dvc(root, "add", "-q", *ADDED)
    return root


@pytest.fixture
def repo(template: Path, tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(template, root, symlinks=True)
    return root


def md5_of(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def recorded(root: Path, rel: str) -> tuple[str, int | None, int | None, str]:
    (out,) = read_dvc_file(root / f"{rel}.dvc")
    assert out.md5 is not None
    return out.md5, out.size, out.nfiles, out.hash_name


@pytest.mark.parametrize("rel", ADDED[:4])
def test_file_md5_equals_dvc_add(template: Path, rel: str) -> None:
    md5, size, _nfiles, hash_name = recorded(template, rel)
    assert hash_name == "md5"
    assert file_md5(template / rel) == (size, md5)
    info = check_dvc_workspace(template / rel)
    assert info is not None
    assert (info.path, info.md5, info.size, info.source) == (rel, md5, size, f"{rel}.dvc")


def test_folder_md5_equals_dvc_add(template: Path) -> None:
    md5, size, nfiles, _ = recorded(template, "data/folder")
    assert md5.endswith(".dir")
    info = check_dvc_workspace(template / "data" / "folder")
    assert info is not None
    assert (info.md5, info.size, info.nfiles) == (md5, size, nfiles)
    # DVC's own listing in its cache: the ignored files are not in it, the re-included one is.
    digest = md5.removesuffix(".dir")
    listing = (cache_dir(template) / "files" / "md5" / digest[:2] / f"{digest[2:]}.dir")
    text = listing.read_text(encoding="utf-8")
    assert "sub/keep.tmp" in text and "skip.tmp" not in text and "scratch" not in text


def test_legacy_dos2unix_matches_dvc_data(template: Path, repo: Path) -> None:
    from dvc_data.hashfile.hash import file_md5 as dvc_file_md5

    for rel in FILES:
        path = template / rel
        expected = dvc_file_md5(str(path), name="md5-dos2unix")
        assert file_md5(path, HASH_LEGACY)[1] == expected, rel
    # Independently of dvc_data: CRLF folded per 1 MiB chunk that looks like text, so a CRLF
    # split across two chunks stays, binary chunks are left alone, the size is the file's.
    big = b"x" * (2**20 - 1) + b"\r" + b"\n" + b"line\n" * 1000
    assert file_md5(template / "data/big.txt", HASH_LEGACY) == (len(BIG), md5_of(big))
    assert file_md5(template / "data/crlf.txt", HASH_LEGACY) == (10, md5_of(b"a,b\n1,2\n"))
    assert file_md5(template / "data/binary.dat", HASH_LEGACY)[1] == \
        md5_of(FILES["data/binary.dat"])
    assert file_md5(template / "data/crlf.txt", HASH_LEGACY)[1] != \
        file_md5(template / "data/crlf.txt")[1]
    # A DVC 2 .dvc file (no `hash:` field) is read as md5-dos2unix.
    legacy = dvc_file_md5(str(repo / "data/crlf.txt"), name="md5-dos2unix")
    (repo / "data/crlf.txt.dvc").write_text(f"outs:\n- md5: {legacy}\n  size: 10\n"
                                            "  path: crlf.txt\n", encoding="utf-8")
    info = check_dvc_workspace(repo / "data/crlf.txt")
    assert info is not None and (info.hash_name, info.md5) == (HASH_LEGACY, legacy)


def test_paths_inside_a_tracked_folder(repo: Path) -> None:
    inner = check_dvc_workspace(repo / "data/folder/sub/b.bin")
    assert inner is not None
    assert inner.md5 == file_md5(repo / "data/folder/sub/b.bin")[1]
    assert inner.source == "data/folder.dvc (inside data/folder)"
    sub = check_dvc_workspace(repo / "data/folder/sub")
    assert sub is not None and sub.nfiles == 2  # b.bin and keep.tmp

    (repo / "data/folder/sub/b.bin").write_bytes(b"tampered")
    with pytest.raises(VerificationError) as caught:
        check_dvc_workspace(repo / "data/folder/sub/b.bin")
    assert caught.value.rule == "dvc.workspace_mismatch"
    assert caught.value.subject == "data/folder/sub/b.bin"
    # Without DVC's cache the whole folder is re-hashed: still refused.
    shutil.rmtree(cache_dir(repo))
    with pytest.raises(VerificationError, match=r"data/folder\.dvc"):
        check_dvc_workspace(repo / "data/folder/a.txt")


def test_modified_folder_names_the_files(repo: Path) -> None:
    (repo / "data/folder/a.txt").write_bytes(b"changed\n")
    (repo / "data/folder/new.csv").write_bytes(b"n\n")
    (repo / "data/folder/skip.tmp").write_bytes(b"ignored: no effect\n")
    with pytest.raises(VerificationError) as caught:
        check_dvc_workspace(repo / "data/folder")
    assert caught.value.subject == "data/folder/a.txt"
    assert "changed: a.txt" in caught.value.message
    assert "added: new.csv" in caught.value.message
    assert "dvc add data/folder" in (caught.value.hint or "")


def test_missing_and_untracked_paths(repo: Path, tmp_path: Path) -> None:
    (repo / "data/empty.txt").unlink()
    assert check_dvc_workspace(repo / "data/empty.txt") is None  # hashing reports it missing
    status = check_out(read_dvc_file(repo / "data/empty.txt.dvc")[0], repo)
    assert (status.state, status.ok) == ("missing", False)
    with pytest.raises(VerificationError, match="missing"):
        status.info()
    (repo / "loose.txt").write_text("not tracked\n", encoding="utf-8")
    assert check_dvc_workspace(repo / "loose.txt") is None
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("no DVC here\n", encoding="utf-8")
    assert check_dvc_workspace(outside) is None


def test_malformed_dvc_file_is_an_error(repo: Path) -> None:
    (repo / "data/crlf.txt.dvc").write_text("outs: [\n", encoding="utf-8")
    with pytest.raises(UsageError, match="not valid YAML"):
        check_dvc_workspace(repo / "data/crlf.txt")
    (repo / "data/crlf.txt.dvc").write_text("outs:\n- md5: abc\n  hash: sha1\n  path: crlf.txt\n",
                                            encoding="utf-8")
    with pytest.raises(UsageError, match="sha1"):
        check_dvc_workspace(repo / "data/crlf.txt")


@pytest.mark.parametrize(("path", "name"), [
    ("data/raw.csv", "dvc/data/raw.csv"),
    ("model.pkl", "dvc/model.pkl"),
    ("./data//x.parquet", "dvc/data/x.parquet-"),
    ("my data/\u00fc.csv", "dvc/my_data/_.csv-"),
    ("../outside/raw.csv", "dvc/__/outside/raw.csv-"),
    ("a/" + "b" * 300, "dvc/a/"),
])
def test_artifact_names(path: str, name: str) -> None:
    from custody.provenance.ledger.store import check_name

    got = artifact_name(path)
    check_name(got)
    assert len(got) <= 200
    if name.endswith(("-", "/")):
        assert got.startswith(name) and got != artifact_name(path + "x")
    else:
        assert got == name


def test_lock_stages_in_dependency_order(tmp_path: Path) -> None:
    (tmp_path / ".dvc").mkdir()
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n"
        "  train:\n    cmd: [step one, step two]\n    deps:\n    - path: feats\n"
        "      hash: md5\n      md5: aa.dir\n    outs:\n    - path: model.bin\n      hash: md5\n"
        "      md5: bb\n"
        "  featurize:\n    cmd: make feats\n    deps:\n    - path: raw.csv\n      md5: cc\n"
        "    params:\n      params.yaml:\n        n: 3\n    outs:\n    - path: feats\n"
        "      hash: md5\n      md5: aa.dir\n      nfiles: 2\n", encoding="utf-8")
    lock = load_lock(tmp_path / "dvc.lock")
    assert [s.name for s in lock.ordered()] == ["featurize", "train"]
    train = lock.stage("train")
    assert train.cmd == ("step one", "step two")
    featurize = lock.stage("featurize")
    assert featurize.deps[0].hash_name == HASH_LEGACY
    assert featurize.params == {"params.yaml": {"n": 3}}
    assert featurize.outs[0].nfiles == 2
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  a:\n    cmd: x\n    deps: [{path: b.txt, md5: '1'}]\n"
        "    outs: [{path: a.txt, md5: '2'}]\n  b:\n    cmd: y\n"
        "    deps: [{path: a.txt, md5: '2'}]\n    outs: [{path: b.txt, md5: '1'}]\n",
        encoding="utf-8")
    with pytest.raises(UsageError, match="cycle"):
        load_lock(tmp_path / "dvc.lock").ordered()


def test_status_lists_tracked_paths(repo: Path, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    body = cli("dvc", "status", "--json", cwd=repo / "data").expect(0).json()
    assert sorted(p["path"] for p in body["paths"]) == sorted(ADDED)
    (repo / "data/folder/sub/b.bin").write_bytes(b"changed")
    result = cli("dvc", "status", cwd=repo)
    assert result.code == 1
    assert "modified" in result.out and "data/folder" in result.out and "sub/b.bin" in result.out
    cli("dvc", "status", cwd=tmp_path).expect(2, "not inside a DVC repository")


def test_folder_hash_leaves_no_listing_in_memory(template: Path) -> None:
    """dvc-data's Tree.digest() parks each listing in fsspec's process-wide memory store; a
    long-running process hashing folders would grow without bound unless it is removed."""
    from fsspec.implementations.memory import MemoryFileSystem

    from custody.provenance.hashing.dvc.md5 import DirEntry, dir_md5

    before = dict(MemoryFileSystem.store)
    md5, _size, _nfiles, _ = recorded(template, "data/folder")
    for _ in range(3):
        assert check_dvc_workspace(template / "data" / "folder") is not None
    assert dir_md5([DirEntry("a", md5_of(b""))]) != dir_md5([])
    assert dict(MemoryFileSystem.store) == before
    assert md5.endswith(".dir")
