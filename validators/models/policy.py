"""Which pickle globals are safe to import, which are dangerous, and why.

Default-deny: a global on the reviewed allowlist (the profiles of ``allowlist.py``) is clean;
one from a known-dangerous module (or any submodule or private alias of one), a dangerous
builtin, or an attribute chain through dunders (``x.__globals__``) is critical; everything else
is medium ("not on the allowlist"). Users choose profiles (``ScanOptions.pickle_profiles``) and
add single names (``ScanOptions.extra_safe_globals``).

Python 2 names are judged after the same renaming the unpickler applies (``__builtin__`` →
``builtins``, ``commands`` → ``subprocess``, ``cPickle`` → ``pickle``), and before it.
"""

from __future__ import annotations

import _compat_pickle

from custody.validators.findings import Severity
from custody.validators.models.allowlist import is_allowlisted

_DANGEROUS_MODULES: frozenset[str] = frozenset(
    {
        # processes, code, imports
        "os",
        "posix",
        "nt",
        "subprocess",
        "_posixsubprocess",
        "sys",
        "importlib",
        "runpy",
        "pip",
        "ctypes",
        "_ctypes",
        "pty",
        "code",
        "codeop",
        "pydoc",
        "cProfile",
        "profile",
        "marshal",
        "webbrowser",
        "socket",
        "_socket",
        "shutil",
        "pickle",
        "_pickle",
        "dill",
        "cloudpickle",
        "shelve",
        "tempfile",
        "asyncio",
        "multiprocessing",
        "threading",
        "_thread",
        "signal",
        "platform",
        "commands",
        "popen2",
        "bdb",
        "pdb",
        "timeit",
        "trace",
        "functools",
        "operator",
        "_operator",
        "types",
        "io",
        "_io",
        "pathlib",
        "http",
        "urllib",
        "requests",
        "ftplib",
        "smtplib",
        "telnetlib",
        "imaplib",
        "poplib",
        "nntplib",
        "xmlrpc",
        "socketserver",
        "zipimport",
        "pkgutil",
        "venv",
        "ensurepip",
        "distutils",
        "setuptools",
        "idlelib",
        "lib2to3",
        "test",
        "doctest",
        "_osx_support",
        "_aix_support",
        "_pyrepl",
        "antigravity",
        "this",
        "builtins.__import__",
        "site",
        "sysconfig",
        "linecache",
        "fileinput",
        "glob",
        "inspect",
        "gc",
        "weakref",
        "atexit",
        "ast",
        "dis",
        "compileall",
        "py_compile",
        "zipapp",
        "logging.config",
        "unittest",
        "ssl",
        "select",
        "selectors",
        "mmap",
        "fcntl",
        "resource",
        "readline",
        "rlcompleter",
        "copyreg.add_extension",
        "tkinter",
        "turtle",
        "sqlite3",
        "dbm",
        # ML libraries' loaders and code runners
        "torch.hub",
        "torch.jit",
        "torch.package",
        "torch.serialization",
        "torch._inductor",
        "torch._dynamo",
        "torch.fx",
        "torch.utils",
        "torch.ops",
        "torch.distributed",
        "torch.multiprocessing",
        "torch.testing",
        "torch.compiler",
        "torch._export",
        "torch.export",
        "torch.load",
        "torch.save",
        "torch.storage._load_from_bytes",
        "numpy.testing",
        "numpy.f2py",
        "numpy.distutils",
        "numpy.load",
        "numpy.save",
        "numpy.lib.npyio",
        "numpy.lib.format",
        "numpy.ctypeslib",
        "numpy.fromfile",
        "numpy.tofile",
        "numpy.loadtxt",
        "numpy.savetxt",
        "numpy.genfromtxt",
        "pandas.read_pickle",
        "pandas.io",
        "joblib.load",
        "joblib.dump",
        "joblib.parallel",
        "joblib.Parallel",
        "keras",
        "tensorflow",
        "tf_keras",
        "sklearn.utils._testing",
        "sklearn.datasets",
        "sklearn.externals",
        "scipy.weave",
        "IPython",
        "jinja2",
        "yaml",
    }
)

