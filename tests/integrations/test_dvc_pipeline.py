"""A real DVC repository (dvc init, dvc add, dvc.yaml stages, dvc repro) imported as lineage.

The repository is built once per module with the ``dvc`` CLI (analytics off) and copied for
each test; everything Custody does goes through ``custody.cli.main`` in-process.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from custody.errors import UsageError, VerificationError
from custody.provenance.hashing.dvc import check_dvc_workspace, load_lock, stage_outputs

PY = shlex.quote(sys.executable)
PREPARE = (
    f"{PY} -c \"import pyarrow as pa, pyarrow.csv as c, pyarrow.parquet as pq, yaml; "
    "s = yaml.safe_load(open('params.yaml'))['prepare']['scale']; "
    "t = c.read_csv('data/raw.csv'); "
    "t = t.set_column(1, 'y', pa.array([v * s for v in t.column('y').to_pylist()])); "
    "pq.write_table(t, 'data/clean.parquet')\""
)
TRAIN = (
    f"{PY} -c \"import pickle, pyarrow.parquet as pq; t = pq.read_table('data/clean.parquet'); "
    "w = sum(t.column('y').to_pylist()) / t.num_rows; "
    "pickle.dump({'w': w, 'b': 0.5, 'epochs': 3}, open('model.pkl', 'wb'), protocol=4)\""
)


def dvc(root: Path, *args: str) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    run = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, env=env,
                         capture_output=True, text=True, check=False, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


@pytest.fixture(scope="module")
def pipeline_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import yaml

    root = tmp_path_factory.mktemp("dvc-template") / "repo"
    (root / "data").mkdir(parents=True)
    dvc(root, "init", "--no-scm", "-q")
    (root / "data" / "raw.csv").write_text("x,y\n1,2.0\n2,4.0\n3,6.5\n", encoding="utf-8")
    dvc(root, "add", "-q", "data/raw.csv")
    (root / "params.yaml").write_text("prepare:\n  scale: 2\ntrain:\n  epochs: 3\n",
                                      encoding="utf-8")
    stages = {
        "prepare": {"cmd": PREPARE, "deps": ["data/raw.csv"], "params": ["prepare.scale"],
                    "outs": ["data/clean.parquet"]},
        "train": {"cmd": TRAIN, "deps": ["data/clean.parquet"], "params": ["train.epochs"],
                  "outs": ["model.pkl"]},
    }
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False),
                                   encoding="utf-8")
    dvc(root, "repro", "-q")
    assert (root / "model.pkl").is_file()
    return root


@pytest.fixture
def repo(pipeline_template: Path, tmp_path: Path, cli) -> Path:  # type: ignore[no-untyped-def]
    root = tmp_path / "repo"
    shutil.copytree(pipeline_template, root, symlinks=True)
    cli("init", cwd=root).expect(0)
    return root


def _lock_md5(root: Path, stage: str, path: str) -> str:
    lock = load_lock(root / "dvc.lock")
    entry = next(e for e in (*lock.stage(stage).deps, *lock.stage(stage).outs)
                 if e.path == path)
    assert entry.md5 is not None
    return entry.md5


def _predicate(root: Path, ref: str) -> dict[str, Any]:
    from custody.provenance.ledger.store import Ledger

    ledger = Ledger.open(f"sqlite:///{root / '.custody' / 'ledger.db'}")
    try:
        stored = ledger.stored_record(ledger.resolve(ref))
    finally:
        ledger.close()
    statement = json.loads(stored.statement)
    return dict(statement["predicate"])


def test_import_records_every_stage_as_lineage(repo: Path, cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("dvc", "import", "--model-out", "model.pkl", "--json", cwd=repo).expect(0)
    body = result.json()
    assert body["lockfile"] == "dvc.lock"
    assert body["created"] == 3
    stages = {s["stage"]: s for s in body["stages"]}
    assert list(stages) == ["prepare", "train"]
    assert [i["ref"] for i in stages["prepare"]["inputs"]] == ["dvc/data/raw.csv@1"]
    assert [o["ref"] for o in stages["prepare"]["outputs"]] == ["dvc/data/clean.parquet@1"]
    assert [i["ref"] for i in stages["train"]["inputs"]] == ["dvc/data/clean.parquet@1"]
    (model,) = stages["train"]["outputs"]
    assert (model["ref"], model["kind"]) == ("dvc/model.pkl@1", "model")
    assert stages["train"]["cmd"] == TRAIN
    # DVC's md5 as DVC itself wrote it, next to Custody's sha256.
    assert model["dvc_md5"] == _lock_md5(repo, "train", "model.pkl")
    assert stages["prepare"]["inputs"][0]["dvc_md5"] == _lock_md5(repo, "prepare",
                                                                   "data/raw.csv")
    assert model["digest"].startswith("sha256:")

    graph = cli("lineage", "dvc/model.pkl", "--format", "json", cwd=repo).expect(0).json()
    assert {n["ref"] for n in graph["nodes"]} == {"dvc/model.pkl@1", "dvc/data/clean.parquet@1",
                                                  "dvc/data/raw.csv@1"}
    edges = {(e["input"], e["output"], e["activity"]) for e in graph["edges"]}
    assert edges == {("dvc/data/clean.parquet@1", "dvc/model.pkl@1", "trained_on"),
                     ("dvc/data/raw.csv@1", "dvc/data/clean.parquet@1", "derived_from")}


def test_stage_command_params_and_dvc_md5_are_signed(repo: Path, cli) -> None:  # type: ignore[no-untyped-def]
    cli("dvc", "import", "--model-out", "model.pkl", cwd=repo).expect(0)
    predicate = _predicate(repo, "dvc/model.pkl@1")
    activity = predicate["activity"]
    assert activity["stage"] == "train"
    assert activity["cmd"] == TRAIN
    assert activity["params"] == {"params.yaml": {"train.epochs": 3}}
    assert predicate["dvc"]["md5"] == _lock_md5(repo, "train", "model.pkl")
    prepare = _predicate(repo, "dvc/data/clean.parquet@1")["activity"]
    assert (prepare["stage"], prepare["cmd"]) == ("prepare", PREPARE)
    assert prepare["params"] == {"params.yaml": {"prepare.scale": 2}}


def test_verify_the_produced_model_and_stage_outputs(repo: Path, cli) -> None:  # type: ignore[no-untyped-def]
    cli("dvc", "import", "--model-out", "model.pkl", cwd=repo).expect(0)
    report = cli("verify", "model.pkl", "--json", cwd=repo).expect(0).json()
    assert report["artifact"]["ref"] == "dvc/model.pkl@1"
    assert [n["ref"] for n in report["chain"]] == ["dvc/data/clean.parquet@1",
                                                   "dvc/data/raw.csv@1"]
    cli("verify", "model.pkl", cwd=repo).expect(0, "VERIFIED", "dvc/data/raw.csv@1")
    # What `custody verify --dvc-stage train` verifies: every out of the stage.
    outs = stage_outputs("train", repo / "dvc.lock")
    assert outs == (repo / "model.pkl",)
    for path in stage_outputs("prepare", repo / "dvc.lock"):
        cli("verify", path, cwd=repo).expect(0, "VERIFIED")
    with pytest.raises(UsageError, match="no stage 'nope'"):
        stage_outputs("nope", repo / "dvc.lock")
    staged = cli("verify", "--dvc-stage", "train", "--json", cwd=repo).expect(0).json()
    assert [o["artifact"]["ref"] for o in staged["outputs"]] == ["dvc/model.pkl@1"]
    cli("verify", "--dvc-stage", "nope", cwd=repo).expect(2, "nope")
    cli("verify", cwd=repo).expect(2, "--dvc-stage")
    (repo / "model.pkl").write_bytes(b"swapped")
    cli("verify", "--dvc-stage", "train", cwd=repo).expect(1, "model.pkl")


def test_reimport_records_nothing_new(repo: Path, cli) -> None:  # type: ignore[no-untyped-def]
    cli("dvc", "import", "--model-out", "model.pkl", cwd=repo).expect(0)
    again = cli("dvc", "import", "--model-out", "model.pkl", "--json", cwd=repo).expect(0).json()
    assert again["created"] == 0
    assert [o["ref"] for s in again["stages"] for o in s["outputs"]] == [
        "dvc/data/clean.parquet@1", "dvc/model.pkl@1"]
    listing = cli("list", "--json", cwd=repo).expect(0).json()
    assert len(listing) == 3


def test_workspace_that_differs_from_dvc_is_refused(repo: Path, cli) -> None:  # type: ignore[no-untyped-def]
    info = check_dvc_workspace(repo / "data" / "raw.csv")
    assert info is not None and info.source == "data/raw.csv.dvc"
    cli("dvc", "status", cwd=repo).expect(0, "data/raw.csv", "model.pkl")

    raw = repo / "data" / "raw.csv"
    raw.write_text(raw.read_text(encoding="utf-8") + "4,8.0\n", encoding="utf-8")  # no dvc add
    with pytest.raises(VerificationError) as caught:
        check_dvc_workspace(raw)
    assert caught.value.rule == "dvc.workspace_mismatch"
    assert caught.value.subject == "data/raw.csv"

    entries = len(cli("list", "--json", cwd=repo).expect(0).json())
    cli("dvc", "import", cwd=repo).expect(1, "dvc.workspace_mismatch", "data/raw.csv",
                                          "dvc.lock:prepare", "dvc repro")
    assert len(cli("list", "--json", cwd=repo).expect(0).json()) == entries == 0
    status = cli("dvc", "status", "--json", cwd=repo)
    assert status.code == 1
    states = {p["path"]: p["state"] for p in status.json()["paths"]}
    assert states["data/raw.csv"] == "modified"
    assert states["model.pkl"] == "ok"


def test_record_of_a_modified_dvc_path_is_refused(repo: Path, cli) -> None:  # type: ignore[no-untyped-def]
    raw = repo / "data" / "raw.csv"
    raw.write_text("x,y\n9,9\n", encoding="utf-8")
    cli("record", raw, "--name", "raw", "--kind", "dataset", cwd=repo).expect(
        1, "dvc.workspace_mismatch", "data/raw.csv")


def test_modified_stage_output_names_the_stage(repo: Path, cli) -> None:  # type: ignore[no-untyped-def]
    (repo / "model.pkl").write_bytes(b"\x80\x04K\x01.")
    result = cli("dvc", "import", "--json", cwd=repo).expect(1)
    body = json.loads(result.out)
    assert body["rule"] == "dvc.workspace_mismatch"
    assert "dvc.lock:train" in body["message"]
    assert body["subject"] == "model.pkl"


def test_exclude_and_default_kinds(repo: Path, cli) -> None:  # type: ignore[no-untyped-def]
    body = cli("dvc", "import", "--exclude", "data/raw.csv", "--json", cwd=repo).expect(0).json()
    assert body["skipped"] == ["data/raw.csv"]
    stages = {s["stage"]: s for s in body["stages"]}
    assert stages["prepare"]["inputs"] == []
    # Without --model-out a pickle is a dataset: only the glob (or a model container) says model.
    assert stages["train"]["outputs"][0]["kind"] == "dataset"
    assert stages["train"]["outputs"][0]["ref"] == "dvc/model.pkl@1"


ENV_PROBE = """
import json, os, sys
from pathlib import Path
before = dict(os.environ)
import custody.cli
import custody.provenance.hashing.dvc as dvc_support
info = dvc_support.check_dvc_workspace(Path(sys.argv[1]) / "data" / "raw.csv")
lock = dvc_support.load_lock(Path(sys.argv[1]) / "dvc.lock")
print(json.dumps({"environ_changed": sorted(set(os.environ.items()) ^ set(before.items())),
                  "md5": info.md5, "stages": [s.name for s in lock.stages],
                  "modules": sorted({m.split(".")[0] for m in sys.modules} & {"dvc", "dvc_data"})}))
