"""Symbolic pickle machine: emulates the unpickler's stack and memo without running anything.

Values are kept symbolically: constants as Python values, imports as :class:`GlobalRef`, and the
result of every call (REDUCE, NEWOBJ, NEWOBJ_EX, OBJ, INST) as :class:`Obj` naming the callable.
That is enough to resolve STACK_GLOBAL names however they were built (STRING, BINUNICODE, memo
GET, DUP), to see what each call receives (a ``pickle.loads`` payload to scan recursively, a
torch storage persistent id, a joblib array header) and to stop exactly where the real unpickler
would fail.
"""

from __future__ import annotations

import lzma
import zlib
from collections.abc import Callable
from typing import BinaryIO, cast

from custody.errors import PickleBreak
from custody.validators.models.context import Budget
from custody.validators.models.opcodes import BY_CODE, Arg, read_arg
from custody.validators.models.pickle_fast import run_seekable
from custody.validators.models.pickle_values import (
    CHECK_EVERY,
    SHAREABLE,
    Anomaly,
    DictV,
    GlobalRef,
    Obj,
    Opaque,
    Persistent,
    PickleResult,
    SetV,
    detached,
)

BuildHook = Callable[[Obj, BinaryIO], None]


class _Mark:
    pass


class PickleMachine:
    """Run one pickle (up to its STOP) from ``stream``'s current position."""

    def __init__(
        self,
        stream: BinaryIO,
        budget: Budget,
        *,
        size: int | None = None,
        build_hook: BuildHook | None = None,
    ) -> None:
        self.stream = stream
        self.budget = budget
        self.size = size
        self.build_hook = build_hook
        self.stack: list[object] = []
        self.metastack: list[list[object]] = []
        self.memo: dict[int, object] = {}
        self.result = PickleResult(start=stream.tell())
        self._table = _TABLE  # handlers taken from the class: no cycle through bound methods

    # -- driver ---------------------------------------------------------------------------
    def run(self, first: bytes = b"") -> PickleResult:
        """Run to STOP; ``first`` is the opcode byte already read from an unseekable stream."""
        if self.size is not None and not first:
            return run_seekable(self)
        stream, table, size, res = self.stream, self._table, self.size, self.result
        res.start -= len(first)
        read = stream.read
        ops = 0
        pending = first
        try:
            while not res.stopped:
                if pending:
                    code, pending = pending, b""
                else:
                    code = read(1)
                if not code:
                    raise PickleBreak("truncated: stream ended before STOP", stream.tell())
                entry = table.get(code[0])
                if entry is None:
                    pos = stream.tell() - 1
                    raise PickleBreak(f"invalid opcode byte 0x{code[0]:02x}", pos)
                ops += 1
                if ops % CHECK_EVERY == 0:
                    self.budget.add_opcodes(CHECK_EVERY)
                    res.stack_peak = max(res.stack_peak, len(self.stack))
                    res.mark_peak = max(res.mark_peak, len(self.metastack))
                name, kind, handler = entry
                arg = None if kind is Arg.NONE else read_arg(kind, stream, stream.tell() - 1, size)
                try:
                    handler(self, arg)
                except IndexError:
                    raise PickleBreak(f"{name} on an empty stack", stream.tell() - 1) from None
        except PickleBreak as exc:
            res.error = detached(exc)
        except (OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
            res.error = PickleBreak(f"the underlying stream cannot be read: {exc}", stream.tell())
        finally:
            self.budget.add_opcodes(ops % CHECK_EVERY)
            res.ops = ops
            res.end = stream.tell()
        return res

    def step(self, code: int) -> None:
        """Run the opcode ``code`` whose byte was just read; its argument follows in the stream."""
        name, kind, handler = self._table[code]
        stream = self.stream
        arg = None if kind is Arg.NONE else read_arg(kind, stream, stream.tell() - 1, self.size)
        try:
            handler(self, arg)
        except IndexError:
            raise PickleBreak(f"{name} on an empty stack", stream.tell() - 1) from None

    # -- helpers --------------------------------------------------------------------------
    def _pop_mark(self) -> list[object]:
        items = self.stack
        if not self.metastack:
            raise PickleBreak("MARK expected but not found", self.stream.tell() - 1)
        self.stack = self.metastack.pop()
        return items

    def _global(self, module: str, name: str, pos: int, opcode: str) -> GlobalRef:
        ref = GlobalRef(module, name, pos, opcode)
        self.result.globals.append(ref)
        return ref

    def _call(self, func: object, args: object, opcode: str) -> Obj:
        obj = Obj(func, args, self.stream.tell() - 1, opcode)
        self.result.calls.append(obj)
        return obj

    def _push(self, value: object) -> None:
        self.stack.append(value)

    # -- opcodes --------------------------------------------------------------------------
    def op_MARK(self, _: object) -> None:
        self.metastack.append(self.stack)
        self.stack = []

    def op_STOP(self, _: object) -> None:
        self.result.root = self.stack.pop()
        self.result.stopped = True

    def op_POP(self, _: object) -> None:
        if self.stack:
            self.stack.pop()
        else:
            self._pop_mark()

    def op_POP_MARK(self, _: object) -> None:
        self._pop_mark()

    def op_DUP(self, _: object) -> None:
        top = self.stack[-1]
        if type(top) in SHAREABLE:
            self.result.shared += 1
        self.stack.append(top)

    def _const(self, arg: object) -> None:
        self.stack.append(arg)

    op_FLOAT = op_INT = op_BININT = op_BININT1 = op_LONG = op_BININT2 = _const
    op_STRING = op_BINSTRING = op_SHORT_BINSTRING = op_UNICODE = op_BINUNICODE = _const
    op_BINFLOAT = op_LONG1 = op_LONG4 = op_BINBYTES = op_SHORT_BINBYTES = _const
    op_SHORT_BINUNICODE = op_BINUNICODE8 = op_BINBYTES8 = op_BYTEARRAY8 = _const

    def op_NONE(self, _: object) -> None:
        self.stack.append(None)

    def op_NEWTRUE(self, _: object) -> None:
        self.stack.append(True)

    def op_NEWFALSE(self, _: object) -> None:
        self.stack.append(False)

    def op_PERSID(self, arg: object) -> None:
        self.result.persistent_ids.append(arg)
        self.stack.append(Persistent(arg))

    def op_BINPERSID(self, _: object) -> None:
        pid = self.stack.pop()
        self.result.persistent_ids.append(pid)
        self.stack.append(Persistent(pid))

    def op_REDUCE(self, _: object) -> None:
        args = self.stack.pop()
        self.stack[-1] = self._call(self.stack[-1], args, "REDUCE")

    def op_BUILD(self, _: object) -> None:
        state = self.stack.pop()
        target = self.stack[-1]
        if isinstance(target, GlobalRef):
            self.result.anomalies.append(
                Anomaly(
                    "pickle.build.global",
                    f"BUILD sets attributes on the imported object {target.qualified} itself "
                    "(monkey-patching during load)",
                    self.stream.tell() - 1,
                )
            )
        elif isinstance(target, Obj):
            target.state = state
            if self.build_hook is not None:
                self.build_hook(target, self.stream)

    def op_GLOBAL(self, arg: object) -> None:
        module, name = cast(tuple[str, str], arg)
        pos = self.stream.tell() - len(module.encode()) - len(name.encode()) - 3
        self.stack.append(self._global(module, name, pos, "GLOBAL"))

    def op_STACK_GLOBAL(self, _: object) -> None:
        name = self.stack.pop()
        module = self.stack.pop()
        pos = self.stream.tell() - 1
        if isinstance(module, str) and isinstance(name, str):
            self.stack.append(self._global(module, name, pos, "STACK_GLOBAL"))
            return
        self.result.anomalies.append(
            Anomaly(
                "pickle.global.unresolved",
                "STACK_GLOBAL whose module or name is not a constant string "
                f"({type(module).__name__}, {type(name).__name__}); it cannot be judged",
                pos,
            )
        )
        self.stack.append(self._global("<unresolved>", "<unresolved>", pos, "STACK_GLOBAL"))

    def op_INST(self, arg: object) -> None:
        module, name = cast(tuple[str, str], arg)
        pos = self.stream.tell() - len(module.encode()) - len(name.encode()) - 3
        args = tuple(self._pop_mark())
        cls = self._global(module, name, pos, "INST")
        self.stack.append(self._call(cls, args, "INST"))

    def op_OBJ(self, _: object) -> None:
        items = self._pop_mark()
        cls = items[0]
        self.stack.append(self._call(cls, tuple(items[1:]), "OBJ"))

    def op_NEWOBJ(self, _: object) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self.stack.append(self._call(cls, args, "NEWOBJ"))

    def op_NEWOBJ_EX(self, _: object) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self.stack.append(self._call(cls, (args, kwargs), "NEWOBJ_EX"))

    def _ext(self, code: object) -> None:
        pos = self.stream.tell() - 1
        self.result.anomalies.append(
            Anomaly(
                "pickle.global.extension",
                f"extension code {code} loads a global from the copyreg extension registry; "
                "what it names depends on the loading process",
                pos,
            )
        )
        self.stack.append(self._global("<extension>", str(code), pos, "EXT"))

    op_EXT1 = op_EXT2 = op_EXT4 = _ext

    def op_DICT(self, _: object) -> None:
        items = self._pop_mark()
        self.stack.append(DictV(list(zip(items[::2], items[1::2], strict=False))))

    def op_EMPTY_DICT(self, _: object) -> None:
        self.stack.append(DictV())

    def op_SETITEM(self, _: object) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._setitems(self.stack[-1], [(key, value)])

    def op_SETITEMS(self, _: object) -> None:
        items = self._pop_mark()
        self._setitems(self.stack[-1], list(zip(items[::2], items[1::2], strict=False)))

    def _setitems(self, target: object, pairs: list[tuple[object, object]]) -> None:
        if isinstance(target, DictV):
            target.items.extend(pairs)

    def op_APPEND(self, _: object) -> None:
        value = self.stack.pop()
        self._extend(self.stack[-1], [value])

    def op_APPENDS(self, _: object) -> None:
        items = self._pop_mark()
        self._extend(self.stack[-1], items)

    def op_ADDITEMS(self, _: object) -> None:
        items = self._pop_mark()
        target = self.stack[-1]
        if isinstance(target, SetV):
            target.items.extend(items)

    def _extend(self, target: object, items: list[object]) -> None:
        if isinstance(target, list):
            target.extend(items)

    def op_LIST(self, _: object) -> None:
        items = self._pop_mark()
        self.stack.append(items)

    def op_EMPTY_LIST(self, _: object) -> None:
        self.stack.append([])

    def op_TUPLE(self, _: object) -> None:
        items = tuple(self._pop_mark())
        if items and type(items[-1]) is tuple:
            self.result.nested += 1
        self.stack.append(items)

    def op_EMPTY_TUPLE(self, _: object) -> None:
        self.stack.append(())

    def op_TUPLE1(self, _: object) -> None:
        if type(self.stack[-1]) is tuple:
            self.result.nested += 1
        self.stack[-1] = (self.stack[-1],)

    def op_TUPLE2(self, _: object) -> None:
        b = self.stack.pop()
        if type(b) is tuple:
            self.result.nested += 1
        self.stack[-1] = (self.stack[-1], b)

    def op_TUPLE3(self, _: object) -> None:
        c = self.stack.pop()
        b = self.stack.pop()
        if type(c) is tuple:
            self.result.nested += 1
        self.stack[-1] = (self.stack[-1], b, c)

    def op_EMPTY_SET(self, _: object) -> None:
        self.stack.append(SetV())

    def op_FROZENSET(self, _: object) -> None:
        items = self._pop_mark()
        self.stack.append(SetV(items, frozen=True))

    def _get(self, arg: object) -> None:
        arg = cast(int, arg)
        if arg not in self.memo:
            raise PickleBreak(f"memo key {arg} was never stored", self.stream.tell())
        value = self.memo[arg]
        if type(value) in SHAREABLE:
            self.result.shared += 1
        self.stack.append(value)

    op_GET = op_BINGET = op_LONG_BINGET = _get

    def _put(self, arg: object) -> None:
        arg = cast(int, arg)
        if arg < 0:
            raise PickleBreak("negative memo key", self.stream.tell())
        self.memo[arg] = self.stack[-1]

    op_PUT = op_BINPUT = op_LONG_BINPUT = _put

    def op_MEMOIZE(self, _: object) -> None:
        self.memo[len(self.memo)] = self.stack[-1]

    def op_PROTO(self, arg: object) -> None:
        arg = cast(int, arg)
        if arg > 5:
            raise PickleBreak(f"unsupported pickle protocol {arg}", self.stream.tell() - 2)
        self.result.proto = arg

    def op_FRAME(self, _: object) -> None:
        return

    def op_NEXT_BUFFER(self, _: object) -> None:
        self.stack.append(Opaque("out-of-band buffer"))

    def op_READONLY_BUFFER(self, _: object) -> None:
        return


_TABLE: dict[int, tuple[str, Arg, Callable[[PickleMachine, object], None]]] = {
    code: (name, kind, getattr(PickleMachine, f"op_{name}"))
    for code, (name, kind) in BY_CODE.items()
}
