"""Safe loading: the bytes handed over are the bytes verified, whatever happens to the path."""

from __future__ import annotations

import hashlib
import io
import shutil
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import custody
from custody.errors import ScanRefusedError, UsageError, VerificationError

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"


def _policy(ws):  # type: ignore[no-untyped-def]
    return custody.Policy.from_key_files([ws.pub])


@pytest.fixture(autouse=True)
def _ledger_key_pinned(ws, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``ledger=URL`` alone pins no checkpoint key (verify would refuse, ledger.key_unpinned):
    pin the workspace's key as a deployment outside the workspace would."""
    from custody.provenance.workspace import load_workspace

    vkey = load_workspace(ws.home).ledger_vkey
    assert vkey is not None
    monkeypatch.setenv("CUSTODY_LEDGER_VKEY", vkey)


def test_open_verified_serves_the_verified_bytes_after_a_swap(ws, cli) -> None:  # type: ignore[no-untyped-def]
    model = Path(shutil.copy(SAMPLES / "model.pkl", ws.root / "model.pkl"))
    original = model.read_bytes()
    cli("record", model, "--name", "clf", "--kind", "model", cwd=ws.root).expect(0)
    handle = custody.open_verified(model, _policy(ws), ledger=ws.url)
    # The attacker swaps the file right after verification, before the framework reads it.
    model.write_bytes(b"\x80\x04cos\nsystem\n(S'echo pwned'\ntR.")
    with handle:
        served = handle.read()
        assert not handle.writable()
        with pytest.raises(io.UnsupportedOperation):
            handle.write(b"x")  # type: ignore[attr-defined]
    assert served == original
    assert handle.report.artifact.ref == "clf@1"
    # Verifying the swapped path now is refused: the pickle scan and the digest both say no.
    with pytest.raises((VerificationError, ScanRefusedError)):
        custody.open_verified(model, _policy(ws), ledger=ws.url)


def test_a_file_swapped_before_verification_is_refused(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    f = make_file(ws.root / "weights.bin", b"good weights")
    cli("record", f, "--name", "w", "--kind", "model", cwd=ws.root).expect(0)
    f.write_bytes(b"evil weights")
    with pytest.raises(VerificationError) as info:
        custody.open_verified(f, _policy(ws), ledger=ws.url, name="w")
    assert info.value.rule == "artifact.modified"


def test_concurrent_rewrites_during_the_copy_never_leak(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    """A writer flips bytes while the file is being copied: the result is either a refusal or
    exactly the recorded bytes, never a mixture."""
    size = 24 * 1024 * 1024
    good = bytes(range(256)) * (size // 256)
    f = make_file(ws.root / "big.bin", good)
    cli("record", f, "--name", "big", "--kind", "model", cwd=ws.root).expect(0)
    recorded = hashlib.sha256(good).hexdigest()
    stop = threading.Event()

    def scribble() -> None:
        with f.open("r+b") as out:
            i = 0
            while not stop.is_set():
                out.seek((i * 7919 * 4096) % size)
                out.write(b"\xff" * 4096)
                out.flush()
                i += 1

    outcomes = []
    for _ in range(3):
        f.write_bytes(good)
        writer = threading.Thread(target=scribble)
        writer.start()
        try:
            with custody.open_verified(f, _policy(ws), ledger=ws.url, name="big") as handle:
                served = handle.read()
            outcomes.append("served")
            assert hashlib.sha256(served).hexdigest() == recorded
        except VerificationError:
            outcomes.append("refused")
        finally:
            stop.set()
            writer.join()
            stop.clear()
    assert outcomes  # every round either refused or served exactly the recorded bytes


def test_read_parquet_file_and_directory(ws, cli) -> None:  # type: ignore[no-untyped-def]
    data = Path(shutil.copy(SAMPLES / "dataset-v1.parquet", ws.root / "train.parquet"))
    cli("record", data, "--name", "train", "--kind", "dataset", cwd=ws.root).expect(0)
    table = custody.read_parquet(data, _policy(ws), ledger=ws.url)
    assert table.num_rows == 3000 and "label" in table.column_names
    folder = ws.root / "shards"
    folder.mkdir()
    for i in range(3):
        pq.write_table(pa.table({"x": list(range(i * 10, i * 10 + 10))}), folder / f"p{i}.parquet")
    cli("record", folder, "--name", "shards", "--kind", "dataset", cwd=ws.root).expect(0)
    assert custody.read_parquet(folder, _policy(ws), ledger=ws.url).num_rows == 30
    pq.write_table(pa.table({"x": [999]}), folder / "p9.parquet")  # an injected shard
    with pytest.raises(VerificationError) as info:
        custody.read_parquet(folder, _policy(ws), ledger=ws.url, name="shards")
    assert "added: p9.parquet" in info.value.message


def test_policy_may_be_a_file_and_is_required(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    f = make_file(ws.root / "d.bin", b"d")
    cli("record", f, "--name", "d", "--kind", "dataset", cwd=ws.root).expect(0)
    policy = ws.root / "policy.toml"
    policy.write_text('[signers.local]\nkeys = [".custody/keys/signing.pub"]\n'
                      '[[trust]]\nsigners = ["local"]\n')
    with custody.open_verified(f, policy, ledger=ws.url) as handle:
        assert handle.read() == b"d"
    with pytest.raises(TypeError):
        custody.open_verified(f)  # type: ignore[call-arg]
    with pytest.raises(UsageError):
        custody.open_verified(ws.root, policy, ledger=ws.url)


def test_load_torch_weights_only(ws, cli) -> None:  # type: ignore[no-untyped-def]
    torch = pytest.importorskip("torch")
    path = ws.root / "state.pt"
    torch.save({"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(3)}, path)
    cli("record", path, "--name", "net", "--kind", "model", cwd=ws.root).expect(0)
    state = custody.load_torch(path, _policy(ws), ledger=ws.url)
    assert torch.equal(state["w"], torch.arange(6.0).reshape(2, 3))
    with pytest.raises(UsageError):
        custody.load_torch(path, _policy(ws), ledger=ws.url, weights_only=False)
