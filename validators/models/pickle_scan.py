"""Judge every pickle in a byte stream: globals, calls, anomalies, breaks and nested payloads.

A stream may hold several pickles back to back (torch legacy files stack five; an attacker can
append more), joblib arrays inline between opcodes, and ``pickle.loads(b"...")`` payloads inside
a pickle. Each pickle is run on :class:`PickleMachine`; every import is judged by the policy;
every call of a pickle loader on a constant byte string is scanned again, one level deeper.
A pickle that breaks is reported with what it imported before the break, and the break is a
finding of its own (loaders act on the opcodes before a break: the 'nullifAI' technique).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import BinaryIO

from custody.errors import LimitHit, PickleBreak
from custody.validators.findings import Finding, Severity
from custody.validators.models import pickle_judge, pickle_shape
from custody.validators.models.allowlist import is_torchscript_allowed
from custody.validators.models.context import Ctx
from custody.validators.models.inline_data import (
    TORCH_MAGIC,
    is_joblib_wrapper,
    joblib_array_bytes,
    skip_joblib_array,
    skip_torch_storages,
    torch_storage_sizes,
)
from custody.validators.models.opcodes import BytesRef
from custody.validators.models.pickle_values import GlobalRef, Obj, PickleResult
from custody.validators.models.pickle_vm import PickleMachine
from custody.validators.models.policy import classify_global
from custody.validators.models.render import short_repr as render

_LOADERS = frozenset(
    {
        "pickle.loads",
        "_pickle.loads",
        "pickle._loads",
        "cPickle.loads",
        "dill.loads",
        "dill._dill.loads",
        "cloudpickle.loads",
        "joblib.numpy_pickle.loads",
        "numpy.loads",
        "torch.serialization._load_from_bytes",
        "torch.storage._load_from_bytes",
    }
)
# every name part of a loader's qualified name, however it is split into module and name
_LOADER_NAMES = frozenset(q[i + 1 :] for q in _LOADERS for i, c in enumerate(q) if c == ".")
_MAX_NESTED_BYTES = 64 << 20
_TORCH_REBUILDS = frozenset(
    f"torch._utils.{n}"
    for n in ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_qtensor")
)


@dataclass
class StreamScan:
    findings: list[Finding] = field(default_factory=list)
    segments: list[PickleResult] = field(default_factory=list)

    @property
    def persistent_ids(self) -> list[object]:
        return [pid for seg in self.segments for pid in seg.persistent_ids]


def scan_pickle_bytes(data: bytes, ctx: Ctx) -> StreamScan:
    return scan_pickle_stream(io.BytesIO(data), ctx, size=len(data))


def scan_pickle_stream(
    stream: BinaryIO, ctx: Ctx, size: int | None = None, *, tolerant: bool = False
) -> StreamScan:
    """Scan all pickles from the stream's position to its end.

    ``size`` (the stream length) makes large byte strings and inline arrays skippable by
    seeking. ``tolerant`` is for data that a loader reads as raw bytes (a torch storage that
    happens to start like a pickle): only dangerous imports of a complete pickle are reported.
    """
    scanner = _StreamScanner(stream, ctx, size, tolerant)
    scanner.run()
    return scanner.out


def scan_one_pickle(
    stream: BinaryIO, ctx: Ctx, size: int | None = None
) -> tuple[PickleResult, list[Finding]]:
    """Scan exactly one pickle (up to its STOP) from the stream's position."""
    scanner = _StreamScanner(stream, ctx, size, tolerant=False)
    result = scanner._one(1, b"")
    return result, scanner.out.findings


