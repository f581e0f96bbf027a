"""Differential test: the fast opcode path and the general pickle machine agree on every input.

``pickle_fast.run_seekable`` re-implements the common opcodes inline for speed; the general
loop in ``PickleMachine.run`` dispatches every opcode to its handler. Both must produce the same
globals, calls, persistent ids, stop position, opcode count and break (message and position), on
real pickles of every protocol, on those pickles truncated or with bytes changed, and on random
opcode soup. Hypothesis drives the inputs; a disagreement is a scanner bug whichever side is
right, because the fast path is what large checkpoints take.
"""

from __future__ import annotations

import io
import math
import pickle
import struct
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from custody.validators.interface import ScanLimits
from custody.validators.models.context import Budget
from custody.validators.models.opcodes import BY_CODE
from custody.validators.models.pickle_values import GlobalRef, Obj, Persistent, PickleResult
from custody.validators.models.pickle_vm import PickleMachine


def _shape(value: object, depth: int = 0) -> object:
    """A comparable description of a symbolic value (identity-free, bounded depth)."""
    if depth > 6:
        return "…"
    if isinstance(value, GlobalRef):
        return ("global", value.module, value.name, value.pos, value.opcode)
    if isinstance(value, Obj):
        return ("obj", _shape(value.func, depth + 1), value.pos, value.opcode)
    if isinstance(value, Persistent):
        return ("pid", _shape(value.pid, depth + 1))
    if isinstance(value, list | tuple):
        return (type(value).__name__, tuple(_shape(v, depth + 1) for v in value[:20]))
    if isinstance(value, float) and math.isnan(value):
        return "nan"  # NaN != NaN: compare it by name
    if isinstance(value, str | bytes | int | float | bool) or value is None:
        return value
    return type(value).__name__


def _summary(res: PickleResult) -> dict[str, Any]:
    return {
        "start": res.start,
        "end": res.end,
        "ops": res.ops,
        "proto": res.proto,
        "stopped": res.stopped,
        "error": None if res.error is None else (str(res.error), getattr(res.error, "pos", None)),
        "globals": [_shape(g) for g in res.globals],
        "calls": [_shape(c) for c in res.calls],
        "pids": [_shape(p) for p in res.persistent_ids],
        "anomalies": [(a.rule, a.pos) for a in res.anomalies],
        "root": _shape(res.root),
    }


def _fast(data: bytes) -> dict[str, Any]:
    stream = io.BytesIO(data)
    machine = PickleMachine(stream, Budget.start(ScanLimits()), size=len(data))
    return _summary(machine.run())


def _general(data: bytes) -> dict[str, Any]:
    # Handing the first opcode byte to run() takes the general loop, with the same size known.
    stream = io.BytesIO(data)
    first = stream.read(1)
    machine = PickleMachine(stream, Budget.start(ScanLimits()), size=len(data))
    return _summary(machine.run(first))


def _agree(data: bytes) -> None:
    if not data:
        return
    fast, general = _fast(data), _general(data)
    assert fast == general, (data[:200], fast, general)


# Values that real pickles are made of, including imports (classes) and reductions.
_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False), st.text(max_size=40), st.binary(max_size=300),
    st.sampled_from([complex(1, 2), range(3), frozenset({1, 2}), bytearray(b"ab"),
                     dict, slice(1, 5), struct.Struct]),
)
_values = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=8),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=8), inner, max_size=6),
        st.sets(st.integers(), max_size=5),
    ),
    max_leaves=30,
)
_protocols = st.integers(min_value=0, max_value=pickle.HIGHEST_PROTOCOL)

_SETTINGS = settings(max_examples=300, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@_SETTINGS
@given(value=_values, protocol=_protocols)
def test_real_pickles_take_the_same_path(value: object, protocol: int) -> None:
    _agree(pickle.dumps(value, protocol=protocol))


@_SETTINGS
@given(value=_values, protocol=_protocols, cut=st.integers(min_value=1, max_value=10_000))
def test_truncated_pickles_break_at_the_same_place(value: object, protocol: int, cut: int) -> None:
    data = pickle.dumps(value, protocol=protocol)
    _agree(data[: max(1, len(data) - cut % len(data))])


@_SETTINGS
@given(value=_values, protocol=_protocols,
       edits=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1,
                      max_size=4))
def test_mutated_pickles_are_judged_the_same(value: object, protocol: int,
                                             edits: list[tuple[int, int]]) -> None:
    data = bytearray(pickle.dumps(value, protocol=protocol))
    for where, byte in edits:
        data[where % len(data)] = byte
    _agree(bytes(data))


_OPCODES = sorted(BY_CODE)


@_SETTINGS
@given(soup=st.lists(st.tuples(st.sampled_from(_OPCODES), st.binary(max_size=9)), min_size=1,
                     max_size=40))
def test_opcode_soup_is_judged_the_same(soup: list[tuple[int, bytes]]) -> None:
    _agree(b"".join(bytes([code]) + tail for code, tail in soup))


def test_a_reduce_of_an_import_is_seen_by_both_paths() -> None:
    # A fixed, readable example beside the generated ones: os.system via STACK_GLOBAL + REDUCE.
    data = (b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94\x93\x94\x8c\x02id\x94\x85\x94R\x94.")
    fast, general = _fast(data), _general(data)
    assert fast == general
    assert fast["globals"][0][1:3] == ("os", "system")
    assert fast["calls"] and fast["stopped"]
