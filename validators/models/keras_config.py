"""Keras models: the layer config of ``.keras`` archives and of legacy ``.h5`` files.

Nothing is loaded: the config is read as JSON (from the zip member or the HDF5 root attribute,
through h5py, attributes only). Lambda layers carry marshalled Python bytecode or name Python
functions (CVE-2024-3660), and any ``module`` outside Keras makes the loader import arbitrary
code (CVE-2025-1550); both are findings, judged by the same policy as pickle globals.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

from custody.validators.findings import Finding, Severity
from custody.validators.models.context import Ctx
from custody.validators.models.policy import classify_global

_KERAS_ROOTS = frozenset({"keras", "keras_hub", "keras_nlp", "keras_cv", "tf_keras"})
_RISKY_TF_OPS = ("py_function", "numpy_function", "py_func", "io.", "write_file", "read_file")
_MAX_NODES = 200_000


def check_config(config: object, ctx: Ctx) -> list[Finding]:
    findings: list[Finding] = []
    seen: set[tuple[str, str]] = set()
    stack: list[tuple[object, str]] = [(config, "config")]
    visited = 0
    while stack and visited < _MAX_NODES:
        node, where = stack.pop()
        visited += 1
        if isinstance(node, dict):
            findings.extend(_check_node(node, where, ctx, seen))
            stack.extend((v, f"{where}.{k}") for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(node))
    if stack:
        findings.append(
            ctx.finding(
                "keras.config_too_large",
                Severity.HIGH,
                "model config too large to inspect completely",
            )
        )
    return findings


def _check_node(
    node: dict[str, Any], where: str, ctx: Ctx, seen: set[tuple[str, str]]
) -> list[Finding]:
    out: list[Finding] = []
    class_name = node.get("class_name")
    module = node.get("module")
    if class_name in ("Lambda", "__lambda__"):
        out.append(
            ctx.finding(
                "keras.lambda",
                Severity.HIGH,
                "Lambda layer: loading it runs the Python code it carries (CVE-2024-3660)",
                at=where,
            )
        )
    if class_name == "TFOpLambda":
        function = str((node.get("config") or {}).get("function", ""))
        if any(op in function for op in _RISKY_TF_OPS):
            out.append(
                ctx.finding(
                    "keras.tf_op", Severity.HIGH, f"TFOpLambda calls tf.{function}", at=where
                )
            )
    if isinstance(module, str) and module.split(".")[0] not in _KERAS_ROOTS:
        name = class_name if isinstance(class_name, str) else "?"
        if (module, name) not in seen:
            seen.add((module, name))
            severity, reason = classify_global(module, name)
            out.append(
                ctx.finding(
                    "keras.module",
                    max(severity or Severity.MEDIUM, Severity.MEDIUM),
                    f"config makes Keras import {module}.{name} (CVE-2025-1550): "
                    f"{reason or 'outside Keras'}",
                    at=where,
                    evidence={"global": f"{module}.{name}"},
                )
            )
    return out


# h5py parses attributes in C, and a corrupt file can make it spin: read them in a child process
# with a deadline, from the file's path (no copy) or, for archive members, from stdin.
_H5_READER = (
    "import sys, json, io, h5py\n"
    "src = sys.argv[1] if len(sys.argv) > 1 else io.BytesIO(sys.stdin.buffer.read())\n"
    "with h5py.File(src, 'r') as f:\n"
    "    raw = f.attrs.get('model_config')\n"
    "if isinstance(raw, bytes):\n"
    "    raw = raw.decode('utf-8', 'replace')\n"
    "print(json.dumps(None if raw is None else str(raw)))\n"
)
_MAX_H5_STDIN = 256 << 20


def _model_config(stream: BinaryIO, ctx: Ctx) -> tuple[str | None, str]:
    """``(model_config or None, error)`` read by h5py in a child process."""
    name = getattr(stream, "name", None)
    args = [sys.executable, "-I", "-c", _H5_READER]
    data: bytes | None = None
    if isinstance(name, str) and Path(name).is_file() and not ctx.where:
        args.append(name)
    else:
        data = stream.read(_MAX_H5_STDIN + 1)
        if len(data) > _MAX_H5_STDIN:
            return None, "HDF5 member too large to inspect inside an archive"
    timeout = max(1.0, min(60.0, ctx.budget.deadline - time.monotonic()))
    try:
        done = subprocess.run(args, input=data, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return None, f"h5py did not finish reading the attributes within {timeout:.0f} s"
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["?"]
        return None, f"h5py cannot read the file: {tail[0][:200]}"
    value = json.loads(done.stdout)
    return (value if isinstance(value, str) else None), ""


def scan_hdf5(stream: BinaryIO, size: int | None, ctx: Ctx, head: bytes = b"") -> list[Finding]:
    """Legacy Keras ``.h5``: read the ``model_config`` attribute with h5py; never load a model."""
    text, error = _model_config(stream, ctx)
    if error:
        return [ctx.finding("hdf5.malformed", Severity.HIGH, f"{error}; not inspected")]
    if text is None:
        return []
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return [
            ctx.finding(
                "keras.config_unreadable", Severity.HIGH, f"model_config is not JSON: {exc}"
            )
        ]
    return check_config(parsed, ctx.inside("attribute model_config", nested=False))
