"""Judge one pickle's imports and what its calls would make the loader allocate.

Imports are judged by the policy (``policy.classify_global``) with the profiles in force. Two
wrappers are judged through their arguments: ``builtins.getattr(C, "name")`` of an allowlisted
class is how protocols 0-3 pickle a bound class method (``zoneinfo.ZoneInfo._unpickle``) and is
judged as ``C.name``; ``functools.partial(f, ...)`` of an allowlisted pure function is harmless.
Any other use of either stays critical.

Allocation bombs: ``bytes(n)`` / ``bytearray(n)``, a container built from ``range(n)``, an
``ndarray`` of a huge shape, and a declared byte-string length beyond the end of the stream
(the unpickler asks the file for that many bytes) are findings at high when they exceed
``ScanLimits.max_allocation``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

from custody.validators.findings import Severity
from custody.validators.interface import ScanOptions
from custody.validators.models.pickle_values import GlobalRef, Obj, PickleResult
from custody.validators.models.policy import classify_global

_GETATTR = frozenset({"builtins.getattr", "__builtin__.getattr"})
_PARTIAL = frozenset({"functools.partial", "_functools.partial"})
_BYTES = frozenset({"builtins.bytes", "builtins.bytearray", "__builtin__.bytes",
                    "__builtin__.bytearray", "__builtin__.str"})
_FROM_ITERABLE = frozenset({
    f"{m}.{n}" for m in ("builtins", "__builtin__")
    for n in ("bytes", "bytearray", "list", "tuple", "set", "frozenset", "dict", "str")
} | {"collections.deque", "collections.Counter", "collections.OrderedDict", "array.array"})
_RANGE = frozenset({"builtins.range", "__builtin__.xrange", "__builtin__.range"})
_ARRAYS = frozenset({"numpy.ndarray", "numpy._core.multiarray._reconstruct",
                     "numpy.core.multiarray._reconstruct"})
_RECONSTRUCTOR = frozenset({"copyreg._reconstructor", "copy_reg._reconstructor"})
_WATCHED = _BYTES | _FROM_ITERABLE | _ARRAYS | _RECONSTRUCTOR
_LENGTH_BREAK = re.compile(r"truncated: byte string of (\d+) bytes")


@dataclass(frozen=True)
class Verdict:
    ref: GlobalRef
    severity: Severity
    reason: str


def judge_globals(
    result: PickleResult, options: ScanOptions, skip: frozenset[str] = frozenset()
) -> Iterator[Verdict]:
    """One verdict per distinct import that is not safe (``skip``: names a context admits)."""
    seen: set[str] = set()
    for ref in result.globals:
        qualified = ref.qualified
        if qualified in seen or ref.module.startswith("<") or qualified in skip:
            continue
        seen.add(qualified)
        if qualified in _GETATTR and _wrapped_ok(result, ref, options, _getattr_target):
            continue
        if qualified in _PARTIAL and _wrapped_ok(result, ref, options, _partial_target):
            continue
        severity, reason = _safe_or_not(ref.module, ref.name, options)
        if severity is not None:
            yield Verdict(ref, severity, reason)


def _safe_or_not(module: str, name: str, options: ScanOptions) -> tuple[Severity | None, str]:
    return classify_global(module, name, options.extra_safe_globals, options.pickle_profiles)


def _getattr_target(call: Obj) -> tuple[str, str] | None:
    args = call.args
    if (isinstance(args, tuple) and len(args) == 2 and isinstance(args[0], GlobalRef)
            and isinstance(args[1], str) and args[1]):
        return args[0].module, f"{args[0].name}.{args[1]}"
    return None


def _partial_target(call: Obj) -> tuple[str, str] | None:
    args = call.args
    if isinstance(args, tuple) and args and isinstance(args[0], GlobalRef):
        state = call.state
        if isinstance(state, tuple) and state and state[0] is not args[0]:
            return None  # __setstate__ would swap in another function
        return args[0].module, args[0].name
    return None


def _wrapped_ok(result: PickleResult, ref: GlobalRef, options: ScanOptions, target: object) -> bool:
    uses = [c for c in result.calls if c.func is ref]
    if not uses:
        return False
    for call in uses:
        found = target(call)  # type: ignore[operator]
        if found is None or _safe_or_not(found[0], found[1], options)[0] is not None:
            return False
    return True


# -- allocation ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Allocation:
    pos: int
    nbytes: int
    what: str


def allocations(result: PickleResult, limit: int) -> Iterator[Allocation]:
    """Calls that would make the loader allocate more than ``limit`` bytes."""
    watched = {id(g): g.qualified for g in result.globals if g.qualified in _WATCHED}
    if not watched:
        return
    for call in result.calls:
        name = watched.get(id(call.func))
        if name is None:
            continue
        args = call.args
        first = args[0] if isinstance(args, tuple) and args else None
        if name in _BYTES and isinstance(first, int) and not isinstance(first, bool):
            if first > limit:
                yield Allocation(call.pos, first, f"{name}({first})")
        elif name in _FROM_ITERABLE and _range_len(first) * 8 > limit:
            yield Allocation(call.pos, _range_len(first) * 8, f"{name}(range({_range_len(first)}))")
        elif name in _ARRAYS:
            count = _shape_count(args[1] if name != "numpy.ndarray" and isinstance(args, tuple)
                                 and len(args) > 1 else first)
            if count > limit:
                yield Allocation(call.pos, count, f"{name} of {count} elements")
        elif name in _RECONSTRUCTOR and isinstance(args, tuple) and len(args) == 3:
            base, state = args[1], args[2]
            if (isinstance(base, GlobalRef) and base.qualified in _BYTES
                    and isinstance(state, int) and state > limit):
                yield Allocation(call.pos, state, f"{base.qualified}({state}) via {name}")


def _range_len(value: object) -> int:
    if not (isinstance(value, Obj) and isinstance(value.func, GlobalRef)
            and value.func.qualified in _RANGE and isinstance(value.args, tuple)):
        return 0
    bounds = value.args
    if not bounds or not all(isinstance(b, int) for b in bounds) or len(bounds) > 3:
        return 0
    try:
        return len(range(*bounds))
    except (ValueError, OverflowError):
        return 2**63


def _shape_count(shape: object) -> int:
    if isinstance(shape, int) and not isinstance(shape, bool):
        return shape
    if isinstance(shape, tuple) and shape and all(isinstance(d, int) for d in shape):
        return math.prod(max(d, 0) for d in shape)
    return 0


def declared_length_bomb(result: PickleResult, limit: int) -> int | None:
    """The length a byte string declared beyond the end of the stream, when above ``limit``."""
    if result.error is None:
        return None
    match = _LENGTH_BREAK.match(str(result.error))
    if match is None:
        return None
    n = int(match.group(1))
    return n if n > limit else None


def executed_before_break(result: PickleResult) -> bool:
    """Whether an unpickler would have called anything before the stream broke."""
    return bool(result.calls) or bool(result.persistent_ids)