class _StreamScanner:
    def __init__(self, stream: BinaryIO, ctx: Ctx, size: int | None, tolerant: bool) -> None:
        self.stream, self.ctx, self.size, self.tolerant = stream, ctx, size, tolerant
        self.out = StreamScan()

    def run(self) -> None:
        index = 0
        while True:
            first = self.stream.read(1)
            if not first:
                return
            if self.size is not None:
                self.stream.seek(-1, 1)
                first = b""
            index += 1
            result = self._one(index, first)
            if result.error is not None:
                return
            if index == 1 and result.root == TORCH_MAGIC and not result.globals:
                self._torch_legacy()
                return

    def _one(self, index: int, first: bytes) -> PickleResult:
        machine = PickleMachine(
            self.stream, self.ctx.budget, size=self.size, build_hook=self._build_hook
        )
        try:
            result = machine.run(first)
        except LimitHit as hit:
            result = machine.result
            result.error = PickleBreak(str(hit), result.end)
            self.out.segments.append(result)
            self._judge(result, index, limited=True)
            self.out.findings.append(self.ctx.limit_finding(hit))
            return result
        self.out.segments.append(result)
        self._judge(result, index)
        refs = self.ctx.torch_refs
        if refs is not None:
            refs.persistent_ids.extend(result.persistent_ids)
            rebuild = {id(g) for g in result.globals if g.qualified in _TORCH_REBUILDS}
            if rebuild:
                refs.rebuilds.extend(c for c in result.calls if id(c.func) in rebuild)
        return result

    # -- joblib arrays inline -------------------------------------------------------------
    def _build_hook(self, obj: Obj, stream: BinaryIO) -> None:
        if not is_joblib_wrapper(obj):
            return
        nbytes, padded = joblib_array_bytes(obj)
        if nbytes is not None:
            skip_joblib_array(stream, nbytes, padded, self.size)
            return
        inner = PickleMachine(stream, self.ctx.budget, size=self.size)
        result = inner.run(b"")
        self.out.segments.append(result)
        self._judge(result, 0, label=f"object array at byte {obj.pos}")
        if result.error is not None:
            raise PickleBreak("the object array pickle inside the joblib stream broke", obj.pos)

    # -- torch legacy -----------------------------------------------------------------------
    def _torch_legacy(self) -> None:
        results = []
        for index in range(2, 6):
            result = self._one(index, self._first())
            if result.error is not None:
                return
            results.append(result)
        sizes = torch_storage_sizes(results[2].persistent_ids)
        try:
            skip_torch_storages(self.stream, results[3].root, sizes, self.size)
        except PickleBreak as exc:
            self.out.findings.append(
                self.ctx.finding(
                    "torch.legacy.storages",
                    Severity.MEDIUM,
                    f"legacy torch storages do not match their keys: {exc}",
                    at=f"byte {exc.pos}",
                )
            )
            return
        trailing = self.stream.read(1)
        if trailing:
            self.out.findings.append(
                self.ctx.finding(
                    "torch.legacy.trailing",
                    Severity.MEDIUM,
                    "data after the last legacy torch storage; scanned as pickles",
                    at=f"byte {self.stream.tell() - 1}",
                )
            )
            if self.size is not None:
                self.stream.seek(-1, 1)
            self._one(6, trailing if self.size is None else b"")

    def _first(self) -> bytes:
        if self.size is not None:
            return b""
        return self.stream.read(1)

    # -- judging ----------------------------------------------------------------------------
    def _judge(
        self, result: PickleResult, index: int, label: str = "", *, limited: bool = False
    ) -> None:
        where = label or (f"pickle #{index}" if index > 1 else "")
        if self.tolerant:
            self._judge_tolerant(result, where)
            return
        add = self.out.findings.append
        skip = frozenset(
            g.qualified for g in result.globals
            if self.ctx.torchscript and is_torchscript_allowed(g.module, g.name)
        )
        broke_idle = result.error is not None and not pickle_judge.executed_before_break(result)
        for verdict in pickle_judge.judge_globals(result, self.ctx.options, skip):
            if broke_idle and verdict.severity < Severity.CRITICAL:
                continue  # looked up, never called: the unpickler stops before using it
            add(self._global_finding(result, verdict.ref, verdict.severity, verdict.reason, where))
        self._resources(result, where)
        for anomaly in result.anomalies:
            add(
                self.ctx.finding(
                    anomaly.rule, Severity.HIGH, anomaly.message, at=_at(where, anomaly.pos)
                )
            )
        if result.error is not None and not limited:
            add(self._break_finding(result, index, where))
        self._nested(result, where)

    def _resources(self, result: PickleResult, where: str) -> None:
        limits = self.ctx.options.limits
        add = self.out.findings.append
        for bomb in pickle_judge.allocations(result, limits.max_allocation):
            add(self.ctx.finding(
                "limit.allocation", Severity.HIGH,
                f"{bomb.what} makes the loader allocate {bomb.nbytes} bytes or more (limit "
                f"{limits.max_allocation}): an allocation bomb", at=_at(where, bomb.pos)))
        declared = pickle_judge.declared_length_bomb(result, limits.max_allocation)
        if declared is not None:
            add(self.ctx.finding(
                "limit.allocation", Severity.HIGH,
                f"a byte string declares {declared} bytes that the stream does not hold; the "
                "unpickler asks its file for all of them at once (an allocation bomb)",
                at=_at(where, result.error.pos if result.error else 0)))
        if not result.stopped or not pickle_shape.needs_walk(result, limits):
            return
        shape = pickle_shape.measure([result.root], limits, self.ctx.budget)
        if shape.expansion > limits.max_pickle_expansion:
            add(self.ctx.finding(
                "limit.expansion", Severity.HIGH,
                f"shared references unfold to more than {limits.max_pickle_expansion} values "
                "(a memo-expansion 'billion laughs' pickle): hashing, printing or copying the "
                "loaded object does not finish", at=where))
        if shape.depth > limits.max_pickle_depth:
            add(self.ctx.finding(
                "limit.pickle_depth", Severity.HIGH,
                f"values nested more than {limits.max_pickle_depth} deep: hashing or walking "
                "the loaded object overflows the stack", at=where))

    def _judge_tolerant(self, result: PickleResult, where: str) -> None:
        if result.error is not None:
            return
        for ref in result.globals:
            severity, reason = classify_global(
                ref.module, ref.name, profiles=self.ctx.options.pickle_profiles
            )
            if severity is Severity.CRITICAL:
                self.out.findings.append(self._global_finding(result, ref, severity, reason, where))

    def _global_finding(
        self, result: PickleResult, ref: GlobalRef, severity: Severity, reason: str, where: str
    ) -> Finding:
        evidence: dict[str, object] = {"global": ref.qualified, "opcode": ref.opcode}
        call = next((c for c in result.calls if c.func is ref), None)
        if call is not None:
            evidence["call"] = render(call)
        rule = (
            "pickle.global.dangerous" if severity is Severity.CRITICAL else "pickle.global.unknown"
        )
        shown = evidence.get("call", ref.qualified)
        return self.ctx.finding(
            rule,
            severity,
            f"pickle imports {shown}: {reason}",
            at=_at(where, ref.pos),
            evidence=evidence,
        )

    def _break_finding(self, result: PickleResult, index: int, where: str) -> Finding:
        error = result.error
        assert error is not None  # noqa: S101 - checked by the caller
        executed = pickle_judge.executed_before_break(result)
        if executed:
            severity = Severity.HIGH
        elif index <= 1 or result.globals or result.proto is not None:
            severity = Severity.LOW  # an unpickler rejects it before calling anything
        else:
            return self.ctx.finding(
                "pickle.trailing_data",
                Severity.LOW,
                f"{self._tail_size(error.pos)} bytes after the last pickle are not a pickle "
                f"({error})",
                at=_at(where, error.pos),
            )
        imported = sorted({g.qualified for g in result.globals})
        return self.ctx.finding(
            "pickle.malformed",
            severity,
            f"pickle breaks after {result.ops} opcodes ({error}); "
            + ("loaders act on what came before the break, which calls "
               + ", ".join(sorted({render(c.func) for c in result.calls})[:5])
               if executed and result.calls else
               "loaders act on what came before the break" if executed else
               "an unpickler rejects it before calling anything")
            + (f"; it looks up {', '.join(imported[:5])}" if imported else ""),
            at=_at(where, error.pos),
            evidence={"opcodes_before_break": result.ops, "imports": imported[:20]},
        )

    def _tail_size(self, pos: int) -> str:
        return str(self.size - pos) if self.size is not None else "some"

    # -- nested payloads --------------------------------------------------------------------
    def _nested(self, result: PickleResult, where: str) -> None:
        for call in result.calls:
            func = call.func
            if not (
                isinstance(func, GlobalRef)
                and func.name in _LOADER_NAMES
                and func.qualified in _LOADERS
            ):
                continue
            payload = call.args[0] if isinstance(call.args, tuple) and call.args else None
            data = self._payload_bytes(payload)
            label = _at(where, call.pos) + f" (nested {func.qualified} payload)"
            if data is None:
                self.out.findings.append(
                    self.ctx.finding(
                        "pickle.nested.opaque",
                        Severity.HIGH,
                        f"{func.qualified} loads a payload that cannot be read statically",
                        at=_at(where, call.pos),
                    )
                )
                continue
            inner = self.ctx.inside(label)
            if inner.too_deep():
                self.out.findings.append(
                    inner.finding("limit.depth", Severity.HIGH, "nested pickles too deep")
                )
                continue
            self.out.findings.extend(scan_pickle_bytes(data, inner).findings)

    def _payload_bytes(self, payload: object) -> bytes | None:
        if (  # protocol 2 pickles bytes as _codecs.encode(text, "latin1")
            isinstance(payload, Obj)
            and isinstance(payload.func, GlobalRef)
            and payload.func.qualified == "_codecs.encode"
            and isinstance(payload.args, tuple)
            and len(payload.args) == 2
            and isinstance(payload.args[0], str)
        ):
            return payload.args[0].encode("latin-1", "replace")
        if isinstance(payload, bytes):
            return payload
        if isinstance(payload, str):
            return payload.encode("latin-1", "replace")
        if (
            isinstance(payload, BytesRef)
            and self.size is not None
            and payload.length <= _MAX_NESTED_BYTES
        ):
            here = self.stream.tell()
            self.stream.seek(payload.offset)
            data = self.stream.read(payload.length)
            self.stream.seek(here)
            return data
        return None


def _at(where: str, pos: int) -> str:
    return f"{where}, byte {pos}" if where else f"byte {pos}"
