"""The documented library calls work as written, and raise only Custody errors.

``custody.verify(path, policy)`` and ``custody.record(path, ...)`` find the ledger like the CLI
(nearest ``.custody/``, ``$CUSTODY_LEDGER``, ``ledger=``) and check inclusion with the
workspace's pinned ledger key; ``read_parquet`` and ``load_torch`` turn framework errors on
verified bytes into :class:`custody.LoadError`.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

import custody
from custody.errors import ArtifactError, CustodyError, UsageError

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"


@pytest.fixture
def project(tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch) -> Path:  # type: ignore[no-untyped-def]
    root = tmp_path / "project"
    root.mkdir()
    cli("init", cwd=root).expect(0)
    shutil.copyfile(SAMPLES / "dataset-v1.parquet", root / "train.parquet")
    shutil.copyfile(SAMPLES / "model.pkl", root / "model.pkl")
    (root / "policy.toml").write_text(
        'version = 1\n[signers.team]\nkeys = [".custody/keys/signing.pub"]\n'
        '[[trust]]\nsigners = ["team"]\n'
        '[pickle]\nallow_globals = ["torch.nn.modules.linear.Linear"]\n', encoding="utf-8")
    monkeypatch.chdir(root)
    return root


def _policy(root: Path) -> custody.Policy:
    return custody.Policy.from_key_files([root / ".custody" / "keys" / "signing.pub"])


def test_record_and_verify_as_documented(project: Path) -> None:
    data = custody.record("train.parquet", name="train-set", kind="dataset")
    model = custody.record("model.pkl", name="clf", kind="model", inputs=["train-set"])
    assert (data.version.ref, model.version.ref) == ("train-set@1", "clf@1")
    for policy in (_policy(project), "policy.toml", project / "policy.toml"):
        report = custody.verify("model.pkl", policy)
        assert report.artifact.ref == "clf@1"
        assert [n.ref for n in report.chain] == ["train-set@1"]
    (project / "model.pkl").write_bytes(b"tampered")
    with pytest.raises(custody.VerificationError) as refused:
        custody.verify("model.pkl", "policy.toml")
    assert refused.value.rule == "record.not_found"


def test_ledger_found_from_argument_environment_and_parents(
        project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    custody.record("model.pkl", name="clf", kind="model")
    below = project / "deep" / "er"
    below.mkdir(parents=True)
    monkeypatch.chdir(below)  # nearest .custody/ upward
    assert custody.verify(project / "model.pkl", project / "policy.toml").artifact.ref == "clf@1"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(UsageError, match="no ledger"):
        custody.verify(project / "model.pkl", project / "policy.toml")
    url = f"sqlite:///{project / '.custody' / 'ledger.db'}"
    for ledger in (url, str(project), project):
        report = custody.verify(project / "model.pkl", project / "policy.toml", ledger=ledger)
        assert report.artifact.ref == "clf@1"
    monkeypatch.setenv("CUSTODY_LEDGER", url)
    assert custody.verify(project / "model.pkl", project / "policy.toml").artifact.ref == "clf@1"
    second = custody.record(project / "model.pkl", name="clf2", kind="model",
                            ledger=str(project), signer=project / ".custody/keys/signing.key")
    assert second.version.ref == "clf2@1"


def test_verify_checks_inclusion_with_the_workspaces_pinned_ledger_key(
        project: Path, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """A ledger whose checkpoints are signed by another key than the one pinned in the
    workspace (a substituted database) is refused by the library call, as by the CLI."""
    custody.record("model.pkl", name="clf", kind="model")
    other = tmp_path / "other"
    other.mkdir()
    cli("init", cwd=other).expect(0)
    config = project / ".custody" / "config.toml"
    foreign = re.search(r'^ledger_vkey = ".*"$',
                        (other / ".custody" / "config.toml").read_text(), re.M)
    assert foreign is not None
    config.write_text(re.sub(r'^ledger_vkey = ".*"$', lambda _: foreign.group(0),
                             config.read_text(), flags=re.M))
    with pytest.raises(custody.VerificationError) as refused:
        custody.verify("model.pkl", "policy.toml")
    assert refused.value.rule.startswith("checkpoint.")
    cli("verify", "model.pkl", cwd=project).expect(1, refused.value.rule)


def test_read_parquet_of_a_file_that_is_not_parquet_raises_load_error(project: Path) -> None:
    (project / "notes.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    custody.record("notes.csv", name="notes", kind="dataset")
    with pytest.raises(custody.LoadError, match=r"cannot read it as Parquet") as caught:
        custody.read_parquet("notes.csv", "policy.toml")
    assert caught.value.hint and caught.value.subject == "notes.csv"
    custody.record("train.parquet", name="train-set", kind="dataset")
    assert custody.read_parquet("train.parquet", "policy.toml").num_rows > 0


def test_load_torch_of_a_whole_pickled_module_raises_load_error(project: Path) -> None:
    """A whole nn.Module saved with torch.save(model) passes a policy that allows its class,
    but weights_only loading refuses it: a LoadError saying to save the state_dict."""
    torch = pytest.importorskip("torch")
    torch.save(torch.nn.Linear(2, 2), project / "whole.pt")
    torch.save(torch.nn.Linear(2, 2).state_dict(), project / "state.pt")
    custody.record("whole.pt", name="whole", kind="model", threshold="high")
    custody.record("state.pt", name="state", kind="model")
    with pytest.raises(custody.LoadError, match="Unsupported global") as caught:
        custody.load_torch("whole.pt", "policy.toml")
    assert caught.value.hint is not None and "state_dict" in caught.value.hint
    state = custody.load_torch("state.pt", "policy.toml")
    assert set(state) == {"weight", "bias"}
    (project / "junk.pt").write_bytes(b"\x00" * 100)
    custody.record("junk.pt", name="junk", kind="model")
    with pytest.raises(custody.LoadError, match=r"torch\.load cannot read"):
        custody.load_torch("junk.pt", "policy.toml")


def test_bad_arguments_raise_custody_errors(project: Path) -> None:
    custody.record("model.pkl", name="clf", kind="model")
    with pytest.raises(ArtifactError):
        custody.verify("missing.pkl", "policy.toml")
    with pytest.raises(UsageError, match=r"missing\.toml"):
        custody.verify("model.pkl", "missing.toml")
    with pytest.raises(UsageError, match=r"custody\.Policy"):
        custody.verify("model.pkl", 42)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="weights_only"):
        custody.load_torch("model.pkl", "policy.toml", weights_only=False)
    with pytest.raises(UsageError, match="severity"):
        custody.record("model.pkl", name="clf", kind="model", threshold="loud")
    with pytest.raises(CustodyError):
        custody.read_parquet("missing.parquet", "policy.toml")


def test_the_public_api_is_all_and_every_name_resolves() -> None:
    import inspect

    exported = set(custody.__all__)
    assert {"record", "verify", "open_verified", "read_parquet", "load_torch", "open_ledger",
            "open_workspace", "hash_path", "scan_path", "Policy", "Ledger", "Workspace",
            "VerificationReport", "RecordResult", "ScanReport", "CustodyError"} <= exported
    for name in exported:
        assert getattr(custody, name) is not None, name
    assert len(exported) < 40  # small on purpose: the rest is internal
    assert inspect.signature(custody.open_ledger).return_annotation == "Ledger"  # typed


def test_hash_scan_and_open_ledger_as_documented(project: Path) -> None:
    manifest = custody.hash_path("model.pkl")
    assert manifest.digest and len(manifest.files) == 1
    assert custody.scan_path("model.pkl", policy="policy.toml").verdict == custody.Verdict.CLEAN
    flagged = custody.scan_path(SAMPLES / "malicious.pkl")
    assert flagged.verdict == custody.Verdict.FLAGGED and flagged.exit_code == 1
    custody.record("model.pkl", name="clf", kind=custody.Kind.MODEL)
    with custody.open_ledger() as ledger:
        assert ledger.resolve("clf").ref == "clf@1"
    assert custody.open_workspace().home == project / ".custody"


def _pickle_with_global(module: str, name: str) -> bytes:
    """A protocol-4 pickle that builds ``module.name()``: a class no profile allows."""
    return (b"\x80\x04\x95" + (0).to_bytes(8, "little") + b"\x8c" + bytes([len(module)])
            + module.encode() + b"\x94\x8c" + bytes([len(name)]) + name.encode()
            + b"\x94\x93\x94)\x81\x94.")


def test_record_honours_the_workspace_policy_allow_globals_like_the_cli(project: Path) -> None:
    (project / "est.pkl").write_bytes(_pickle_with_global("mylib.models", "Estimator"))
    with pytest.raises(custody.ScanRefusedError, match=r"mylib\.models\.Estimator"):
        custody.record("est.pkl", name="est", kind="model")
    (project / ".custody" / "policy.toml").write_text(
        'version = 1\n[signers.team]\nkeys = ["keys/signing.pub"]\n[[trust]]\n'
        'signers = ["team"]\n[pickle]\nallow_globals = ["mylib.models.Estimator"]\n',
        encoding="utf-8")
    assert custody.record("est.pkl", name="est", kind="model").version.ref == "est@1"
    with custody.open_ledger(append=True) as ledger:  # an open Ledger: the same workspace policy
        again = custody.record("est.pkl", name="est2", kind="model", ledger=ledger,
                               signer=project / ".custody/keys/signing.key")
    assert again.version.ref == "est2@1"
    with custody.open_ledger(append=True) as ledger, pytest.raises(custody.ScanRefusedError):
        custody.record("est.pkl", name="est3", kind="model", ledger=ledger,
                       signer=project / ".custody/keys/signing.key",
                       scan_options=custody.ScanOptions())  # explicit options replace it


def test_hash_path_and_record_take_a_uri_as_the_cli_does(project: Path) -> None:
    uri = (project / "model.pkl").as_uri()  # file:///...: object-store code path, not Path()
    assert custody.hash_path(uri).digest == custody.hash_path("model.pkl").digest
    result = custody.record(uri, name="clf", kind="model")
    assert result.version.ref == "clf@1"
    assert custody.verify("model.pkl", "policy.toml").artifact.ref == "clf@1"
