"""`custody scan`: exit codes, JSON, SARIF 2.1.0 and policy allowances."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"


def _pickle_with_global(module: str, name: str) -> bytes:
    return (b"\x80\x04\x95" + (0).to_bytes(8, "little") + b"\x8c" + bytes([len(module)])
            + module.encode() + b"\x94\x8c" + bytes([len(name)]) + name.encode()
            + b"\x94\x93\x94)\x81\x94.")


def test_scan_exit_codes_and_json(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    clean = cli("scan", SAMPLES / "model.pkl", "--json", cwd=tmp_path).expect(0).json()
    assert clean["verdict"] == "clean" and clean["findings"] == []
    bad = cli("scan", SAMPLES / "malicious.pkl", "--json", cwd=tmp_path).expect(1).json()
    assert bad["verdict"] == "flagged" and bad["max_severity"] == "critical"
    assert {"rule_id", "severity", "path", "location", "message"} <= set(bad["findings"][0])
    cli("scan", tmp_path / "missing.pkl", cwd=tmp_path).expect(2, "missing.pkl")


def test_a_safetensors_name_does_not_make_a_pickle_safe(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    disguised = tmp_path / "model.safetensors"
    shutil.copy(SAMPLES / "malicious.pkl", disguised)
    out = cli("scan", disguised, "--json", cwd=tmp_path).expect(1).json()
    assert out["max_severity"] == "critical"


def test_sarif_output(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(SAMPLES / "malicious.pkl", folder / "evil.pkl")
    shutil.copy(SAMPLES / "model.pkl", folder / "good.pkl")
    sarif_path = tmp_path / "scan.sarif"
    cli("scan", "models", "--sarif", sarif_path, cwd=tmp_path).expect(1)
    sarif = json.loads(sarif_path.read_text())
    assert sarif["version"] == "2.1.0"
    run = sarif["runs"][0]
    assert run["tool"]["driver"]["name"] == "custody"
    results = [r for r in run["results"] if r["level"] == "error"]
    assert results, run["results"]
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in results}
    assert uris == {"models/evil.pkl"}
    rule_ids = {r["id"] for r in run["tool"]["driver"]["rules"]}
    assert {r["ruleId"] for r in run["results"]} <= rule_ids


def test_policy_allowlist_extends_the_scanner(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "m.pkl"
    f.write_bytes(_pickle_with_global("mylib.models", "Estimator"))
    cli("scan", f, cwd=tmp_path).expect(1, "mylib.models.Estimator")
    key = tmp_path / "k"
    cli("keygen", "--out", key, cwd=tmp_path).expect(0)
    policy = tmp_path / "policy.toml"
    policy.write_text('[signers.a]\nkeys = ["k.pub"]\n[[trust]]\nsigners = ["a"]\n'
                      '[pickle]\nallow_globals = ["mylib.models.Estimator"]\n')
    cli("scan", f, "--policy", policy, cwd=tmp_path).expect(0)


def test_duplicate_member_names_are_reported_in_large_archives(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Loaders pick one of two same-named members; the scanner says so whatever the count."""
    import warnings
    import zipfile

    archive = tmp_path / "many.zip"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        with zipfile.ZipFile(archive, "w") as z:
            for i in range(6000):
                z.writestr(f"archive/data/{i}", b"\x00" * 4)
            z.writestr("archive/data/17", b"\x01" * 4)
    out = cli("scan", archive, "--json", cwd=tmp_path).json()
    assert any("duplicate member names" in f["message"] for f in out["findings"]), out