"""


def test_dvc_support_leaves_the_environment_alone(pipeline_template: Path) -> None:
    """Importing and using it sets no variable (it used to set DVC_NO_ANALYTICS process-wide)
    and never loads the ``dvc`` application, whose CLI is what sends DVC's analytics."""
    env = {k: v for k, v in os.environ.items() if k != "DVC_NO_ANALYTICS"}
    run = subprocess.run([sys.executable, "-c", ENV_PROBE, str(pipeline_template)], env=env,
                         capture_output=True, text=True, check=False, timeout=120)
    assert run.returncode == 0, run.stderr
    probe = json.loads(run.stdout)
    assert probe["environ_changed"] == []
    assert probe["md5"] == _lock_md5(pipeline_template, "prepare", "data/raw.csv")
    assert probe["stages"] == ["prepare", "train"]
    assert probe["modules"] == ["dvc_data"]  # DVC's hashing library only, not `dvc`


SPLIT = (
    f"{PY} -c \"import pathlib; d = pathlib.Path('data/splits'); d.mkdir(exist_ok=True); "
    "rows = pathlib.Path('data/raw.csv').read_text().splitlines(); "
    "(d / 'train.csv').write_text(chr(10).join(rows[:3]) + chr(10)); "
    "(d / 'test.csv').write_text(chr(10).join(rows[:1] + rows[3:]) + chr(10))\""
)
FIT = (
    f"{PY} -c \"import json, struct; h = json.dumps({{'w': {{'dtype': 'F32', 'shape': [1], "
    "'data_offsets': [0, 4]}}).encode(); "
    "open('model.safetensors', 'wb')"
    ".write(struct.pack('<Q', len(h)) + h + struct.pack('<f', 1.5))\""
)


