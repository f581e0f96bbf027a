"""record checks its inputs on the signed log before anything is written: a revoked or flagged
input (or anything upstream of one) refuses with record.input_revoked; --allow-flagged records
it marked flagged in its signed scan summary, and verify and lineage then refuse it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"


def _rec(ws, cli, make_file, name: str, kind: str, content: bytes, *extra: str):  # type: ignore[no-untyped-def]
    f = make_file(ws.root / f"{name}.bin", content)
    cli("record", f, "--name", name, "--kind", kind, *extra, cwd=ws.root).expect(0)
    return f


@pytest.mark.parametrize("depth", [1, 3])
def test_record_from_revoked_input_refused_then_hints_followed(ws, cli, make_file, depth) -> None:  # type: ignore[no-untyped-def]
    _rec(ws, cli, make_file, "s0", "dataset", b"stage 0")
    for i in range(1, depth):
        _rec(ws, cli, make_file, f"s{i}", "dataset", f"stage {i}".encode(), "--input",
             f"s{i - 1}")
    last = f"s{depth - 1}@1"
    cli("revoke", "s0@1", "--reason", "licence withdrawn", cwd=ws.root).expect(0)
    before = ws.entry_count()
    model = make_file(ws.root / "model.bin", b"weights")
    refused = cli("record", model, "--name", "m", "--kind", "model", "--input", last,
                  cwd=ws.root).expect(1, "record.input_revoked", "s0@1", "licence withdrawn",
                                      "--allow-flagged")
    if depth > 1:
        refused.expect(1, f"depth {depth}")
    assert ws.entry_count() == before  # nothing appended
    cli("list", cwd=ws.root).expect(0)
    assert "m@1" not in cli("list", cwd=ws.root).out
    # Hint 1: record from a version that is not revoked.
    _rec(ws, cli, make_file, "s0", "dataset", b"stage 0, relicensed")
    cli("record", model, "--name", "m", "--kind", "model", "--input", "s0@2",
        cwd=ws.root).expect(0, "m@1")
    cli("verify", model, cwd=ws.root).expect(0)
    # Hint 2: --allow-flagged records it, marked flagged; verify and lineage refuse it.
    flagged = make_file(ws.root / "model2.bin", b"weights 2")
    cli("record", flagged, "--name", "m2", "--kind", "model", "--input", last,
        "--allow-flagged", cwd=ws.root).expect(0, "m2@1")
    cli("verify", flagged, cwd=ws.root).expect(1, "chain.revoked", "s0@1", "licence withdrawn",
                                               f"depth {depth}")
    statement = ws.sql("SELECT s.statement FROM signed_statements s JOIN artifact_versions v "
                       "ON v.id = s.version_id JOIN artifacts a ON a.id = v.artifact_id "
                       "WHERE a.name = 'm2'")[0][0]
    scan = json.loads(statement)["predicate"]["scan"]
    assert scan["verdict"] == "flagged"
    assert scan["upstream_flag"]["ref"] == "s0@1" and scan["upstream_flag"]["revoked"]
    # A version made from the flagged one refuses too, naming the root cause.
    cli("record", make_file(ws.root / "m3.bin", b"m3"), "--name", "m3", "--kind", "model",
        "--input", "m2", cwd=ws.root).expect(1, "record.input_revoked", "s0@1",
                                             f"depth {depth + 1}")


def test_record_from_flagged_input_refused(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    bad = ws.root / "bad.bin"
    shutil.copy(SAMPLES / "malicious.pkl", bad)
    cli("record", bad, "--name", "bad", "--kind", "dataset", "--allow-flagged",
        cwd=ws.root).expect(0)
    before = ws.entry_count()
    model = make_file(ws.root / "model.bin", b"weights")
    cli("record", model, "--name", "m", "--kind", "model", "--input", "bad@1",
        cwd=ws.root).expect(1, "record.input_revoked", "bad@1", "flagged", "--allow-flagged")
    assert ws.entry_count() == before
    cli("record", model, "--name", "m", "--kind", "model", "--input", "bad@1",
        "--allow-flagged", cwd=ws.root).expect(0, "m@1")
    cli("verify", model, cwd=ws.root).expect(1, "chain.flagged", "bad@1", "depth 1")


def test_flag_comes_from_the_signed_log_not_the_index(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    bad = ws.root / "bad.bin"
    shutil.copy(SAMPLES / "malicious.pkl", bad)
    cli("record", bad, "--name", "bad", "--kind", "dataset", "--allow-flagged",
        cwd=ws.root).expect(0)
    ws.sql("UPDATE artifact_versions SET scan_verdict = 'clean'")  # an edited index column
    model = make_file(ws.root / "model.bin", b"weights")
    cli("record", model, "--name", "m", "--kind", "model", "--input", "bad@1",
        cwd=ws.root).expect(1, "record.input_revoked", "bad@1")


def _pickle_with_global(module: str, name: str) -> bytes:
    return (b"\x80\x04\x95" + (0).to_bytes(8, "little") + b"\x8c" + bytes([len(module)])
            + module.encode() + b"\x94\x8c" + bytes([len(name)]) + name.encode()
            + b"\x94\x93\x94)\x81\x94.")


def test_record_honours_workspace_pickle_allow_globals(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    f = make_file(ws.root / "m.pkl", _pickle_with_global("mylib.models", "Estimator"))
    before = ws.entry_count()
    cli("record", f, "--name", "m", "--kind", "model", cwd=ws.root).expect(
        1, "mylib.models.Estimator")
    assert ws.entry_count() == before
    policy = ws.home / "policy.toml"
    policy.write_text('[signers.local]\nkeys = ["keys/signing.pub"]\n[[trust]]\n'
                      'signers = ["local"]\n[pickle]\nallow_globals = ["mylib.models.Estimator"]\n')
    cli("scan", f, "--policy", policy, cwd=ws.root).expect(0)
    recorded = cli("record", f, "--name", "m", "--kind", "model", "--json",
                   cwd=ws.root).expect(0).json()
    assert recorded["ref"] == "m@1" and recorded["scan"]["verdict"] == "clean"
    cli("verify", f, cwd=ws.root).expect(0, "m@1")
    policy.write_text('[signers.local]\nkeys = ["keys/signing.pub"]\n[[trust]]\n'
                      'signers = ["local"]\n[pickle]\nallow_globals = ["mylib.other.Thing"]\n')
    cli("record", f, "--name", "m", "--kind", "model", cwd=ws.root).expect(
        1, "mylib.models.Estimator")


def test_sha256_ref_resolves_a_recorded_directory(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    folder = ws.root / "shards"
    make_file(folder / "a.csv", "x,y\n1,2\n")
    make_file(folder / "sub" / "b.csv", "x,y\n3,4\n")
    recorded = cli("record", folder, "--name", "shards", "--kind", "dataset", "--json",
                   cwd=ws.root).expect(0).json()
    algorithm, hexdigest = recorded["digest"].split(":")
    assert algorithm == "sha256-manifest-v1"
    for ref in (f"sha256:{hexdigest}", recorded["digest"]):
        graph = cli("lineage", ref, "--json", cwd=ws.root).expect(0).json()
        assert graph["root"] == "shards@1"
    cli("record", make_file(ws.root / "m.bin", b"m"), "--name", "m", "--kind", "model",
        "--input", f"sha256:{hexdigest}", cwd=ws.root).expect(0, "m@1")
    up = cli("lineage", "m", "--json", cwd=ws.root).expect(0).json()
    assert {n["ref"] for n in up["nodes"]} == {"m@1", "shards@1"}
    cli("lineage", f"sha256:{'0' * 64}", cwd=ws.root).expect(2, "no recorded artifact",
                                                            "custody list")
