"""The examples in README.md and docs/*.md run as written.

Every fenced ``toml``, ``python`` and ``bash`` block is executed against real files in a
temporary folder: policies with ``custody policy check``, the workspace config as a workspace's
``config.toml``, Python (``exec``) and shell blocks in a copy of one prepared folder. That folder
is made once per module: ``custody init``, ``custody quickstart`` (the sample data recorded as
``sample-dataset`` and ``sample-model``), and the files the examples name, recorded under the
names they use: ``data/train/`` (``train-set``), ``model.pt`` (``fraud-clf``, trained on
``train-set``), ``model.pkl`` (the sample model), ``v1.parquet`` / ``v2.parquet`` (the clean and
the poisoned sample snapshot) and ``policy.toml`` (trusts the workspace key).

Shell blocks run line by line (a trailing backslash continues a line; ``a && b`` runs ``b`` only
after ``a`` exited 0; ``> FILE`` writes stdout to FILE; pipes are not run). ``custody ...`` and
``python -m custody ...`` run the real CLI in-process. ``pip install -e .[EXTRA]`` and ``pytest``
are not re-run from inside the test suite; the test checks instead that what they do is in
effect (custody is installed from this checkout, every requirement of the extra is installed,
the tests folder holds tests). Anything else is an error: write the example another way. A
block whose first command is ``custody init`` runs in the copy without its ``.custody/``.

Markers read by this module:

- A command must exit 0 unless its line ends in a comment containing ``exits N`` (for example
  ``custody verify tampered.pkl   # exits 1: the bytes changed``); a refusal (1) must also print
  ``REFUSED``.
- ``<!-- not-run: REASON -->`` on the line before a fence: the block cannot run offline (a
  running MLflow, a Kubernetes cluster, keyless Sigstore signing). Only those are skipped; their
  number is capped by ``test_not_run_blocks_are_few_and_explained``.
- ``<!-- file: PATH -->`` on the line before a ``toml`` fence: the block is that workspace file.
- Plain fences (output samples, trees) are not run; ``json`` blocks of formats.md are compared
  with real output in tests/test_docs_formats.py; ``yaml`` blocks must parse.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest

import custody
from custody.cli import main
from custody.signing.keys import generate_key_pair

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "sample_data"
VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "sigstore"  # see vector_paths.py
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
_MARK = re.compile(r"<!--\s*(not-run|file):\s*(.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    lang: str
    text: str
    not_run: str | None  # the reason, when marked <!-- not-run: ... -->
    file: str | None  # <!-- file: PATH -->: the block is the content of that file

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}:{self.lang}"


def blocks(lang: str | None = None) -> list[Block]:
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for m in _FENCE.finditer(text):
            before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
            mark = _MARK.search(before)
            found.append(Block(
                doc=str(doc.relative_to(REPO)), line=text[: m.start()].count("\n") + 1,
                lang=m.group(1), text=m.group(2),
                not_run=mark.group(2) if mark and mark.group(1) == "not-run" else None,
                file=mark.group(2) if mark and mark.group(1) == "file" else None))
    return [b for b in found if lang is None or b.lang == lang]


def _params(lang: str, *, files: bool | None = None) -> list[object]:
    """The blocks of ``lang`` (only those marked ``file:`` when ``files``, none when False)."""
    return [pytest.param(b, id=b.id) for b in blocks(lang)
            if files is None or (b.file is not None) == files]


def _skip_marked(block: Block) -> None:
    if block.not_run is not None:
        pytest.skip(f"marked not-run: {block.not_run}")


def _self_signed_ca(path: Path) -> None:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "docs root")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _provide_policy_files(text: str, folder: Path) -> None:
    """Create the files a documented policy names, as real material of the right kind."""
    import tomllib

    data = tomllib.loads(text)
    for spec in data.get("signers", {}).values():
        for pub in spec.get("keys", []):
            (folder / pub).parent.mkdir(parents=True, exist_ok=True)
            generate_key_pair(folder / pub.removesuffix(".pub"))
        for pem in spec.get("ca_certs", []):
            _self_signed_ca(folder / pem)
    root = data.get("sigstore", {}).get("trusted_root")
    if root:
        (folder / root).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(VECTORS / "trust" / "production.trusted_root.json", folder / root)
    for suite in data.get("datasets", {}).get("expectation_suites", []):
        (folder / suite).write_text('{"name": "docs", "expectations": []}', encoding="utf-8")


@pytest.mark.parametrize("block", _params("toml", files=False))
def test_policy_block(block: Block, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """A TOML block is a policy file: `custody policy check` accepts it."""
    _skip_marked(block)
    _provide_policy_files(block.text, tmp_path)
    policy = tmp_path / "policy.toml"
    policy.write_text(block.text, encoding="utf-8")
    cli("policy", "check", policy, cwd=tmp_path).expect(0, "is valid")


@pytest.mark.parametrize("block", _params("toml", files=True))
def test_config_block(block: Block, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """The documented config.toml is a working workspace config (with init's own vkey)."""
    _skip_marked(block)
    cli("init", cwd=tmp_path).expect(0)
    config = tmp_path / str(block.file)
    vkey = re.search(r'^ledger_vkey = ".*"$', config.read_text(encoding="utf-8"), re.M)
    assert vkey is not None
    config.write_text(re.sub(r'^ledger_vkey = ".*?"', lambda _: vkey.group(0), block.text,
                             flags=re.M), encoding="utf-8")
    (tmp_path / "weights.bin").write_bytes(b"\x00" * 64)
    cli("record", "weights.bin", "--name", "w", "--kind", "model", cwd=tmp_path).expect(0, "w@1")
    cli("verify", "weights.bin", cwd=tmp_path).expect(0, "VERIFIED")


def test_every_block_kind_is_checked() -> None:
    """A new fenced block of a language this file does not run is a test failure."""
    # "text" blocks are diagrams (docs/design.md's layers and data flow): nothing to run
    unknown = [b.id for b in blocks() if b.lang not in {"toml", "python", "bash", "json",
                                                          "yaml", "text", ""}]
    assert unknown == []


# --- python and bash blocks, in a copy of one prepared folder ------------------------------

_POLICY = """version = 1
[signers.workspace]
keys = [".custody/keys/signing.pub"]
[[trust]]
signers = ["workspace"]
"""
_EXITS = re.compile(r"#.*\bexits (\d)\b")
_NOT_RUN_MAX = 3  # two MLflow registry blocks, one Dask cluster block


def _custody(folder: Path, *args: str) -> None:
    old = Path.cwd()
    os.chdir(folder)
    try:
        code = main(list(args))
    finally:
        os.chdir(old)
    assert code == 0, (args, code)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A workspace holding the recorded sample data and every file the examples name."""
    import torch

    folder = tmp_path_factory.mktemp("docs") / "project"
    folder.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("CUSTODY_LEDGER", raising=False)
        _custody(folder, "init")
        _custody(folder, "quickstart")
        (folder / "data" / "train").mkdir(parents=True)
        shutil.copyfile(SAMPLES / "dataset-v1.parquet", folder / "data/train/part-0.parquet")
        shutil.copyfile(SAMPLES / "dataset-v1.parquet", folder / "v1.parquet")
        shutil.copyfile(SAMPLES / "dataset-v2-poisoned.parquet", folder / "v2.parquet")
        shutil.copyfile(SAMPLES / "model.pkl", folder / "model.pkl")
        torch.save({"weight": torch.zeros(2, 3)}, folder / "model.pt")
        (folder / "policy.toml").write_text(_POLICY, encoding="utf-8")
        _custody(folder, "record", "data/train/", "--name", "train-set", "--kind", "dataset")
        _custody(folder, "record", "model.pt", "--name", "fraud-clf", "--kind", "model",
                 "--input", "train-set")
        yield folder


@pytest.fixture
def workdir(prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the prepared folder, the working directory of one block."""
    monkeypatch.delenv("CUSTODY_LEDGER", raising=False)
    copy = tmp_path / "project"
    shutil.copytree(prepared, copy)
    return copy


@dataclass(frozen=True)
class Command:
    line: str  # as written, for messages
    argv: list[str]
    exit_code: int
    stdout_to: str | None


def commands(block: Block) -> list[Command]:
    """The commands of a shell block, in order, with the exit code each must give."""
    found: list[Command] = []
    for raw in re.sub(r"\\\n", " ", block.text).splitlines():
        words = shlex.split(raw, comments=True)
        if not words:
            continue
        marked = _EXITS.search(raw)
        assert "|" not in words, f"{block.id}: pipes are not run, write to a file: {raw}"
        parts: list[list[str]] = [[]]
        for word in words:
            if word == "&&":
                parts.append([])
            else:
                parts[-1].append(word)
        for i, part in enumerate(parts):
            redirected = len(part) > 2 and part[-2] == ">"
            last = i == len(parts) - 1
            found.append(Command(raw.strip(), part[:-2] if redirected else part,
                                 int(marked.group(1)) if marked and last else 0,
                                 part[-1] if redirected else None))
    return found


def _check_pip(argv: list[str]) -> None:
    """`pip install -e .[EXTRA]`: custody comes from this checkout, the extra is installed."""
    assert argv[1:3] == ["install", "-e"] and len(argv) == 4, argv
    target = re.fullmatch(r"\.(?:\[(\w+)\])?", argv[3])
    assert target, f"only this checkout is installed by the docs: {argv}"
    assert Path(custody.__file__).resolve().parent == REPO
    if target.group(1):
        extras = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))[
            "project"]["optional-dependencies"]
        for requirement in extras[target.group(1)]:
            name = re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0]
            metadata.distribution(name)  # raises PackageNotFoundError when not installed


