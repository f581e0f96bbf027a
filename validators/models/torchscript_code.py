"""TorchScript code (``code/**/*.py`` of a TorchScript archive) read as data, never compiled.

``torch.jit.load`` compiles these members and runs their ``__setstate__`` methods while it
loads; ``forward`` runs on every call. An archive writer controls the text completely, so the
code is analysed like a pickle: every call is resolved to its dotted name and judged. Ops that
read or write files (``torch.from_file``, ``UntypedStorage.from_file``, ``aten::save``), load
libraries or modules (``torch.ops.load_library``, ``torch.classes.load_library``) or run code
are critical; an op of a namespace that is not PyTorch's own (``torch.ops.myns.op``) needs a
native library that someone must load first, and is medium.
"""

from __future__ import annotations

import io
import re
import tokenize

from custody.validators.findings import Finding, Severity
from custody.validators.models.context import Ctx

_FILE_OR_CODE = frozenset({
    "from_file", "save", "load", "_save_for_mobile", "_load_for_mobile", "load_library",
    "import_module", "_load_from_bytes", "open", "exec", "eval", "compile", "__import__",
    "system", "popen", "spawn", "fork", "remove", "unlink", "rmtree", "getenv", "putenv",
    "_save_parameters", "_save_jit_module", "_load_jit_module_from_bytes", "_import_ir_module",
    "_run_emit_module_hook", "_jit_pass_lower_all_tuples", "input", "breakpoint", "__getattr__",
})  # fmt: skip
# getattr(self, "0") is TorchScript's compile-time attribute access, not Python's getattr
_BARE = frozenset({"open", "exec", "eval", "compile", "__import__", "input", "breakpoint"})
_OWN_NAMESPACES = frozenset({"aten", "prim", "quantized", "profiler", "_quantized", "_caffe2",
                             "quantized_decomposed", "_c10d_functional", "mkldnn", "_nnapi"})
_NAME = re.compile(r"[A-Za-z_][\w.]*\(")
_MAX_REPORTED = 10


def _dotted_calls(source: str) -> list[tuple[str, int]]:
    """``(dotted name, line)`` of every call in ``source``; strings and comments are skipped."""
    calls: list[tuple[str, int]] = []
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return [(m.group(0)[:-1], source.count("\n", 0, m.start()) + 1)
                for m in _NAME.finditer(source)]
    name: list[str] = []
    line = 0
    for tok in tokens:
        if tok.type == tokenize.NAME:
            if name and name[-1] != ".":
                name = []
            name.append(tok.string)
            line = tok.start[0]
        elif tok.type == tokenize.OP and tok.string == "." and name and name[-1] != ".":
            name.append(".")
        elif tok.type == tokenize.OP and tok.string == "(" and name and name[-1] != ".":
            calls.append(("".join(name), line))
            name = []
        else:
            name = []
    return calls


def _judge_call(dotted: str) -> tuple[Severity, str] | None:
    parts = dotted.split(".")
    last = parts[-1]
    if len(parts) == 1:
        if last in _BARE:
            return Severity.CRITICAL, f"{last}() reaches the interpreter or the file system"
        return None
    if parts[0] not in ("torch", "ops", "__torch__") and last not in _FILE_OR_CODE:
        return None  # a method of a value (x.view(...)); ops are reached through torch/ops
    if last in _FILE_OR_CODE or any(p.startswith("_jit_") for p in parts):
        return Severity.CRITICAL, f"{dotted} reads or writes files, loads code or runs it"
    if "classes" in parts[:2] or (parts[0] == "torch" and parts[1:2] == ["classes"]):
        return Severity.MEDIUM, f"{dotted} uses a custom TorchScript class of a native library"
    namespace = _op_namespace(parts)
    if namespace is not None and namespace not in _OWN_NAMESPACES:
        return Severity.MEDIUM, (f"{dotted} is an op of the namespace {namespace!r}, not "
                                 "PyTorch's: it runs native code of a library loaded for it")
    return None


def _op_namespace(parts: list[str]) -> str | None:
    if parts[0] == "ops" and len(parts) >= 3:
        return parts[1]
    if parts[:2] == ["torch", "ops"] and len(parts) >= 4:
        return parts[2]
    return None


def scan_code(source: str, ctx: Ctx) -> list[Finding]:
    findings: list[Finding] = []
    seen: set[str] = set()
    for dotted, line in _dotted_calls(source):
        if dotted in seen:
            continue
        seen.add(dotted)
        verdict = _judge_call(dotted)
        if verdict is None:
            continue
        severity, why = verdict
        findings.append(ctx.finding(
            "torchscript.code", severity,
            f"TorchScript code calls {dotted}: {why}; torch.jit.load compiles it and runs "
            "__setstate__ while loading", at=f"line {line}", evidence={"call": dotted}))
        if len(findings) >= _MAX_REPORTED:
            break
    return findings