@pytest.fixture(scope="module")
def folder_template(pipeline_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pipeline whose first stage writes a folder and whose second reads one file of it."""
    import yaml

    root = tmp_path_factory.mktemp("dvc-folder") / "repo"
    (root / "data").mkdir(parents=True)
    dvc(root, "init", "--no-scm", "-q")
    shutil.copy(pipeline_template / "data" / "raw.csv", root / "data" / "raw.csv")
    stages = {
        "split": {"cmd": SPLIT, "deps": ["data/raw.csv"], "outs": ["data/splits"]},
        "fit": {"cmd": FIT, "deps": ["data/splits/train.csv"], "outs": ["model.safetensors"]},
    }
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False),
                                   encoding="utf-8")
    dvc(root, "repro", "-q")
    return root


def test_folder_outputs_and_model_containers(folder_template: Path, tmp_path: Path,
                                             cli) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "repo"
    shutil.copytree(folder_template, root, symlinks=True)
    cli("init", cwd=root).expect(0)
    body = cli("dvc", "import", "--json", cwd=root).expect(0).json()
    stages = {s["stage"]: s for s in body["stages"]}
    (splits,) = stages["split"]["outputs"]
    assert splits["ref"] == "dvc/data/splits@1"
    assert splits["dvc_md5"] == _lock_md5(root, "split", "data/splits")
    assert splits["dvc_md5"].endswith(".dir")
    assert splits["digest"].startswith("sha256-manifest-v1:")
    # The file read by `fit` lies inside the folder `split` wrote: the folder is the input.
    assert [i["ref"] for i in stages["fit"]["inputs"]] == ["dvc/data/splits@1"]
    (model,) = stages["fit"]["outputs"]
    assert model["kind"] == "model"  # a safetensors file, recognised by content
    report = cli("verify", "model.safetensors", "--json", cwd=root).expect(0).json()
    assert [n["ref"] for n in report["chain"]] == ["dvc/data/splits@1", "dvc/data/raw.csv@1"]
    info = check_dvc_workspace(root / "data" / "splits" / "train.csv")
    assert info is not None and info.source == "dvc.lock:split (inside data/splits)"


def _dvc_view(root: Path) -> dict[str, Any]:
    """What DVC's own loader (``dvc.repo.Repo``, from the test extra) reads from the metadata."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    def entry(o: Any) -> tuple[Any, ...]:
        return (Path(o.fs_path), o.hash_name, o.hash_info.value, o.meta.size, o.meta.nfiles)

    view: dict[str, Any] = {}
    with Repo(str(root)) as repo:
        for st in repo.index.stages:
            deps = [d for d in st.deps if not isinstance(d, ParamsDependency)]
            params = {d.def_path: d.hash_info.value for d in st.deps
                      if isinstance(d, ParamsDependency)}
            key = st.name if hasattr(st, "name") else Path(st.path).relative_to(root).as_posix()
            view[key] = {"cmd": st.cmd or None, "params": params,
                         "deps": sorted(map(entry, deps)), "outs": sorted(map(entry, st.outs))}
    return view


def _custody_view(root: Path) -> dict[str, Any]:
    from custody.provenance.hashing.dvc import iter_tracked, read_dvc_file

    def entry(o: Any) -> tuple[Any, ...]:
        return (o.resolved, o.hash_name, o.md5, o.size, o.nfiles)

    view: dict[str, Any] = {}
    for stage in load_lock(root / "dvc.lock").stages:
        cmd = list(stage.cmd) if isinstance(stage.cmd, tuple) else stage.cmd
        view[stage.name] = {"cmd": cmd, "params": stage.params,
                            "deps": sorted(map(entry, stage.deps)),
                            "outs": sorted(map(entry, stage.outs))}
    for dvc_file in root.rglob("*.dvc"):
        if dvc_file.is_file():
            outs = read_dvc_file(dvc_file, repo_root=root)
            view[dvc_file.relative_to(root).as_posix()] = {
                "cmd": None, "params": {}, "deps": [], "outs": sorted(map(entry, outs))}
    tracked = sorted(o.resolved for o in iter_tracked(root))
    assert tracked == sorted(o[0] for v in view.values() for o in v["outs"])
    return view


def test_metadata_reads_as_dvc_reads_it(pipeline_template: Path, folder_template: Path,
                                        tmp_path: Path) -> None:
    """Differential: Custody's own ``.dvc``/``dvc.lock`` reader against DVC's loader, on real
    ``dvc repro`` output with params, a list ``cmd``, ``wdir``, a folder out and a DVC 2 file."""
    from dvc_data.hashfile.hash import file_md5 as dvc_file_md5

    root = tmp_path / "repo"
    shutil.copytree(pipeline_template, root, symlinks=True)
    (root / "sub").mkdir()
    (root / "sub" / "in.txt").write_text("in\n", encoding="utf-8")
    pipeline = (root / "dvc.yaml").read_text(encoding="utf-8")
    (root / "dvc.yaml").write_text(pipeline + (
        "  nested:\n    wdir: sub\n    cmd:\n    - cp in.txt out.txt\n    - mkdir -p made\n"
        "    - cp in.txt made/copy.txt\n    deps: [in.txt]\n    outs: [out.txt, made]\n"),
        encoding="utf-8")
    dvc(root, "repro", "-q", "nested")
    (root / "legacy.txt").write_bytes(b"a\r\nb\r\n")  # written by DVC 2: no `hash` field
    legacy = dvc_file_md5(str(root / "legacy.txt"), name="md5-dos2unix")
    (root / "legacy.txt.dvc").write_text(f"outs:\n- md5: {legacy}\n  size: 6\n"
                                         "  path: legacy.txt\n", encoding="utf-8")
    folder = tmp_path / "folder"  # opening a DVC Repo writes lock files into .dvc/tmp
    shutil.copytree(folder_template, folder, symlinks=True)
    for repo_root in (root, folder):
        ours = _custody_view(repo_root)
        assert ours == _dvc_view(repo_root), repo_root.name
    assert ours["split"]["outs"][0][2].endswith(".dir")
    mine = _custody_view(root)
    assert mine["legacy.txt.dvc"]["outs"][0][1] == "md5-dos2unix"
    assert mine["nested"]["cmd"] == ["cp in.txt out.txt", "mkdir -p made",
                                     "cp in.txt made/copy.txt"]
    assert mine["nested"]["outs"][0][0].parent == root / "sub"
    assert mine["prepare"]["params"] == {"params.yaml": {"prepare.scale": 2}}
