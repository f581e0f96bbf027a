"""Lineage marks come from verify's chain evaluation: a node is ✔ exactly when `custody verify`
accepts it (differential test over random DAGs with random revocations and flagged records)."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"


def test_downstream_of_a_revoked_input_is_not_ticked(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    cli("record", make_file(ws.root / "d.bin", b"data"), "--name", "d", "--kind", "dataset",
        cwd=ws.root).expect(0)
    model = make_file(ws.root / "m.bin", b"model")
    cli("record", model, "--name", "m", "--kind", "model", "--input", "d", cwd=ws.root).expect(0)
    cli("revoke", "d@1", "--reason", "consent withdrawn", cwd=ws.root).expect(0)
    cli("verify", model, cwd=ws.root).expect(1, "chain.revoked", "d@1")
    graph = cli("lineage", "d", "--downstream", "--json", cwd=ws.root).expect(0).json()
    node = {n["ref"]: n for n in graph["nodes"]}["m@1"]
    assert node["verified"] is False
    assert node["refusal"]["rule"] == "chain.revoked"
    assert "consent withdrawn" in node["refusal"]["message"]
    table = cli("lineage", "d", "--downstream", cwd=ws.root).expect(0, "✘ chain.revoked")
    line = next(x for x in table.out.splitlines() if "m@1" in x)
    assert "✔" not in line


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_lineage_ticks_equal_what_verify_accepts(ws, cli, make_file, seed: int) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    files: dict[str, Path] = {}

    def record(name: str, kind: str, inputs: list[str], *extra: str,
               path: Path | None = None) -> None:
        path = path or make_file(ws.root / f"{name}.bin", f"{seed} {name}".encode())
        args = [a for ref in inputs for a in ("--input", ref)]
        cli("record", path, "--name", name, "--kind", kind, *args, *extra,
            cwd=ws.root).expect(0, f"{name}@1")
        files[f"{name}@1"] = path

    record("n0", "dataset", [])
    for i in range(1, 7):
        inputs = rng.sample(sorted(files), k=min(len(files), rng.choice([1, 2])))
        if i == 2 and rng.random() < 0.7:  # a scan-flagged dataset made from earlier ones
            bad = Path(shutil.copy(SAMPLES / "malicious.pkl", ws.root / "n2.pkl"))
            record("n2", "dataset", inputs, "--allow-flagged", path=bad)
            continue
        record(f"n{i}", rng.choice(["dataset", "model"]), inputs, "--allow-flagged")
    for ref in rng.sample(sorted(files), k=rng.choice([1, 2])):
        cli("revoke", ref, "--reason", f"seed {seed}", cwd=ws.root).expect(0)
    for i in range(7, 9):  # recorded after the revocations: marked flagged when they must be
        record(f"n{i}", "model", rng.sample(sorted(files), k=2), "--allow-flagged")

    accepted = set()
    for ref, path in files.items():
        run = cli("verify", path, cwd=ws.root)
        assert run.code in (0, 1), (ref, run)
        if run.code == 0:
            accepted.add(ref)
    graph = cli("lineage", "n0", "--downstream", "--depth", "50", "--json",
                cwd=ws.root).expect(0).json()
    assert {n["ref"] for n in graph["nodes"]} == set(files)
    assert {n["ref"] for n in graph["nodes"] if n["verified"]} == accepted
    table = cli("lineage", "n0", "--downstream", "--depth", "50", cwd=ws.root).expect(0).out
    for line in table.splitlines():
        ref = next((r for r in files if f"{r} " in line), None)
        if ref is not None:
            assert ("✔" in line) == (ref in accepted), (ref, line)
