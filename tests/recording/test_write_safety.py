"""No write before every check: a bad output path exits 2 before anything is appended, outputs
are written atomically, and a retry after fixing the path records version 1, not 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from custody.errors import SigningError, UsageError
from custody.provenance.recording.output_file import OutputFile, write_output

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"


def _model(root: Path, make_file) -> Path:  # type: ignore[no-untyped-def]
    return make_file(root / "model.pkl", (SAMPLES / "model.pkl").read_bytes())


def _versions(cli, root: Path, name: str) -> list[int]:  # type: ignore[no-untyped-def]
    rows = cli("list", name, "--json", cwd=root).expect(0).json()
    return [r["version"] for r in rows]


@pytest.mark.parametrize("option", ["--bundle-out", "--oms-out"])
def test_output_path_is_a_directory_appends_nothing(ws, cli, make_file, option: str
                                                    ) -> None:  # type: ignore[no-untyped-def]
    model = _model(ws.root, make_file)
    (ws.root / "outdir").mkdir()
    before = ws.entry_count()
    cli("record", model, "--name", "m", "--kind", "model", option, "outdir",
        cwd=ws.root).expect(2, f"{option} outdir is a directory", "give a file path")
    assert ws.entry_count() == before
    assert list((ws.root / "outdir").iterdir()) == []  # no temporary file left behind
    cli("record", model, "--name", "m", "--kind", "model", option, "outdir/m.out",
        cwd=ws.root).expect(0, "m@1")
    assert _versions(cli, ws.root, "m") == [1]
    assert (ws.root / "outdir" / "m.out").is_file()


@pytest.mark.parametrize("option", ["--bundle-out", "--oms-out"])
def test_output_folder_missing_appends_nothing(ws, cli, make_file, option: str
                                               ) -> None:  # type: ignore[no-untyped-def]
    model = _model(ws.root, make_file)
    before = ws.entry_count()
    cli("record", model, "--name", "m", "--kind", "model", option, "missing/dir/m.sig",
        cwd=ws.root).expect(2, "does not exist", "mkdir -p")
    assert ws.entry_count() == before
    (ws.root / "missing" / "dir").mkdir(parents=True)
    cli("record", model, "--name", "m", "--kind", "model", option, "missing/dir/m.sig",
        cwd=ws.root).expect(0, "m@1")
    assert _versions(cli, ws.root, "m") == [1]
    sig = json.loads((ws.root / "missing" / "dir" / "m.sig").read_text())
    assert sig["mediaType"].startswith("application/vnd.dev.sigstore.bundle")


def test_output_parent_is_a_file(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    model = _model(ws.root, make_file)
    make_file(ws.root / "plain", "x")
    before = ws.entry_count()
    cli("record", model, "--name", "m", "--kind", "model", "--bundle-out", "plain/b.json",
        cwd=ws.root).expect(2, "is not a folder")
    assert ws.entry_count() == before


def test_oms_out_for_a_dataset_is_refused_before_hashing(ws, cli, make_file
                                                         ) -> None:  # type: ignore[no-untyped-def]
    data = make_file(ws.root / "data.csv", "a,b\n1,2\n")
    before = ws.entry_count()
    cli("record", data, "--name", "d", "--kind", "dataset", "--oms-out", "d.sig",
        cwd=ws.root).expect(2, "--oms-out is for models", "drop --oms-out")
    cli("record", _model(ws.root, make_file), "--name", "m", "--kind", "model", "--no-oms",
        "--oms-out", "m.sig", cwd=ws.root).expect(2, "--no-oms")
    assert ws.entry_count() == before
    assert not (ws.root / "d.sig").exists()


def test_same_file_for_both_outputs(ws, cli, make_file) -> None:  # type: ignore[no-untyped-def]
    model = _model(ws.root, make_file)
    before = ws.entry_count()
    cli("record", model, "--name", "m", "--kind", "model", "--bundle-out", "s.json",
        "--oms-out", "./s.json", cwd=ws.root).expect(2, "name the same file")
    assert ws.entry_count() == before


def test_both_outputs_written_and_verifiable(ws, cli, make_file
                                             ) -> None:  # type: ignore[no-untyped-def]
    model = _model(ws.root, make_file)
    make_file(ws.root / "m.sigstore.json", "old content")
    cli("record", model, "--name", "m", "--kind", "model", "--bundle-out", "m.sigstore.json",
        "--oms-out", "model.sig", cwd=ws.root).expect(0)
    for sidecar in ("m.sigstore.json", "model.sig"):
        cli("verify", model, "--bundle", sidecar, "--key", ws.pub, cwd=ws.root).expect(0)
    assert sorted(p.name for p in ws.root.iterdir() if p.name.endswith(".tmp")) == []


def test_failure_after_signing_appends_nothing(ws, make_file) -> None:  # type: ignore[no-untyped-def]
    """A write that fails under the append lock (after signing, before the commit) rolls the
    whole record back: this is the ordering that `record --bundle-out` relies on."""
    from custody.provenance.recording.record import record
    from custody.provenance.workspace import load_workspace
    from custody.signing.key_signer import ECKeySigner
    from custody.signing.keys import load_private_key

    model = _model(ws.root, make_file)
    workspace = load_workspace(ws.home)
    assert workspace.signing_key is not None
    signer = ECKeySigner(load_private_key(workspace.signing_key))
    before = ws.entry_count()

    def disk_full(bundle: str, oms_bundle: str | None) -> None:
        assert bundle and oms_bundle
        raise SigningError("simulated: the output could not be written")

    ledger = workspace.open_ledger(append=True)
    try:
        with pytest.raises(SigningError):
            record(model, name="m", kind="model", ledger=ledger, signer=signer,
                   on_signed=disk_full)
        assert ws.entry_count() == before
        again = record(model, name="m", kind="model", ledger=ledger, signer=signer)
    finally:
        ledger.close()
    assert again.version.version == 1


@pytest.mark.parametrize("command", [
    ("bundle", "m", "--out"),
    ("bundle", "m", "--oms", "--out"),
    ("audit", "checkpoint", "--out"),
    ("audit", "prove", "m", "--out"),
])
def test_export_to_a_directory_or_missing_folder(ws, cli, make_file, command: tuple[str, ...]
                                                 ) -> None:  # type: ignore[no-untyped-def]
    cli("record", _model(ws.root, make_file), "--name", "m", "--kind", "model",
        cwd=ws.root).expect(0)
    (ws.root / "outdir").mkdir()
    cli(*command, "outdir", cwd=ws.root).expect(2, "is a directory")
    cli(*command, "nope/x.json", cwd=ws.root).expect(2, "does not exist")
    assert list((ws.root / "outdir").iterdir()) == []
    cli(*command, "outdir/x.json", cwd=ws.root).expect(0, "wrote")
    assert (ws.root / "outdir" / "x.json").stat().st_size > 0


def test_output_file_replaces_atomically_and_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    target.chmod(0o640)
    with OutputFile.prepare(target) as out:
        out.write("new")
        assert target.read_text() == "old"  # nothing visible until the commit
        out.commit()
    assert target.read_text() == "new"
    assert target.stat().st_mode & 0o777 == 0o640  # an existing file keeps its mode
    with OutputFile.prepare(target) as out:
        out.write("abandoned")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
    write_output(tmp_path / "fresh.bin", b"\x00\x01")
    assert (tmp_path / "fresh.bin").read_bytes() == b"\x00\x01"


def test_output_file_refuses_special_files(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match="not a regular file"):
        OutputFile.prepare(fifo)
