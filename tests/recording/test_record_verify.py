"""End to end through the CLI: record → verify round trips, lineage, and every refusal."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"


def _model_dir(root: Path, make_file) -> Path:  # type: ignore[no-untyped-def]
    d = root / "model-dir"
    make_file(d / "config.json", '{"hidden": 8}')
    make_file(d / "weights" / "part-0.bin", b"\x00\x01" * 5000)
    make_file(d / "weights" / "part-1.bin", b"\x02\x03" * 5000)
    make_file(d / "README.md", "a model\n")
    return d


def test_file_round_trip(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    data = make_file(ws.root / "data.csv", "a,b\n1,2\n")
    rec = cli("record", data, "--name", "tiny", "--kind", "dataset", cwd=ws.root).expect(0)
    ref, digest = rec.out.split()
    assert ref == "tiny@1"
    assert digest.startswith("sha256:") and len(digest) == len("sha256:") + 64
    res = cli("verify", data, "--json", cwd=ws.root).expect(0)
    report = res.json()
    assert report["ok"] is True
    assert report["artifact"]["ref"] == "tiny@1"
    assert report["digest"] == digest
    assert report["artifact"]["signer"].startswith("key:")


def test_versions_count_up_per_name(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    data = make_file(ws.root / "d.txt", "one")
    assert cli("record", data, "--name", "d", "--kind", "dataset", cwd=ws.root).out.split()[0] \
        == "d@1"
    make_file(data, "two")
    assert cli("record", data, "--name", "d", "--kind", "dataset", cwd=ws.root).out.split()[0] \
        == "d@2"
    other = make_file(ws.root / "e.txt", "x")
    assert cli("record", other, "--name", "e", "--kind", "dataset", cwd=ws.root).out.split()[0] \
        == "e@1"
    listing = cli("list", "d", "--json", cwd=ws.root).expect(0).json()
    assert [row["ref"] for row in listing] == ["d@1", "d@2"]
    # The old bytes no longer verify as d@2; the new bytes verify as d@2.
    assert cli("verify", data, "--json", cwd=ws.root).expect(0).json()["artifact"]["ref"] == "d@2"


def test_directory_round_trip_and_manifest(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    model = _model_dir(ws.root, make_file)
    cli("record", model, "--name", "m", "--kind", "model", cwd=ws.root).expect(0)
    manifest = cli("hash", model, "--json", cwd=ws.root).expect(0).json()
    names = [r["name"] for r in manifest["resources"]]
    assert names == sorted(names) == ["README.md", "config.json", "weights/part-0.bin",
                                      "weights/part-1.bin"]
    assert manifest["digest"]["algorithm"] == "sha256-manifest-v1"
    out = cli("verify", model, "--name", "m", "--json", cwd=ws.root).expect(0).json()
    assert out["digest"] == f"sha256-manifest-v1:{manifest['digest']['value']}"


def test_lineage_dataset_to_model(ws, cli) -> None:  # type: ignore[no-untyped-def]
    data = shutil.copy(SAMPLES / "dataset-v1.parquet", ws.root)
    model = shutil.copy(SAMPLES / "model.pkl", ws.root)
    cli("record", data, "--name", "ds", "--kind", "dataset", cwd=ws.root).expect(0)
    cli("record", model, "--name", "clf", "--kind", "model", "--input", "ds@1",
        cwd=ws.root).expect(0)
    report = cli("verify", model, "--json", cwd=ws.root).expect(0).json()
    assert [n["ref"] for n in report["chain"]] == ["ds@1"]
    assert report["artifact"]["inputs"] == ["ds@1"]
    up = cli("lineage", "clf", "--format", "json", cwd=ws.root).expect(0).json()
    assert up["edges"] == [{"input": "ds@1", "output": "clf@1", "activity": "trained_on"}]
    down = cli("lineage", "ds@1", "--downstream", "--json", cwd=ws.root).expect(0).json()
    assert {n["ref"] for n in down["nodes"]} == {"ds@1", "clf@1"}
    dot = cli("lineage", "clf@1", "--format", "dot", cwd=ws.root).expect(0).out
    assert '"ds@1" -> "clf@1"' in dot
    digest = report["chain"][0]["digest"]
    by_digest = cli("lineage", digest, "--downstream", "--json", cwd=ws.root).expect(0).json()
    assert by_digest["root"] == "ds@1"


def test_depth_three_chain_is_walked(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    refs = []
    for i in range(4):
        f = make_file(ws.root / f"stage{i}.txt", f"stage {i}")
        args = ["record", f, "--name", f"s{i}", "--kind", "dataset" if i < 3 else "model"]
        if refs:
            args += ["--input", refs[-1], "--activity", "derived_from"]
        refs.append(cli(*args, cwd=ws.root).expect(0).out.split()[0])
    report = cli("verify", ws.root / "stage3.txt", "--json", cwd=ws.root).expect(0).json()
    assert sorted((n["ref"], n["depth"]) for n in report["chain"]) == [
        ("s0@1", 3), ("s1@1", 2), ("s2@1", 1)]


# --- tampering: every case refused with exit 1 and a reason that names it -----------------------


def test_flipped_byte_refused(ws, cli) -> None:  # type: ignore[no-untyped-def]
    model = Path(shutil.copy(SAMPLES / "model.pkl", ws.root))
    cli("record", model, "--name", "clf", "--kind", "model", cwd=ws.root).expect(0)
    raw = bytearray(model.read_bytes())
    raw[100] ^= 0x01
    model.write_bytes(bytes(raw))
    cli("verify", model, "--name", "clf", cwd=ws.root).expect(
        1, "REFUSED", "artifact.modified", "content changed", "clf@1")
    cli("verify", model, cwd=ws.root).expect(1, "record.not_found", "model.pkl")


def test_directory_file_added_refused(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    model = _model_dir(ws.root, make_file)
    cli("record", model, "--name", "m", "--kind", "model", cwd=ws.root).expect(0)
    make_file(model / "weights" / "extra.bin", b"surprise")
    cli("verify", model, "--name", "m", cwd=ws.root).expect(1, "added: weights/extra.bin")
    cli("verify", model, cwd=ws.root).expect(1, "artifact.modified", "added: weights/extra.bin")


def test_directory_file_removed_refused(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    model = _model_dir(ws.root, make_file)
    cli("record", model, "--name", "m", "--kind", "model", cwd=ws.root).expect(0)
    (model / "README.md").unlink()
    cli("verify", model, "--name", "m", cwd=ws.root).expect(1, "removed: README.md")


def test_directory_file_renamed_refused(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    model = _model_dir(ws.root, make_file)
    cli("record", model, "--name", "m", "--kind", "model", cwd=ws.root).expect(0)
    (model / "weights" / "part-0.bin").rename(model / "weights" / "part-9.bin")
    cli("verify", model, "--name", "m", cwd=ws.root).expect(
        1, "renamed: weights/part-0.bin → weights/part-9.bin")


def test_directory_file_changed_refused(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    model = _model_dir(ws.root, make_file)
    cli("record", model, "--name", "m", "--kind", "model", cwd=ws.root).expect(0)
    make_file(model / "config.json", '{"hidden": 9}')
    cli("verify", model, cwd=ws.root).expect(1, "changed: config.json")


def test_swapped_sidecar_bundle_refused(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    a = make_file(ws.root / "a.bin", b"artifact a")
    b = make_file(ws.root / "b.bin", b"artifact b")
    cli("record", a, "--name", "a", "--kind", "model", "--bundle-out", ws.root / "a.sigstore.json",
        cwd=ws.root).expect(0)
    cli("record", b, "--name", "b", "--kind", "model", "--bundle-out", ws.root / "b.sigstore.json",
        cwd=ws.root).expect(0)
    cli("verify", a, "--bundle", ws.root / "a.sigstore.json", "--key", ws.pub,
        cwd=ws.root).expect(0)
    cli("verify", a, "--bundle", ws.root / "b.sigstore.json", "--key", ws.pub,
        cwd=ws.root).expect(1, "statement.subject_mismatch", "a.bin")
    exported = cli("bundle", "a@1", cwd=ws.root).expect(0).out
    assert json.loads(exported) == json.loads((ws.root / "a.sigstore.json").read_text())


def test_bundle_swapped_inside_ledger_refused(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    a = make_file(ws.root / "a.bin", b"artifact a")
    b = make_file(ws.root / "b.bin", b"artifact b")
    cli("record", a, "--name", "a", "--kind", "model", cwd=ws.root).expect(0)
    cli("record", b, "--name", "b", "--kind", "model", cwd=ws.root).expect(0)
    ws.sql("UPDATE signed_statements SET bundle = (SELECT bundle FROM signed_statements "
           "WHERE version_id = 2), statement = (SELECT statement FROM signed_statements "
           "WHERE version_id = 2) WHERE version_id = 1")
    cli("verify", a, cwd=ws.root).expect(1, "ledger.inconsistent", "a@1")


def test_entry_rewritten_with_its_leaf_hash_refused(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    """An administrator rewrites a log entry consistently; the signed checkpoint exposes it."""
    a = make_file(ws.root / "a.bin", b"artifact a")
    b = make_file(ws.root / "b.bin", b"artifact b")
    cli("record", a, "--name", "a", "--kind", "model", cwd=ws.root).expect(0)
    cli("record", b, "--name", "b", "--kind", "model", cwd=ws.root).expect(0)
    # Make a@1's rows say exactly what b@1's say (entry payload, leaf hash, index rows).
    ws.sql("UPDATE ledger_entries SET payload = (SELECT payload FROM ledger_entries WHERE idx = 1)"
           ", leaf_hash = (SELECT leaf_hash FROM ledger_entries WHERE idx = 1) WHERE idx = 0")
    ws.sql("UPDATE signed_statements SET bundle = (SELECT bundle FROM signed_statements "
           "WHERE version_id = 2), statement = (SELECT statement FROM signed_statements "
           "WHERE version_id = 2) WHERE version_id = 1")
    cli("verify", a, cwd=ws.root).expect(1, "merkle.inclusion_invalid", "a@1")
    cli("audit", "verify", cwd=ws.root).expect(1, "audit.root_mismatch", "entry 0")


def test_edited_statement_row_refused(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    a = make_file(ws.root / "a.bin", b"artifact a")
    cli("record", a, "--name", "a", "--kind", "model", cwd=ws.root).expect(0)
    ws.sql("UPDATE signed_statements SET statement = replace(statement, '\"clean\"', "
           "'\"CLEAN\"')")
    cli("verify", a, cwd=ws.root).expect(1, "ledger.inconsistent")


def test_deleted_lineage_edge_refused(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    d = make_file(ws.root / "d.bin", b"data")
    m = make_file(ws.root / "m.bin", b"model")
    cli("record", d, "--name", "d", "--kind", "dataset", cwd=ws.root).expect(0)
    cli("record", m, "--name", "m", "--kind", "model", "--input", "d", cwd=ws.root).expect(0)
    ws.sql("DELETE FROM lineage_edges")
    cli("verify", m, cwd=ws.root).expect(1, "ledger.inconsistent", "signed: d@1")


def test_untrusted_key_refused(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    cli("keygen", "--out", ws.root / "mallory", cwd=ws.root).expect(0)
    a = make_file(ws.root / "a.bin", b"payload")
    cli("record", a, "--name", "a", "--kind", "model", "--key", ws.root / "mallory.key",
        cwd=ws.root).expect(0)
    cli("verify", a, cwd=ws.root).expect(1, "signature.untrusted_key", "not trusted")
    # Trusting mallory's key explicitly makes it verify: the refusal was about trust.
    cli("verify", a, "--key", ws.root / "mallory.pub", cwd=ws.root).expect(0)


def test_forged_signature_refused(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    a = make_file(ws.root / "a.bin", b"payload")
    cli("record", a, "--name", "a", "--kind", "model", "--bundle-out", ws.root / "a.json",
        cwd=ws.root).expect(0)
    bundle = json.loads((ws.root / "a.json").read_text())
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = (
        "MEUCIQDm0lT+Ok1tD7oBzt7wNrn4mNXY0R8d9qC8Alq7M1cNjgIgK7j9Sx1w2oZy4O5gS1c7rsmZ0eyYzQ1wL"
        "Kc6X5Yk8Zo="
    )
    (ws.root / "forged.json").write_text(json.dumps(bundle))
    cli("verify", a, "--bundle", ws.root / "forged.json", "--key", ws.pub, cwd=ws.root).expect(
        1, "signature.invalid")


def test_upstream_untrusted_signer_refused(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    cli("keygen", "--out", ws.root / "other", cwd=ws.root).expect(0)
    d = make_file(ws.root / "d.bin", b"data")
    m = make_file(ws.root / "m.bin", b"model")
    cli("record", d, "--name", "d", "--kind", "dataset", "--key", ws.root / "other.key",
        cwd=ws.root).expect(0)
    cli("record", m, "--name", "m", "--kind", "model", "--input", "d@1", cwd=ws.root).expect(0)
    cli("verify", m, cwd=ws.root).expect(1, "chain.signature.untrusted_key", "d@1")


def test_upstream_flagged_refused(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    bad = Path(shutil.copy(SAMPLES / "malicious.pkl", ws.root / "bad-data.pkl"))
    cli("record", bad, "--name", "bad", "--kind", "dataset", "--allow-flagged",
        cwd=ws.root).expect(0)
    m = make_file(ws.root / "m.bin", b"model")
    cli("record", m, "--name", "m", "--kind", "model", "--input", "bad", cwd=ws.root).expect(
        1, "record.input_revoked", "bad@1")  # see tests/test_record_inputs.py
    cli("record", m, "--name", "m", "--kind", "model", "--input", "bad", "--allow-flagged",
        cwd=ws.root).expect(0)
    cli("verify", m, cwd=ws.root).expect(1, "chain.flagged", "bad@1")
    cli("verify", bad, cwd=ws.root).expect(1, "scan.flagged")


def test_malicious_pickle_not_recorded(ws, cli) -> None:  # type: ignore[no-untyped-def]
    bad = shutil.copy(SAMPLES / "malicious.pkl", ws.root)
    before = ws.entry_count()
    cli("record", bad, "--name", "evil", "--kind", "model", cwd=ws.root).expect(
        1, "pickle.global.dangerous", "os.system")
    assert ws.entry_count() == before
    scan = cli("scan", bad, "--json", cwd=ws.root).expect(1).json()
    assert scan["verdict"] == "flagged"
    assert scan["max_severity"] == "critical"
    assert cli("scan", SAMPLES / "model.pkl", "--json", cwd=ws.root).expect(0).json()[
        "verdict"] == "clean"


def test_lineage_as_of_a_checkpoint(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    d = make_file(ws.root / "d.bin", b"data")
    m = make_file(ws.root / "m.bin", b"model one")
    cli("record", d, "--name", "d", "--kind", "dataset", cwd=ws.root).expect(0)
    cli("record", m, "--name", "m", "--kind", "model", "--input", "d", cwd=ws.root).expect(0)
    size = int(cli("audit", "checkpoint", cwd=ws.root).expect(0).out.splitlines()[1])
    make_file(m, b"model two")
    cli("record", m, "--name", "m", "--kind", "model", "--input", "d", cwd=ws.root).expect(0)
    now = cli("lineage", "d", "--downstream", "--json", cwd=ws.root).expect(0).json()
    assert {n["ref"] for n in now["nodes"]} == {"d@1", "m@1", "m@2"}
    then = cli("lineage", "d", "--downstream", "--as-of", str(size), "--json",
               cwd=ws.root).expect(0).json()
    assert {n["ref"] for n in then["nodes"]} == {"d@1", "m@1"}
    assert then["as_of"] == size
    cli("lineage", "m@2", "--as-of", str(size), cwd=ws.root).expect(2, "no version 2")
    cli("lineage", "m", "--as-of", str(size), "--json", cwd=ws.root).expect(0)


def test_lineage_export_formats(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    d = make_file(ws.root / "d.bin", b"data")
    m = make_file(ws.root / "m.bin", b"model")
    cli("record", d, "--name", "d", "--kind", "dataset", cwd=ws.root).expect(0)
    cli("record", m, "--name", "m", "--kind", "model", "--input", "d", cwd=ws.root).expect(0)
    bom = cli("lineage", "m", "--format", "cyclonedx", cwd=ws.root).expect(0).json()
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.6"
    events = cli("lineage", "m", "--format", "openlineage", cwd=ws.root).expect(0).json()
    assert events and all("eventType" in e for e in events)
    prov = cli("lineage", "m", "--format", "prov", cwd=ws.root).expect(0).json()
    assert "@context" in prov