def run_command(command: Command, folder: Path, cli) -> None:  # type: ignore[no-untyped-def]
    argv = command.argv
    if argv[:3] == ["python", "-m", "custody"]:
        argv = ["custody", *argv[3:]]
    if argv[0] == "pip":
        _check_pip(argv)
    elif argv == ["pytest"]:
        assert sorted((REPO / "tests").rglob("test_*.py")), "pytest would find no tests"
    elif argv[0] == "custody":
        result = cli(*argv[1:], cwd=folder)
        result.expect(command.exit_code, *(["REFUSED"] if command.exit_code == 1 else []))
        if command.stdout_to is not None:
            (folder / command.stdout_to).write_text(result.out, encoding="utf-8")
    else:
        pytest.fail(f"{command.line!r}: the docs test runs only custody, python -m custody, "
                    "pip install -e and pytest; write the example with those")


@pytest.mark.parametrize("block", _params("bash"))
def test_shell_block(block: Block, workdir: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """Each command of a shell block gives the exit code the doc implies."""
    _skip_marked(block)
    found = commands(block)
    assert found, f"{block.id} holds no command"
    if found[0].argv[:2] == ["custody", "init"]:
        shutil.rmtree(workdir / ".custody")  # the block makes its own workspace
    for command in found:
        run_command(command, workdir, cli)


@pytest.mark.parametrize("block", _params("python"))
def test_python_block(block: Block, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Python block runs as written in the prepared folder."""
    _skip_marked(block)
    monkeypatch.chdir(workdir)
    exec(compile(block.text, block.id, "exec"), {"__name__": "__docs__"})  # noqa: S102


@pytest.mark.parametrize("block", _params("yaml"))
def test_yaml_block(block: Block) -> None:
    import yaml

    assert isinstance(yaml.safe_load(block.text), dict), block.id


def test_not_run_blocks_are_few_and_explained() -> None:
    marked = [b for b in blocks() if b.not_run is not None]
    assert len(marked) <= _NOT_RUN_MAX, [b.id for b in marked]
    for b in marked:
        assert b.lang in {"python", "bash", "toml"}, f"{b.id}: only run blocks can be not-run"
        assert len(b.not_run or "") >= 10, f"{b.id}: say why it cannot run offline"


def test_exit_markers_are_read() -> None:
    block = Block("x.md", 1, "bash", "custody init && custody verify a.bin  # exits 1: changed\n"
                  "custody lineage m --format dot > m.dot\n", None, None)
    assert [(c.argv[:2], c.exit_code, c.stdout_to) for c in commands(block)] == [
        (["custody", "init"], 0, None), (["custody", "verify"], 1, None),
        (["custody", "lineage"], 0, "m.dot")]
