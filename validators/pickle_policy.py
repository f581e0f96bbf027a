"""Which pickle globals are safe to import, which are dangerous, and why.

Default-deny: a global on the reviewed allowlist is clean; one from a known-dangerous module (or
any submodule or private alias of one) is critical; everything else is medium ("not on the
allowlist"). Users extend the allowlist in the policy file.
"""

from __future__ import annotations

from custody.validators.findings import Severity

# Exactly what torch's weights_only unpickler and numpy's array reconstruction need, plus
# containers from the standard library.
SAFE_GLOBALS: frozenset[str] = frozenset(
    {
        "collections.OrderedDict",
        "collections.defaultdict",
        "collections.Counter",
        "collections.deque",
        "builtins.set",
        "builtins.frozenset",
        "builtins.bytearray",
        "builtins.slice",
        "builtins.complex",
        "builtins.range",
        "builtins.dict",
        "builtins.list",
        "builtins.tuple",
        "builtins.int",
        "builtins.float",
        "builtins.bool",
        "builtins.str",
        "builtins.bytes",
        "copy_reg._reconstructor",
        "copyreg._reconstructor",
        "builtins.object",
        "numpy.core.multiarray._reconstruct",
        "numpy._core.multiarray._reconstruct",
        "numpy.core.multiarray.scalar",
        "numpy._core.multiarray.scalar",
        "numpy.ndarray",
        "numpy.dtype",
        "numpy.dtypes.Float64DType",
        "numpy.dtypes.Float32DType",
        "numpy.dtypes.Int64DType",
        "numpy.dtypes.Int32DType",
        "numpy.dtypes.BoolDType",
        "numpy.dtypes.UInt8DType",
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_tensor_v3",
        "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_parameter_with_state",
        "torch.FloatStorage",
        "torch.DoubleStorage",
        "torch.HalfStorage",
        "torch.BFloat16Storage",
        "torch.LongStorage",
        "torch.IntStorage",
        "torch.ShortStorage",
        "torch.CharStorage",
        "torch.ByteStorage",
        "torch.BoolStorage",
        "torch.storage.UntypedStorage",
        "torch.float32",
        "torch.float16",
        "torch.bfloat16",
        "torch.float64",
        "torch.int64",
        "torch.int32",
        "torch.uint8",
        "torch.bool",
        "torch.Size",
        "torch.device",
    }
)

DANGEROUS_MODULES: frozenset[str] = frozenset(
    {
        "os", "posix", "nt", "subprocess", "sys", "importlib", "runpy", "pip",
        "ctypes", "pty", "code", "codeop", "pydoc", "cProfile", "profile", "marshal",
        "webbrowser", "socket", "shutil", "pickle", "_pickle", "dill", "shelve", "tempfile",
        "asyncio", "multiprocessing", "threading", "_thread", "signal", "platform", "commands",
        "popen2", "bdb", "pdb", "timeit", "trace", "torch.hub", "torch.jit", "numpy.testing",
        "functools", "operator", "types", "io", "_io", "http", "urllib", "requests", "ftplib",
        "smtplib", "telnetlib", "zipimport", "pkgutil", "venv", "ensurepip", "distutils",
        "setuptools",
    }
)

DANGEROUS_BUILTINS: frozenset[str] = frozenset(
    {
        "eval", "exec", "compile", "open", "getattr", "setattr", "delattr", "__import__",
        "globals", "locals", "vars", "input", "breakpoint", "help", "memoryview", "type",
        "super", "object.__reduce__", "apply", "execfile", "file", "reload", "__builtins__",
    }
)

# Private aliases: a safe-looking module that re-exports a dangerous one.
_PRIVATE_ALIASES: frozenset[str] = frozenset({"random._os", "tempfile._os", "glob.os"})


def _module_is_dangerous(module: str) -> bool:
    root = module
    while root:
        if root in DANGEROUS_MODULES:
            return True
        root, _, _ = root.rpartition(".")
    return False


def classify_global(
    module: str, name: str, extra_safe: frozenset[str] = frozenset()
) -> tuple[Severity | None, str]:
    """Return ``(None, "")`` for a safe global, else the severity and a reason."""
    qualified = f"{module}.{name}"
    if qualified in SAFE_GLOBALS or qualified in extra_safe:
        return None, ""
    module_norm = {"__builtin__": "builtins", "copy_reg": "copyreg"}.get(module, module)
    head = name.split(".", 1)[0]
    if module_norm == "builtins" and head in DANGEROUS_BUILTINS:
        return Severity.CRITICAL, f"builtins.{name} can run arbitrary code"
    if _module_is_dangerous(module_norm):
        return Severity.CRITICAL, f"module {module} can run commands or code"
    if f"{module_norm}.{head}" in _PRIVATE_ALIASES or head.startswith("_os"):
        return Severity.CRITICAL, f"{qualified} is an alias of a dangerous module"
    return Severity.MEDIUM, "not on the allowlist of globals that are safe to load"
