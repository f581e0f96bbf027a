"""Corpus generator for the model-file scanner: malicious samples and benign files.

Malicious samples reproduce published scanner bypasses (named after their advisory where one
exists) with a harmless payload (``echo custody-harmless``); they are written as bytes and NEVER
loaded. Benign files are written by the real libraries (torch, scikit-learn, joblib, numpy,
safetensors, h5py, onnx). Everything is generated into a temporary folder at test time.

Loaded by the tests with importlib (tests/ is not a package); also runnable:
``python tests/scan_corpus.py OUTDIR`` writes the whole corpus for benchmarks.
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import pickle
import struct
import sys
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

CMD = "echo custody-harmless"
MALICIOUS: dict[str, Callable[[Path], Path]] = {}
BENIGN: dict[str, Callable[[Path], Path]] = {}


def malicious(name: str) -> Callable[[Callable[[Path], Path]], Callable[[Path], Path]]:
    def register(fn: Callable[[Path], Path]) -> Callable[[Path], Path]:
        MALICIOUS[name] = fn
        return fn

    return register


def benign(name: str) -> Callable[[Callable[[Path], Path]], Callable[[Path], Path]]:
    def register(fn: Callable[[Path], Path]) -> Callable[[Path], Path]:
        BENIGN[name] = fn
        return fn

    return register


# -- raw pickle building blocks (protocol 0 text, protocol 2+ binary) -----------------------
def u8(s: str) -> bytes:
    raw = s.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def binunicode(s: str) -> bytes:
    raw = s.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def call_global(module: str, name: str, *args: str, proto: int = 2) -> bytes:
    """``module.name(*args)`` as GLOBAL + TUPLE + REDUCE."""
    body = b"c" + module.encode() + b"\n" + name.encode() + b"\n"
    body += b"(" + b"".join(binunicode(a) for a in args) + b"tR"
    return (b"\x80" + bytes([proto]) if proto >= 2 else b"") + body + b"."


def stack_global_call(module: str, name: str, *args: str) -> bytes:
    """``module.name(*args)`` through STACK_GLOBAL (protocol 4)."""
    body = u8(module) + u8(name) + b"\x93"
    body += b"(" + b"".join(u8(a) for a in args) + b"tR"
    return b"\x80\x04" + body + b"."


class _Reduce:
    def __init__(self, fn: object, args: tuple[object, ...]) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.fn, self.args


def os_system_pickle(proto: int = 4) -> bytes:
    import os

    return pickle.dumps({"weights": [1.0], "x": _Reduce(os.system, (CMD,))}, protocol=proto)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# -- plain pickles ---------------------------------------------------------------------------
for _proto in range(6):

    def _make(out: Path, proto: int = _proto) -> Path:
        return write(out / f"os_system_p{proto}.pkl", os_system_pickle(proto))

    malicious(f"os_system_protocol_{_proto}")(_make)


@malicious("CVE-2025-1716_pip_main")
def _pip_main(out: Path) -> Path:
    return write(out / "pip.pkl", call_global("pip", "main", "install", "custody-harmless"))


@malicious("CVE-2025-10155_pickle_with_pt_extension")
def _pt_extension(out: Path) -> Path:
    return write(out / "model.pt", os_system_pickle(2))


@malicious("CVE-2025-10155_pickle_named_safetensors")
def _named_safetensors(out: Path) -> Path:
    return write(out / "model.safetensors", os_system_pickle(4))


@malicious("CVE-2025-10157_asyncio_submodule")
def _asyncio(out: Path) -> Path:
    data = stack_global_call("asyncio.unix_events", "_UnixSubprocessTransport._start", CMD)
    return write(out / "asyncio.pkl", data)


_GHSA_CALLABLES = {
    "picklescan_ghsa_numpy_f2py_myeval": ("numpy.f2py.crackfortran", "myeval"),
    "picklescan_ghsa_torch_bottleneck": ("torch.utils.bottleneck.__main__", "run_autograd_prof"),
    "picklescan_ghsa_torch_config_module": (
        "torch.utils._config_module",
        "ConfigModule.load_config",
    ),
    "picklescan_ghsa_lib2to3_grammar_loads": ("lib2to3.pgen2.grammar", "Grammar.loads"),
    "picklescan_ghsa_idlelib_autocomplete": (
        "idlelib.autocomplete",
        "AutoComplete.fetch_completions",
    ),
    "picklescan_ghsa_uuid_get_command_stdout": ("uuid", "_get_command_stdout"),
    "picklescan_ghsa_osx_support_read_output": ("_osx_support", "_read_output"),
    "picklescan_ghsa_aix_support_read_cmd": ("_aix_support", "_read_cmd_output"),
    "picklescan_ghsa_imaplib_stream": ("imaplib", "IMAP4_stream"),
    "picklescan_ghsa_torch_serialization_load": ("torch.serialization", "load"),
    "picklescan_ghsa_torch_jit_execwrapper": ("torch.jit.unsupported_tensor_ops", "execWrapper"),
    "picklescan_ghsa_torch_inductor_compile": ("torch._inductor.codecache", "compile_file"),
    "picklescan_ghsa_distutils_write_file": ("distutils.file_util", "write_file"),
    "picklescan_ghsa_test_support_script": ("test.support.script_helper", "assert_python_ok"),
    "picklescan_ghsa_pydoc_pipepager": ("pydoc", "pipepager"),
    "picklescan_ghsa_cprofile_run": ("cProfile", "run"),
    "picklescan_ghsa_timeit": ("timeit", "timeit"),
    "picklescan_ghsa_pty_spawn": ("pty", "spawn"),
    "picklescan_ghsa_code_runcode": ("code", "InteractiveInterpreter.runcode"),
    "picklescan_ghsa_trace_run": ("trace", "Trace.run"),
    "picklescan_ghsa_bdb_run": ("bdb", "Bdb.run"),
    "picklescan_ghsa_doctest_debug_script": ("doctest", "debug_script"),
    "picklescan_ghsa_venv_create": ("venv", "create"),
    "picklescan_ghsa_ensurepip_run_pip": ("ensurepip", "_run_pip"),
    "picklescan_ghsa_runpy_run_path": ("runpy", "run_path"),
    "picklescan_ghsa_webbrowser_open": ("webbrowser", "open"),
    "picklescan_ghsa_ctypes_cdll": ("ctypes", "CDLL"),
    "picklescan_ghsa_marshal_loads": ("marshal", "loads"),
    "picklescan_ghsa_socket_connection": ("socket", "create_connection"),
    "picklescan_ghsa_shutil_rmtree": ("shutil", "rmtree"),
    "builtins_exec": ("builtins", "exec"),
    "python2_builtin_eval": ("__builtin__", "eval"),
    "python2_commands_getoutput": ("commands", "getoutput"),
    "private_alias_random_os": ("random", "_os.system"),
    "unknown_callable_default_deny": ("custody_corpus_evil", "run"),
}

for _name, (_module, _attr) in _GHSA_CALLABLES.items():

    def _make_call(out: Path, module: str = _module, attr: str = _attr, name: str = _name) -> Path:
        if "." in attr:  # dotted names need protocol 4 STACK_GLOBAL
            data = stack_global_call(module, attr, CMD)
        else:
            data = call_global(module, attr, CMD)
        return write(out / f"{name}.pkl", data)

    malicious(_name)(_make_call)


@malicious("modelscan_bypass_memo_stack_global")
def _memo(out: Path) -> Path:
    # Names stored in the memo early, fetched with BINGET much later, with noise in between.
    body = u8("os") + b"q\x01" + b"0" + u8("system") + b"q\x02" + b"0"
    body += b"]" + u8("noise") + b"a" + b"0"
    body += b"h\x01h\x02\x93" + b"(" + u8(CMD) + b"tR."
    return write(out / "memo.pkl", b"\x80\x04" + body)


@malicious("modelscan_bypass_dup_and_memoize")
def _dup(out: Path) -> Path:
    body = u8("subprocess") + b"\x94" + u8("getoutput") + b"\x94" + b"2" + b"0" + b"\x93"
    body += b"(" + u8(CMD) + b"tR."
    return write(out / "dup.pkl", b"\x80\x04" + body)


@malicious("modelscan_bypass_string_opcodes_stack_global")
def _strings(out: Path) -> Path:
    body = b"S'os'\n" + b"U\x06system" + b"\x93" + b"(" + binunicode(CMD) + b"tR."
    return write(out / "strings.pkl", body)


@malicious("fickling_bypass_inst_opcode")
def _inst(out: Path) -> Path:
    return write(out / "inst.pkl", b"(S'" + CMD.encode() + b"'\nios\nsystem\n.")


@malicious("fickling_bypass_obj_opcode")
def _obj(out: Path) -> Path:
    return write(out / "obj.pkl", b"(cos\nsystem\nS'" + CMD.encode() + b"'\no.")


@malicious("fickling_bypass_newobj_ex")
def _newobj_ex(out: Path) -> Path:
    body = u8("subprocess") + u8("Popen") + b"\x93" + b"]" + u8("echo") + b"a\x85" + b"}\x92."
    return write(out / "newobj_ex.pkl", b"\x80\x04" + body)


@malicious("fickling_bypass_build_setstate_global")
def _build(out: Path) -> Path:
    body = b"ccollections\nOrderedDict\n" + b"}" + u8("__setstate__") + b"cos\nsystem\ns" + b"b."
    return write(out / "build.pkl", b"\x80\x02" + body)


@malicious("getattr_import_chain")
def _getattr(out: Path) -> Path:
    body = b"cbuiltins\ngetattr\n(cbuiltins\n__import__\n(S'os'\ntRS'system'\ntR(S'"
    body += CMD.encode() + b"'\ntR."
    return write(out / "getattr.pkl", body)


@malicious("dunder_attribute_traversal")
def _dunder(out: Path) -> Path:
    data = stack_global_call("collections", "OrderedDict.__init__.__globals__", CMD)
    return write(out / "dunder.pkl", data)


@malicious("copyreg_extension_opcode")
def _ext(out: Path) -> Path:
    return write(out / "ext.pkl", b"\x80\x02\x82\x07(" + binunicode(CMD) + b"tR.")


@malicious("nested_pickle_loads_payload")
def _nested(out: Path) -> Path:
    inner = os_system_pickle(2)
    return write(out / "nested.pkl", pickle.dumps(_Reduce(pickle.loads, (inner,)), protocol=2))


@malicious("concatenated_pickles_second_malicious")
def _concat(out: Path) -> Path:
    return write(out / "concat.pkl", pickle.dumps([1, 2, 3]) + os_system_pickle(2))


@malicious("nullifAI_broken_pickle")
def _broken(out: Path) -> Path:
    data = os_system_pickle(2)[:-1] + b"\xfe\xfe garbage that breaks the stream"
    return write(out / "broken.pkl", data)


@malicious("nullifAI_7z_compressed_pickle")
def _seven_zip(out: Path) -> Path:
    # A 7z signature header followed by a (stored) pickle: we have no 7z reader, so must flag.
    header = b"7z\xbc\xaf\x27\x1c\x00\x04" + b"\x00" * 24
    return write(out / "model.7z.pt", header + os_system_pickle(2))


# -- torch containers ------------------------------------------------------------------------
def _torch_zip_bytes() -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save({"w": torch.arange(4.0)}, buf)
    return buf.getvalue()


def _rewrite_zip(data: bytes, replace: dict[str, bytes], add: dict[str, bytes]) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, replace.get(info.filename, src.read(info.filename)))
        for name, payload in add.items():
            dst.writestr(name, payload)
    return out.getvalue()


def _malicious_torch_zip() -> bytes:
    return _rewrite_zip(_torch_zip_bytes(), {"archive/data.pkl": os_system_pickle(2)}, {})


def _patch_header(data: bytes, name: str, offset: int, value: bytes, central: int) -> bytes:
    raw = bytearray(data)
    for sig, off in ((b"PK\x03\x04", offset), (b"PK\x01\x02", central)):
        start = 0
        while (local := raw.find(sig, start)) >= 0:
            start = local + 4
            name_at = local + (30 if sig == b"PK\x03\x04" else 46)
            if raw[name_at : name_at + len(name)] == name.encode():
                raw[local + off : local + off + len(value)] = value
                break
    return bytes(raw)


@malicious("torch_zip_malicious_data_pkl")
def _torch_bad(out: Path) -> Path:
    return write(out / "model.pt", _malicious_torch_zip())


@malicious("CVE-2025-1889_hidden_pickle_odd_extension")
def _hidden(out: Path) -> Path:
    data = _rewrite_zip(_torch_zip_bytes(), {}, {"archive/config.p": os_system_pickle(2)})
    return write(out / "hidden.pt", data)


@malicious("CVE-2025-1889_hidden_pickle_no_extension")
def _hidden2(out: Path) -> Path:
    data = _rewrite_zip(_torch_zip_bytes(), {}, {"archive/extra/weights": os_system_pickle(0)})
    return write(out / "hidden2.pt", data)


@malicious("CVE-2025-1944_zip_local_name_mismatch")
def _mismatch(out: Path) -> Path:
    data = _malicious_torch_zip()
    raw = bytearray(data)
    at = raw.find(b"PK\x03\x04")
    while at >= 0 and raw[at + 30 : at + 46] != b"archive/data.pkl":
        at = raw.find(b"PK\x03\x04", at + 4)
    raw[at + 30 : at + 46] = b"archive/data.pkX"
    return write(out / "mismatch.pt", bytes(raw))


@malicious("CVE-2025-1945_zip_flag_bits")
def _flags(out: Path) -> Path:
    data = _patch_header(_malicious_torch_zip(), "archive/data.pkl", 6, b"\x01\x00", 8)
    return write(out / "flags.pt", data)


@malicious("CVE-2025-10156_zip_bad_crc")
def _crc(out: Path) -> Path:
    data = _patch_header(_malicious_torch_zip(), "archive/data.pkl", 14, b"\xde\xad\xbe\xef", 16)
    return write(out / "crc.pt", data)


@malicious("torch_legacy_stacked_pickles")
def _legacy(out: Path) -> Path:
    magic = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
    data = magic + pickle.dumps(1001, protocol=2) + pickle.dumps({"x": 1}, protocol=2)
    data += os_system_pickle(2) + pickle.dumps([], protocol=2)
    return write(out / "legacy.pt", data)


@malicious("torch_legacy_tar_format")
def _tar(out: Path) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, payload in (
            ("sys_info", pickle.dumps({"protocol_version": 1001}, protocol=2)),
            ("pickle", os_system_pickle(2)),
            ("storages", pickle.dumps(0, protocol=2) + pickle.dumps([], protocol=2)),
            ("tensors", pickle.dumps(0, protocol=2)),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return write(out / "legacy_tar.pt", buf.getvalue())


@malicious("nested_zip_in_zip")
def _nested_zip(out: Path) -> Path:
    inner = _malicious_torch_zip()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as outer:
        outer.writestr("models/inner.pt", inner)
    return write(out / "nested.zip", buf.getvalue())


@malicious("pickle_zip_polyglot")
def _polyglot(out: Path) -> Path:
    # A harmless pickle in front, a malicious torch zip behind: loaders disagree on the format.
    return write(out / "polyglot.pt", pickle.dumps([1], protocol=2) + _malicious_torch_zip())


# -- joblib, numpy -----------------------------------------------------------------------------
def _joblib_bytes(compress: object) -> bytes:
    import os

    import joblib
    import numpy as np

    buf = io.BytesIO()
    payload = {"coef": np.arange(8.0), "hook": _Reduce(os.system, (CMD,))}
    joblib.dump(payload, buf, compress=compress)  # type: ignore[arg-type]
    return buf.getvalue()


for _compress in (0, ("zlib", 3), ("gzip", 3), ("bz2", 3), ("xz", 3), ("lzma", 3)):
    _label = "plain" if _compress == 0 else _compress[0]  # type: ignore[index]

    def _make_joblib(out: Path, compress: object = _compress, label: str = _label) -> Path:
        return write(out / f"model_{label}.joblib", _joblib_bytes(compress))

    malicious(f"joblib_{_label}_reduce_after_inline_array")(_make_joblib)


def _npy_object(pickled: bytes) -> bytes:
    header = b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header = header.ljust(118) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + pickled


@malicious("numpy_object_array_pickle")
def _npy(out: Path) -> Path:
    return write(out / "arr.npy", _npy_object(os_system_pickle(3)))


@malicious("numpy_npz_object_member")
def _npz(out: Path) -> Path:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("ok.npy", _npy_float())
        z.writestr("bad.npy", _npy_object(os_system_pickle(3)))
    return write(out / "arrays.npz", buf.getvalue())


def _npy_float() -> bytes:
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.arange(3.0))
    return buf.getvalue()


@malicious("gzip_wrapped_pickle")
def _gz(out: Path) -> Path:
    return write(out / "model.bin", gzip.compress(os_system_pickle(4)))


@malicious("zlib_deflate_in_zip_member")
def _deflate(out: Path) -> Path:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_BZIP2) as z:
        z.writestr("model/weights.bin", os_system_pickle(4))
    return write(out / "bz2member.zip", buf.getvalue())


# -- keras, gguf, onnx -------------------------------------------------------------------------
def _dense(name: str) -> dict[str, object]:
    return {
        "module": "keras.layers",
        "class_name": "Dense",
        "registered_name": None,
        "config": {"name": name, "units": 2, "activation": "relu"},
    }


def _keras_zip(layers: list[dict[str, object]]) -> bytes:
    config = {
        "module": "keras",
        "class_name": "Sequential",
        "registered_name": None,
        "config": {"name": "seq", "layers": layers},
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "3.8.0"}))
        z.writestr("config.json", json.dumps(config))
        z.writestr("model.weights.h5", b"")
    return buf.getvalue()


_LAMBDA = {
    "module": "keras.layers",
    "class_name": "Lambda",
    "registered_name": None,
    "config": {
        "name": "l",
        "function": {
            "class_name": "__lambda__",
            "config": {"code": "4wEAAAAAAAAA", "defaults": None, "closure": None},
        },
    },
}


@malicious("CVE-2024-3660_keras_lambda_layer")
def _keras_lambda(out: Path) -> Path:
    return write(out / "lambda.keras", _keras_zip([_dense("d"), _LAMBDA]))


@malicious("CVE-2025-1550_keras_config_arbitrary_module")
def _keras_module(out: Path) -> Path:
    evil = {"module": "os", "class_name": "system", "registered_name": None, "config": CMD}
    return write(out / "module.keras", _keras_zip([_dense("d"), evil]))


@malicious("keras_h5_lambda_layer")
def _h5_lambda(out: Path) -> Path:
    import h5py

    path = out / "lambda.h5"
    config = {
        "class_name": "Sequential",
        "config": {
            "layers": [
                {
                    "class_name": "Lambda",
                    "config": {"function": ["4wEAAAAAAAAA", None, None], "function_type": "lambda"},
                }
            ]
        },
    }
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        f.attrs["keras_version"] = "2.15.0"
    return path


def _gguf_string(s: str) -> bytes:
    raw = s.encode()
    return struct.pack("<Q", len(raw)) + raw


@malicious("gguf_chat_template_injection")
def _gguf(out: Path) -> Path:
    template = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    data = b"GGUF" + struct.pack("<IQQ", 3, 0, 2)
    data += _gguf_string("general.architecture") + struct.pack("<I", 8) + _gguf_string("llama")
    data += _gguf_string("tokenizer.chat_template") + struct.pack("<I", 8) + _gguf_string(template)
    return write(out / "model.gguf", data)


@malicious("onnx_external_data_path_traversal")
def _onnx_escape(out: Path) -> Path:
    from onnx import TensorProto, helper

    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1])
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "../../../../etc/passwd"
    node = helper.make_node("Identity", ["w"], ["y"])
    out_info = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([node], "g", [], [out_info], initializer=[tensor])
    path = out / "escape.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    return path



# -- issue 16: evasions and resource exhaustion ------------------------------------------------
@malicious("joblib_lz4_reduce_after_inline_array")
def _joblib_lz4(out: Path) -> Path:
    return write(out / "model_lz4.joblib", _joblib_bytes("lz4"))


def _tar_bytes(members: dict[str, bytes], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def _legacy_tar_members(pickled: bytes) -> dict[str, bytes]:
    return {
        "sys_info": pickle.dumps({"protocol_version": 1001}, protocol=2),
        "pickle": pickled,
        "storages": pickle.dumps(0, protocol=2) + pickle.dumps([], protocol=2),
        "tensors": pickle.dumps(0, protocol=2),
    }


@malicious("torch_legacy_tar_v7_no_magic")
def _tar_v7(out: Path) -> Path:
    # A v7 tar header has no "ustar" magic; tarfile (and torch.load) accept it by its checksum.
    data = bytearray(_tar_bytes(_legacy_tar_members(os_system_pickle(2)), tarfile.USTAR_FORMAT))
    at = 0
    while at + 512 <= len(data) and data[at : at + 512].strip(b"\x00"):
        size = int(data[at + 124 : at + 136].strip(b" \x00") or b"0", 8)
        data[at + 257 : at + 265] = b"\x00" * 8  # drop magic and version
        data[at + 148 : at + 156] = b" " * 8
        data[at + 148 : at + 156] = b"%06o\x00 " % sum(data[at : at + 512])
        at += 512 + (size + 511) // 512 * 512
    return write(out / "legacy_v7.pt", bytes(data))


@malicious("torch_legacy_tar_gnu_format")
def _tar_gnu(out: Path) -> Path:
    data = _tar_bytes(_legacy_tar_members(os_system_pickle(2)), tarfile.GNU_FORMAT)
    return write(out / "legacy_gnu.pt", data)


@malicious("keras_archive_with_foreign_prefix")
def _keras_prefix(out: Path) -> Path:
    evil = {"module": "os", "class_name": "system", "registered_name": None, "config": CMD}
    return write(out / "prefixed.keras", b"\x00JUNK" * 64 + _keras_zip([_dense("d"), evil]))


def _torchscript_bytes() -> bytes:
    import torch

    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(torch.nn.Sequential(torch.nn.Linear(3, 2))), buf)
    return buf.getvalue()


def _with_code(data: bytes, line: str) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    suffix = "code/__torch__/torch/nn/modules/container.py"
    name = next(n for n in src.namelist() if n.endswith(suffix))
    code = src.read(name).decode()
    head, sep, rest = code.partition("  def forward(")
    hook = ("  def __setstate__(self, state: Tuple[bool]) -> None:\n"
            f"    {line}\n    self.training = state[0]\n    return None\n")
    return _rewrite_zip(data, {name: (head + hook + sep + rest).encode()}, {})


@malicious("torchscript_code_reads_file_at_load")
def _ts_file(out: Path) -> Path:
    line = '_0 = torch.from_file("/etc/passwd", False, 64, dtype=0)'
    return write(out / "ts_from_file.pt", _with_code(_torchscript_bytes(), line))


@malicious("torchscript_code_loads_library")
def _ts_library(out: Path) -> Path:
    line = 'torch.ops.load_library("/tmp/custody-harmless.so")'
    return write(out / "ts_load_library.pt", _with_code(_torchscript_bytes(), line))


@malicious("torch_storage_declares_more_than_its_data")
def _storage_short(out: Path) -> Path:
    import torch

    buf = io.BytesIO()
    torch.save({"w": torch.arange(1024.0)}, buf)
    name = next(n for n in zipfile.ZipFile(buf).namelist() if n.endswith("/data/0"))
    return write(out / "short_storage.pt", _rewrite_zip(buf.getvalue(), {name: b"\x00" * 8}, {}))


@malicious("torch_tensor_view_past_its_storage")
def _tensor_oob(out: Path) -> Path:
    import torch

    buf = io.BytesIO()
    torch.save({"w": torch.arange(4.0)}, buf)
    data = buf.getvalue()
    name = next(n for n in zipfile.ZipFile(buf).namelist() if n.endswith("data.pkl"))
    pkl = zipfile.ZipFile(buf).read(name)
    # the tensor's size tuple (4,) becomes (200,): it now reaches past the 4-element storage
    patched = pkl.replace(b"K\x04\x85", b"K\xc8\x85", 1)
    assert patched != pkl
    return write(out / "oob_view.pt", _rewrite_zip(data, {name: patched}, {}))


@malicious("safetensors_huge_header_length")
def _st_huge(out: Path) -> Path:
    return write(out / "huge.safetensors", struct.pack("<Q", 1 << 40) + b'{"a": 1}' + b" " * 32)


@malicious("pickle_bytearray_allocation_bomb")
def _bytearray_bomb(out: Path) -> Path:
    return write(out / "bytearray.pkl", b"\x80\x02cbuiltins\nbytearray\nJ\xff\xff\xff\x7f\x85R.")


@malicious("pickle_list_of_huge_range")
def _range_bomb(out: Path) -> Path:
    body = b"cbuiltins\nlist\ncbuiltins\nrange\n\x8a\x05\x00\x00\x00\x00\x10\x85R\x85R."
    return write(out / "range.pkl", b"\x80\x02" + body)


@malicious("pickle_declared_bytes8_beyond_the_file")
def _bytes8_bomb(out: Path) -> Path:
    return write(out / "bytes8.pkl", b"\x80\x04\x8e" + struct.pack("<Q", 1 << 40) + b"x" * 16)


@malicious("pickle_memo_expansion_billion_laughs")
def _laughs(out: Path) -> Path:
    body = b"N\x94"  # memo 0 = None
    for level in range(1, 64):  # level k = (level k-1, level k-1): 2^63 leaves unfolded
        body += b"h" + bytes([level - 1]) + b"h" + bytes([level - 1]) + b"\x86\x94"
    body += b"}h?K\x01s."  # a dict keyed by the last level: loading it hashes 2^63 tuples
    return write(out / "laughs.pkl", b"\x80\x04" + body)


@malicious("pickle_deeply_nested_tuples")
def _deep(out: Path) -> Path:
    # a dict keyed by a tuple nested 200,000 deep: hashing the key overflows the C stack
    return write(out / "deep.pkl", b"\x80\x02}N" + b"\x85" * 200_000 + b"K\x01s.")


@malicious("npz_deflate_bomb")
def _npz_bomb(out: Path) -> Path:
    buf = io.BytesIO()
    header = b"{'descr': '|u1', 'fortran_order': False, 'shape': (4294967296,), }"
    with (zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z,
          z.open("zeros.npy", "w", force_zip64=True) as member):
        member.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", 118) + header.ljust(117) + b"\n")
        chunk = b"\x00" * (1 << 24)
        for _ in range(64):
            member.write(chunk)
    return write(out / "bomb.npz", buf.getvalue())


# == benign files written by the real libraries ===============================================
def _torch_model() -> object:
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3),
        torch.nn.BatchNorm2d(2),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 4),
        torch.nn.LayerNorm(4),
        torch.nn.Embedding(5, 4),
    )


def _torch_save(out: Path, name: str, obj: object, **kwargs: object) -> Path:
    import torch

    path = out / name
    torch.save(obj, path, **kwargs)  # type: ignore[arg-type]
    return path


@benign("torch_state_dict")
def _b_state(out: Path) -> Path:
    return _torch_save(out, "state.pt", _torch_model().state_dict())  # type: ignore[attr-defined]


@benign("torch_state_dict_legacy_format")
def _b_legacy(out: Path) -> Path:
    model = _torch_model()
    return _torch_save(
        out,
        "legacy.pt",
        model.state_dict(),  # type: ignore[attr-defined]
        _use_new_zipfile_serialization=False,
    )


def _optimizer(kind: str) -> dict[str, object]:
    import torch

    model = torch.nn.Linear(3, 2)
    opt = {
        "adam": lambda: torch.optim.Adam(model.parameters(), lr=1e-3),
        "sgd": lambda: torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
        "adamw": lambda: torch.optim.AdamW(model.parameters()),
    }[kind]()
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3}


for _opt in ("adam", "sgd", "adamw"):

    def _make_opt(out: Path, kind: str = _opt) -> Path:
        return _torch_save(out, f"ckpt_{kind}.pt", _optimizer(kind))

    benign(f"torch_optimizer_state_{_opt}")(_make_opt)


@benign("torch_optimizer_state_legacy_format")
def _b_opt_legacy(out: Path) -> Path:
    return _torch_save(
        out, "ckpt_legacy.pt", _optimizer("adam"), _use_new_zipfile_serialization=False
    )


@benign("torch_lr_scheduler_and_scaler")
def _b_sched(out: Path) -> Path:
    import torch

    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2)
    return _torch_save(out, "sched.pt", {"scheduler": sched.state_dict(), "lr": [0.1, 0.01]})


@benign("torch_dtypes_and_parameters")
def _b_dtypes(out: Path) -> Path:
    import torch

    tensors = {
        str(dt): torch.zeros(3, dtype=dt)
        for dt in (
            torch.float16,
            torch.bfloat16,
            torch.int8,
            torch.uint8,
            torch.bool,
            torch.complex64,
            torch.int64,
            torch.float64,
        )
    }
    extras = {
        "param": torch.nn.Parameter(torch.ones(2)),
        "device": torch.device("cpu"),
        "dtype": torch.float32,
        "size": torch.Size([2, 3]),
    }
    return _torch_save(out, "dtypes.pt", {**tensors, **extras})


@benign("torch_sparse_and_quantized")
def _b_sparse(out: Path) -> Path:
    import torch

    sparse = torch.eye(3).to_sparse()
    quant = torch.quantize_per_tensor(torch.arange(4.0), 0.1, 0, torch.qint8)
    return _torch_save(out, "sparse.pt", {"sparse": sparse, "q": quant})


@benign("torchscript_archive")
def _b_script(out: Path) -> Path:
    import torch

    path = out / "scripted.pt"
    torch.jit.script(torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU())).save(str(path))
    return path


@benign("torch_tensor_list_protocol_4")
def _b_list(out: Path) -> Path:
    import torch

    return _torch_save(out, "list.pt", [torch.randn(2, 2), (torch.ones(1), 3)], pickle_protocol=4)


@functools.lru_cache(maxsize=1)
def _sk_models() -> dict[str, object]:
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from sklearn.svm import SVC

    rng = np.random.RandomState(0)
    x, y = rng.randn(60, 4), np.arange(60) % 2
    cat = np.c_[x, rng.randint(0, 3, 60)]
    text = ["alpha beta gamma", "beta gamma delta", "gamma delta epsilon"] * 3
    ct = ColumnTransformer([("num", StandardScaler(), [0, 1]), ("cat", OneHotEncoder(), [4])])
    return {
        "logreg": LogisticRegression().fit(x, y),
        "forest": RandomForestClassifier(n_estimators=5, random_state=0).fit(x, y),
        "pipeline_svc": Pipeline([("s", StandardScaler()), ("svc", SVC())]).fit(x, y),
        "gboost": GradientBoostingClassifier(n_estimators=5).fit(x, y),
        "hist_gboost": HistGradientBoostingClassifier(max_iter=5).fit(x, y),
        "tfidf": TfidfVectorizer().fit(text),
        "column_transformer": Pipeline([("ct", ct), ("lr", LogisticRegression())]).fit(cat, y),
    }


for _sk in ("logreg", "forest", "hist_gboost", "tfidf"):

    def _make_sk_pickle(out: Path, key: str = _sk) -> Path:
        return write(out / f"{key}.pkl", pickle.dumps(_sk_models()[key], protocol=5))

    benign(f"sklearn_pickle_{_sk}")(_make_sk_pickle)

for _sk, _compress in (
    ("pipeline_svc", 0),
    ("gboost", 3),
    ("column_transformer", ("gzip", 3)),
    ("forest", ("bz2", 3)),
    ("logreg", ("xz", 3)),
    ("tfidf", ("lzma", 3)),
):

    def _make_sk_joblib(out: Path, key: str = _sk, compress: object = _compress) -> Path:
        import joblib

        path = out / f"{key}.joblib"
        joblib.dump(_sk_models()[key], path, compress=compress)  # type: ignore[arg-type]
        return path

    _tag = _compress if isinstance(_compress, int) else _compress[0]
    benign(f"sklearn_joblib_{_sk}_compress_{_tag}")(_make_sk_joblib)


@benign("joblib_numpy_arrays_inline")
def _b_joblib_arrays(out: Path) -> Path:
    import joblib
    import numpy as np

    path = out / "arrays.joblib"
    joblib.dump(
        {
            "a": np.arange(1000.0),
            "b": np.ones((3, 3), dtype="int8"),
            "s": np.array(["x", "yz"]),
            "o": np.array([1, "two"], dtype=object),
        },
        path,
    )
    return path


@benign("numpy_npy_float")
def _b_npy(out: Path) -> Path:
    return write(out / "a.npy", _npy_float())


@benign("numpy_npy_structured")
def _b_npy_struct(out: Path) -> Path:
    import numpy as np

    path = out / "s.npy"
    np.save(path, np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8", (2,))]))
    return path


@benign("numpy_npz_and_compressed")
def _b_npz(out: Path) -> Path:
    import numpy as np

    folder = out / "npz"
    folder.mkdir()
    np.savez(folder / "plain.npz", a=np.arange(5), b=np.eye(2))
    np.savez_compressed(folder / "small.npz", a=np.arange(500))
    return folder


@benign("numpy_pickle_of_arrays")
def _b_np_pickle(out: Path) -> Path:
    import numpy as np

    data = {
        "a": np.arange(4, dtype="float32"),
        "rng": np.random.default_rng(0),
        "legacy_rng": np.random.RandomState(1),
        "scalar": np.float64(2.5),
    }
    return write(out / "np.pkl", pickle.dumps(data, protocol=2))


@benign("safetensors_torch_and_numpy")
def _b_safetensors(out: Path) -> Path:
    import numpy as np
    import torch
    from safetensors.numpy import save_file as save_np
    from safetensors.torch import save_file as save_torch

    folder = out / "st"
    folder.mkdir()
    save_torch(
        {"w": torch.randn(3, 4), "b": torch.zeros(4, dtype=torch.bfloat16)},
        str(folder / "model.safetensors"),
        metadata={"format": "pt"},
    )
    save_np({"x": np.arange(7, dtype=np.int16)}, str(folder / "np.safetensors"))
    return folder


@benign("h5py_datasets_and_keras_config")
def _b_h5(out: Path) -> Path:
    import h5py
    import numpy as np

    folder = out / "h5"
    folder.mkdir()
    with h5py.File(folder / "data.h5", "w") as f:
        f.create_dataset("x", data=np.arange(10.0))
        f["x"].attrs["unit"] = "m"
    config = {
        "class_name": "Sequential",
        "config": {
            "name": "seq",
            "layers": [
                {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 4]}},
                {"class_name": "Dense", "config": {"units": 2, "activation": "relu"}},
            ],
        },
    }
    with h5py.File(folder / "keras_model.h5", "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        f.attrs["keras_version"] = "2.15.0"
        f.create_group("model_weights").create_dataset("dense/kernel", data=np.ones((4, 2)))
    return folder


@benign("keras_v3_archive_config")
def _b_keras(out: Path) -> Path:
    return write(out / "model.keras", _keras_zip([_dense("a"), _dense("b")]))


@benign("onnx_model_and_external_data")
def _b_onnx(out: Path) -> Path:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder = out / "onnx"
    folder.mkdir()
    weight = numpy_helper.from_array(np.ones((64, 64), dtype=np.float32), name="w")
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])],
        initializer=[weight],
    )
    model = helper.make_model(graph)
    onnx.save_model(model, str(folder / "inline.onnx"))
    onnx.save_model(
        model,
        str(folder / "external.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    return folder


@benign("plain_python_data_all_protocols")
def _b_plain(out: Path) -> Path:
    import collections
    import datetime

    folder = out / "plain"
    folder.mkdir()
    value = {
        "a": [1, 2.5, "x", b"y", None, True],
        "t": (1, 2),
        "s": {3},
        "f": frozenset({4}),
        "od": collections.OrderedDict(k=1),
        "dt": datetime.date(2024, 1, 1),
    }
    for proto in range(6):
        (folder / f"p{proto}.pkl").write_bytes(pickle.dumps(value, protocol=proto))
    return folder


# -- issue 16: the false positives of real ecosystems --------------------------------------------
@benign("pandas_to_pickle_plain_gzip_bz2")
def _b_pandas(out: Path) -> Path:
    import numpy as np
    import pandas as pd

    folder = out / "pandas"
    folder.mkdir()
    frame = pd.DataFrame({
        "cat": pd.Categorical(["a", "b", "a"]), "period": pd.period_range("2024", periods=3),
        "interval": pd.interval_range(0, 3), "ts": pd.date_range("2024", periods=3, tz="UTC"),
        "v": np.arange(3.0)})
    series = pd.Series([1.0, 2.0], index=pd.date_range("2024", periods=2, tz="Europe/Paris"))
    multi = pd.DataFrame({"v": [1, 2]}, index=pd.MultiIndex.from_tuples([("a", 1), ("b", 2)]))
    for name, obj in (("frame", frame), ("series_tz", series), ("multi", multi)):
        for compression in (None, "gzip", "bz2"):
            pd.to_pickle(obj, folder / f"{name}.{compression}.pkl", compression=compression)
    return folder


@benign("xgboost_lightgbm_sklearn_api_pickled_and_joblib")
def _b_boosters(out: Path) -> Path:
    import joblib
    import lightgbm
    import numpy as np
    import xgboost

    folder = out / "boosters"
    folder.mkdir()
    x, y = np.random.RandomState(0).rand(40, 3), np.arange(40) % 2
    models = {"xgb": xgboost.XGBClassifier(n_estimators=3).fit(x, y),
              "lgbm": lightgbm.LGBMClassifier(n_estimators=3, verbose=-1).fit(x, y)}
    for name, model in models.items():
        (folder / f"{name}.pkl").write_bytes(pickle.dumps(model))
        joblib.dump(model, folder / f"{name}.joblib")
        joblib.dump(model, folder / f"{name}.lz4.joblib", compress="lz4")
    return folder


@benign("sklearn_gradient_boosting_loss_helpers_gridsearch_functiontransformer")
def _b_sk_helpers(out: Path) -> Path:
    import numpy as np
    from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.preprocessing import FunctionTransformer

    folder = out / "sk"
    folder.mkdir()
    x, y = np.random.RandomState(0).rand(40, 3), np.arange(40) % 3
    models = {
        "gb": GradientBoostingClassifier(n_estimators=3).fit(x, y),
        "hgb": HistGradientBoostingRegressor(max_iter=3, loss="absolute_error").fit(x, y),
        "grid": GridSearchCV(LogisticRegression(), {"C": [1.0, 2.0]}, cv=2).fit(x, y),
        "log1p": FunctionTransformer(np.log1p).fit(x),
    }
    for name, model in models.items():
        (folder / f"{name}.pkl").write_bytes(pickle.dumps(model))
    return folder


@benign("uuid_and_array_array_protocol_2")
def _b_uuid_array(out: Path) -> Path:
    import array
    import uuid

    return write(out / "values.pkl",
                 pickle.dumps({"id": uuid.UUID(int=7), "a": array.array("d", [1.0])}, protocol=2))


@benign("csv_text_starting_with_pickle_opcodes")
def _b_csv(out: Path) -> Path:
    folder = out / "csv"
    folder.mkdir()
    (folder / "cities.csv").write_bytes(b"city\nParis\nRome\n")
    (folder / "col.csv").write_bytes(b"col\n1\n2\n")
    (folder / "paren.txt").write_bytes(b"(a, b)\nI think so.\n")
    return folder


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def main(out: Path) -> None:
    for group, registry in (("malicious", MALICIOUS), ("benign", BENIGN)):
        for name, make in registry.items():
            target = out / group / name
            target.mkdir(parents=True, exist_ok=True)
            make(target)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