_DANGEROUS_BUILTINS: frozenset[str] = frozenset(
    {
        "eval",
        "exec",
        "compile",
        "open",
        "getattr",
        "setattr",
        "delattr",
        "__import__",
        "globals",
        "locals",
        "vars",
        "input",
        "breakpoint",
        "help",
        "memoryview",
        "type",
        "super",
        "apply",
        "execfile",
        "file",
        "reload",
        "__builtins__",
        "__loader__",
        "__spec__",
        "exit",
        "quit",
        "license",
        "copyright",
        "credits",
        "dir",
        "classmethod",
        "staticmethod",
        "property",
        "print",
        "callable",
        "hasattr",
        "object.__reduce__",
    }
)

# Private aliases: a harmless-looking module that holds a dangerous one under a private name.
_PRIVATE_ALIASES: frozenset[str] = frozenset(
    {
        "random._os",
        "tempfile._os",
        "glob.os",
        "uuid._get_command_stdout",
        "uuid.os",
        "uuid.sys",
        "ctypes.util",
        "shutil.os",
        "gzip.os",
        "zipfile.os",
        "tarfile.os",
        "logging.os",
        "json.decoder",
        "copy._reconstruct",
    }
)

# Attribute chains that reach interpreter internals from any object (protocol 4+ dotted names).
_DUNDER_TRAVERSAL: frozenset[str] = frozenset(
    {
        "__globals__",
        "__builtins__",
        "__subclasses__",
        "__class__",
        "__base__",
        "__bases__",
        "__mro__",
        "__dict__",
        "__code__",
        "__getattribute__",
        "__reduce__",
        "__reduce_ex__",
        "__init__",
        "__call__",
        "__self__",
        "__func__",
        "__closure__",
        "__import__",
        "__loader__",
        "__spec__",
        "__getattr__",
        "__setattr__",
        "__delattr__",
        "__module__",
        "__wrapped__",
        "__get__",
        "__set_name__",
        "__init_subclass__",
        "__new__",
    }
)


def _under(qualified: str, roots: frozenset[str]) -> bool:
    probe = qualified
    while probe:
        if probe in roots:
            return True
        probe = probe.rpartition(".")[0]
    return False


def _python2_rename(module: str, name: str) -> tuple[str, str]:
    """The renaming ``pickle`` applies to protocol 0-2 globals (``fix_imports``)."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def _judge_one(
    module: str, name: str, extra_safe: frozenset[str], profiles: tuple[str, ...] | None
) -> tuple[Severity | None, str]:
    qualified = f"{module}.{name}"
    parts = name.split(".")
    if any(p in _DUNDER_TRAVERSAL for p in parts[1:]) or (
        len(parts) > 1 and parts[0] in _DUNDER_TRAVERSAL
    ):
        return Severity.CRITICAL, f"{qualified} walks interpreter internals through dunders"
    if qualified in extra_safe or is_allowlisted(module, name, profiles):
        return None, ""
    if module == "builtins" and parts[0] in _DANGEROUS_BUILTINS:
        return Severity.CRITICAL, f"builtins.{name} can run arbitrary code or reach the system"
    if _under(module, _DANGEROUS_MODULES) or _under(qualified, _DANGEROUS_MODULES):
        return Severity.CRITICAL, f"module {module} can run commands, code or load more pickles"
    if _under(qualified, _PRIVATE_ALIASES) or f"{module}.{parts[0]}" in _PRIVATE_ALIASES:
        return Severity.CRITICAL, f"{qualified} is an alias of a dangerous module"
    if parts[0] in ("os", "sys", "subprocess", "_os", "_subprocess", "_sys", "system", "popen"):
        return Severity.CRITICAL, f"{qualified} reaches a dangerous module through an attribute"
    if module.startswith("<"):
        return Severity.HIGH, "the imported global cannot be determined statically"
    return Severity.MEDIUM, "not on the allowlist of globals that are safe to load"


def classify_global(
    module: str,
    name: str,
    extra_safe: frozenset[str] = frozenset(),
    profiles: tuple[str, ...] | None = None,
) -> tuple[Severity | None, str]:
    """Return ``(None, "")`` for a safe global, else the severity and a reason.

    ``profiles`` are the allowlist profiles in force (None: all of them); ``extra_safe`` are
    the qualified names a policy adds (``[pickle] allow_globals``).
    """
    raw = _judge_one(module, name, extra_safe, profiles)
    renamed_module, renamed_name = _python2_rename(module, name)
    if (renamed_module, renamed_name) == (module, name):
        return raw
    renamed = _judge_one(renamed_module, renamed_name, extra_safe, profiles)
    if raw[0] is Severity.CRITICAL:
        return raw
    return renamed
