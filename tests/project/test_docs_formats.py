"""Every ``json`` sample in docs/formats.md has the shape of what Custody really writes.

Each block is matched to the command whose output it documents (the manifest: ``custody hash
DIR --json``; the signed statement and the bundle: ``custody bundle REF``; the OpenSSF Model
Signing statement: ``custody bundle REF --oms``), that command is run on a recorded model
directory trained on a recorded dataset directory, and the two JSON documents are compared:
the same keys at every level (a ``{"...": ...}`` object stands for any content), the same
fixed values (media and predicate types, algorithms, scanner names, verdicts, serialization
settings) and the same JSON types elsewhere. Strings in ``<angle brackets>`` are placeholders.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from custody.cli import main

REPO = Path(__file__).resolve().parents[2]
FORMATS = REPO / "docs" / "formats.md"
SAMPLES = REPO / "sample_data"
_FENCE = re.compile(r"^```json\n(.*?)^```", re.S | re.M)
FIXED = {"_type", "predicateType", "mediaType", "payloadType", "algorithm", "type", "kind",
         "activity", "scanners", "verdict", "threshold", "max_severity", "counts", "method",
         "hash_type", "allow_symlinks", "ignore_paths", "tlogEntries", "keyid"}
Run = Callable[..., Any]


def json_blocks() -> list[Any]:
    text = FORMATS.read_text(encoding="utf-8")
    found = []
    for m in _FENCE.finditer(text):
        where = f"formats.md:{text[: m.start()].count(chr(10)) + 1}"
        try:
            found.append(pytest.param(json.loads(m.group(1)), id=where))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: the sample is not JSON ({exc}); write `...` as a "
                             'key ({"...": "what goes here"}), never bare') from exc
    return found


def _payload(bundle: dict[str, Any]) -> Any:
    return json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))


def real_output(doc: dict[str, Any], run: Run) -> Any:
    """The output of the command the block documents (recognised by its distinctive keys)."""
    if "mediaType" in doc:
        return run("bundle", "fraud-clf")
    if doc.get("predicateType") == "https://custody.dev/artifact-record/v1":
        return _payload(run("bundle", "fraud-clf"))
    if "serialization" in doc.get("predicate", {}):
        return _payload(run("bundle", "fraud-clf", "--oms"))
    if {"resources", "digest", "type"} <= doc.keys():
        return run("hash", "model-dir", "--json")
    pytest.fail(f"a json block of formats.md documents no known output: {sorted(doc)}; "
                "add its command to real_output()")


def _placeholder(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("<") and value.endswith(">")


def differences(doc: Any, real: Any, where: str = "$", key: str = "") -> list[str]:
    """How ``real`` differs from the documented sample, one line per difference."""
    if isinstance(doc, dict) and set(doc) == {"..."}:
        return [] if isinstance(real, dict) else [f"{where}: not an object"]
    if key in FIXED and doc != real:
        return [f"{where}: documented {doc!r}, written {real!r}"]
    if isinstance(doc, dict):
        if not isinstance(real, dict):
            return [f"{where}: documented an object, written {real!r}"]
        found = [f"{where}: documented key {k!r} is not written"
                 for k in sorted(doc.keys() - real.keys())]
        found += [f"{where}: written key {k!r} is not documented"
                  for k in sorted(real.keys() - doc.keys())]
        for k in sorted(doc.keys() & real.keys()):
            found += differences(doc[k], real[k], f"{where}.{k}", k)
        return found
    if isinstance(doc, list):
        if not isinstance(real, list):
            return [f"{where}: documented a list, written {real!r}"]
        if doc and real:
            return differences(doc[0], real[0], f"{where}[0]", key)
        return [] if bool(doc) == bool(real) else [f"{where}: documented {doc!r}, written {real!r}"]
    if _placeholder(doc):
        return [] if isinstance(real, str | int) else [f"{where}: written {real!r}"]
    return [] if type(doc) is type(real) else [f"{where}: documented {doc!r}, written {real!r}"]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with a dataset directory and a model directory trained on it."""
    folder = tmp_path_factory.mktemp("formats")
    (folder / "data").mkdir()
    (folder / "data" / "part-0.parquet").write_bytes((SAMPLES / "dataset-v1.parquet").read_bytes())
    (folder / "model-dir" / "weights").mkdir(parents=True)
    (folder / "model-dir" / "weights" / "part-0.bin").write_bytes(  # a clean pickle
        (SAMPLES / "model.pkl").read_bytes())
    (folder / "model-dir" / "config.json").write_text('{"layers": 2}', encoding="utf-8")
    old = Path.cwd()
    os.chdir(folder)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.delenv("CUSTODY_LEDGER", raising=False)
            for args in (["init"], ["record", "data", "--name", "train-set", "--kind", "dataset"],
                         ["record", "model-dir", "--name", "fraud-clf", "--kind", "model",
                          "--input", "train-set", "--activity", "trained_on"]):
                assert main(args) == 0, args
    finally:
        os.chdir(old)
    return folder


@pytest.mark.parametrize("doc", json_blocks())
def test_json_sample_matches_real_output(doc: Any, recorded: Path, cli) -> None:  # type: ignore[no-untyped-def]
    def run(*args: str) -> Any:
        return cli(*args, cwd=recorded).expect(0).json()

    assert differences(doc, real_output(doc, run)) == []


def test_every_sample_is_compared() -> None:
    """formats.md keeps its four samples; a block that does not parse fails json_blocks()."""
    assert len(json_blocks()) == 4


def test_differences_are_found() -> None:
    doc = {"scan": {"scanners": ["pickle"], "counts": {}}, "name": "<x>", "size": 1}
    real = {"scan": {"scanners": ["model"], "counts": {}, "extra": 1}, "name": "m", "size": "1"}
    assert differences(doc, real) == [
        "$.scan: written key 'extra' is not documented",
        "$.scan.scanners: documented ['pickle'], written ['model']",
        "$.size: documented 1, written '1'"]
