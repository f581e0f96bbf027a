"""The opcode analyzer, the policy, the limits and picklescan's second opinion, one by one."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import zipfile
from pathlib import Path

from custody.validators.findings import Finding, Severity
from custody.validators.interface import ScanLimits, ScanOptions
from custody.validators.models.content import scan_content
from custody.validators.models.context import Ctx
from custody.validators.models.pickle_scan import scan_pickle_bytes
from custody.validators.models.policy import classify_global
from custody.validators.scan import scan_files

CMD = "echo custody-harmless"


class _Reduce:
    def __init__(self, fn: object, *args: object) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.fn, self.args


def evil(proto: int = 2) -> bytes:
    return pickle.dumps(_Reduce(os.system, CMD), protocol=proto)


def scan(data: bytes, **limits: float) -> list[Finding]:
    options = ScanOptions(limits=ScanLimits(**limits))  # type: ignore[arg-type]
    return scan_content(io.BytesIO(data), len(data), Ctx.root(options, "sample"))


def rules(findings: list[Finding]) -> set[str]:
    return {f.rule_id for f in findings}


def test_policy_levels() -> None:
    assert classify_global("collections", "OrderedDict") == (None, "")
    assert classify_global("torch._utils", "_rebuild_tensor_v2")[0] is None
    assert classify_global("sklearn.linear_model._logistic", "LogisticRegression")[0] is None
    assert classify_global("sklearn.utils._testing", "assert_run_python_script")[0] is not None
    assert classify_global("os", "system")[0] is Severity.CRITICAL
    assert classify_global("subprocess.foo", "bar")[0] is Severity.CRITICAL  # submodules too
    assert classify_global("random", "_os.system")[0] is Severity.CRITICAL
    assert classify_global("__builtin__", "getattr")[0] is Severity.CRITICAL
    assert classify_global("builtins", "set")[0] is None
    assert classify_global("mypackage.models", "Net")[0] is Severity.MEDIUM
    assert classify_global("mypackage.models", "Net", frozenset({"mypackage.models.Net"})) == (
        None,
        "",
    )


def test_clean_pickle_has_no_findings() -> None:
    for proto in range(6):
        assert (
            scan(pickle.dumps({"a": [1, 2.0, "x", b"y"], "b": (None, True)}, protocol=proto)) == []
        )


def test_truncated_pickle_reports_globals_and_the_break() -> None:
    data = evil(2)[:-3]
    findings = scan(data)
    assert {"pickle.global.dangerous", "pickle.malformed"} <= rules(findings)
    broken = next(f for f in findings if f.rule_id == "pickle.malformed")
    assert broken.severity is Severity.HIGH
    assert "posix.system" in broken.message or "os.system" in broken.message


def test_memo_get_of_missing_key_is_a_break() -> None:
    findings = scan(b"\x80\x02h\x05.")
    assert "pickle.malformed" in rules(findings)


def test_unresolvable_stack_global_is_high() -> None:
    # STACK_GLOBAL whose module is an integer, not a string.
    findings = scan(b"\x80\x04K\x01\x8c\x06system\x93)R.")
    assert "pickle.global.unresolved" in rules(findings)


def test_opcode_limit_keeps_what_was_found() -> None:
    data = b"\x80\x02" + evil(2)[2:-1] + b"0" + b"N0" * 200_000 + b"N."
    findings = scan(data, max_pickle_opcodes=50_000)
    assert {"limit.opcodes", "pickle.global.dangerous"} <= rules(findings)


def test_large_byte_strings_are_stepped_over() -> None:
    blob = os.urandom(3 << 20)
    findings = scan(pickle.dumps({"blob": blob, "x": 1}, protocol=4))
    assert findings == []


def test_decompression_ratio_limit() -> None:
    bomb = gzip.compress(pickle.dumps(b"\x00" * (20 << 20), protocol=4))
    findings = scan(bomb, max_compression_ratio=50.0)
    assert "limit.ratio" in rules(findings)


def test_decompressed_bytes_limit() -> None:
    data = gzip.compress(pickle.dumps(os.urandom(4 << 20), protocol=4))
    findings = scan(data, max_decompressed_bytes=1 << 20)
    assert "limit.decompressed" in rules(findings)


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, payload in members.items():
            z.writestr(name, payload)
    return buf.getvalue()


def test_member_limit() -> None:
    data = _zip({f"m{i}": b"x" for i in range(50)})
    assert "limit.members" in rules(scan(data, max_archive_members=10))


def test_nesting_depth_limit() -> None:
    data = evil()
    for level in range(6):
        data = _zip({f"level{level}.zip": data})
    findings = scan(data, max_nesting_depth=3)
    assert "limit.depth" in rules(findings)


def test_unknown_binary_is_info_only(tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    path.write_bytes(b"\x01\x02\x03\xff" * 100)
    report = scan_files("x", [(path, "blob.bin", path.stat().st_size)])
    assert [f.rule_id for f in report.findings] == ["format.unknown"]
    assert not report.refused


def test_text_file_is_not_scanned(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("import os\nprint('hello')\n")
    report = scan_files("x", [(path, "notes.txt", path.stat().st_size)])
    assert report.findings == ()


def test_protocol0_pickle_disguised_as_text_is_found(tmp_path: Path) -> None:
    path = tmp_path / "readme.txt"
    path.write_bytes(b"N0(S'" + CMD.encode() + b"'\nios\nsystem\n.")
    report = scan_files("x", [(path, "readme.txt", path.stat().st_size)])
    assert report.max_severity is Severity.CRITICAL


def test_second_opinion_speaks_when_the_user_allowlists_a_dangerous_global() -> None:
    options = ScanOptions(extra_safe_globals=frozenset({"posix.system", "os.system"}))
    data = evil(2)
    findings = scan_content(io.BytesIO(data), len(data), Ctx.root(options, "sample"))
    assert "picklescan.dangerous" in rules(findings)
    assert "pickle.global.dangerous" not in rules(findings)


def test_nested_payload_findings_say_where() -> None:
    outer = pickle.dumps(_Reduce(pickle.loads, evil(4)), protocol=4)
    findings = scan_pickle_bytes(outer, Ctx.root(ScanOptions(), "x")).findings
    nested = [f for f in findings if "nested" in f.location]
    assert nested and nested[0].severity is Severity.CRITICAL


def test_safetensors_header_lies_are_found(tmp_path: Path) -> None:
    import json
    import struct

    header = json.dumps(
        {
            "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
            "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
        }
    ).encode()
    data = struct.pack("<Q", len(header)) + header + b"\x00" * 12
    assert "safetensors.header" in rules(scan(data))
    bogus = struct.pack("<Q", 1 << 20) + b"{" + b" " * 20
    assert any(f.severity is Severity.HIGH for f in scan(bogus))
