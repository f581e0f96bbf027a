"""Property tests: benign pickles are never critical; mutated files never crash or hang us."""

from __future__ import annotations

import io
import os
import pickle
import zipfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from custody.validators.findings import Severity
from custody.validators.interface import ScanLimits, ScanOptions
from custody.validators.models.content import scan_content
from custody.validators.models.context import Ctx

_LIMITS = ScanLimits(
    max_pickle_opcodes=200_000,
    max_decompressed_bytes=16 << 20,
    max_archive_members=200,
    max_seconds=30.0,
)
_OPTIONS = ScanOptions(limits=_LIMITS)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.binary(max_size=40),
    st.complex_numbers(allow_nan=False),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=8), inner, max_size=5),
        st.frozensets(st.integers(), max_size=4),
        st.sets(st.text(max_size=4), max_size=4),
    ),
    max_leaves=30,
)


def _scan(data: bytes) -> list[object]:
    return list(scan_content(io.BytesIO(data), len(data), Ctx.root(_OPTIONS, "fuzz")))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=values, proto=st.integers(0, 5))
def test_benign_pickles_are_never_critical(value: object, proto: int) -> None:
    findings = scan_content(
        io.BytesIO(data := pickle.dumps(value, protocol=proto)),
        len(data),
        Ctx.root(_OPTIONS, "fuzz"),
    )
    assert all(f.severity < Severity.MEDIUM for f in findings), [f.to_json() for f in findings]


class _Reduce:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, ("echo custody-harmless",)


def _seeds() -> list[bytes]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"w": [1.0, 2.0]}, protocol=2))
        z.writestr("archive/data/0", b"\x00" * 16)
    return [
        pickle.dumps({"a": [1, "x", b"y"], "r": _Reduce()}, protocol=p) for p in (0, 2, 4, 5)
    ] + [buf.getvalue()]


mutation = st.tuples(st.integers(0, 10_000), st.integers(0, 255), st.sampled_from("fid"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(_seeds()), edits=st.lists(mutation, min_size=1, max_size=6))
def test_mutations_never_crash_or_hang(seed: bytes, edits: list[tuple[int, int, str]]) -> None:
    data = bytearray(seed)
    for where, byte, kind in edits:
        at = where % (len(data) + 1)
        if kind == "f" and at < len(data):
            data[at] ^= byte or 1
        elif kind == "i":
            data[at:at] = bytes([byte])
        elif kind == "d" and at < len(data):
            del data[at]
    _scan(bytes(data))  # must return normally: every problem is a finding


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=600))
def test_random_bytes_never_crash(data: bytes) -> None:
    _scan(data)
