"""The fast path of :class:`~custody.validators.models.pickle_vm.PickleMachine` on seekable streams.

A checkpoint's pickle runs to millions of opcodes (30 per tensor), so the per-opcode cost is the
cost of a scan. Here the stream is read in growing chunks into a buffer, and the opcodes real
pickles are made of are decoded and applied inline, with exactly the machine's semantics: the
same stack, memo, globals, calls and positions. An opcode is only taken on the fast path when it
cannot fail (its argument is in the buffer, the stack holds what it pops, the memo key exists);
every other case, including every error, goes to the machine's own reader and handler
(:meth:`PickleMachine.step`) with the stream positioned just after the opcode byte, so breaks,
messages and positions are the machine's. Byte strings longer than ``INLINE_BYTES`` also go
there and are stepped over by seeking, so tensor bytes are never read.

The cyclic garbage collector is paused while a pickle runs: the machine creates millions of
objects that all stay reachable (from the memo, the stack or the result) until it stops, and
the collector's repeated full passes over them doubled the time of a large checkpoint. Cycles
that a hostile pickle makes and drops are bounded by the opcode limit and collected afterwards.
"""

from __future__ import annotations

import gc
import lzma
import struct
import zlib
from typing import BinaryIO, Protocol

from custody.errors import PickleBreak
from custody.validators.models.context import Budget
from custody.validators.models.opcodes import BY_CODE, INLINE_BYTES
from custody.validators.models.pickle_values import (
    CHECK_EVERY,
    SHAREABLE,
    DictV,
    GlobalRef,
    Obj,
    Persistent,
    PickleResult,
    SetV,
    detached,
)


class PickleMachine(Protocol):
    """What the fast path needs of :class:`~custody.validators.models.pickle_vm.PickleMachine`
    (a structural type, so that this module does not import the machine that imports it)."""

    stream: BinaryIO
    budget: Budget
    size: int | None
    stack: list[object]
    metastack: list[list[object]]
    memo: dict[int, object]
    result: PickleResult

    def step(self, code: int) -> None: ...

_FIRST_CHUNK = 1 << 16
_MAX_CHUNK = 1 << 22
_AHEAD = 15  # bytes kept buffered after an opcode on the fast path (fixed arguments: at most 8)
_TAIL = 0x100  # marks an opcode in the last bytes: it skips the fast path
_VALID = bytes(1 if code in BY_CODE else 0 for code in range(256))
_U4 = struct.Struct("<I").unpack_from
_S4 = struct.Struct("<i").unpack_from
_F8 = struct.Struct(">d").unpack_from
_MISSING = object()


def run_seekable(m: PickleMachine) -> PickleResult:  # noqa: PLR0915 - one loop, on purpose
    """Run ``m`` to STOP from its stream's position; the stream can seek (``m.size`` is set)."""
    stream, res, budget = m.stream, m.result, m.budget
    read, seek = stream.read, stream.seek
    stack, metastack, memo = m.stack, m.metastack, m.memo
    push = stack.append
    globals_, calls, pids = res.globals, res.calls, res.persistent_ids
    base = res.start  # absolute position of buf[0]
    buf, blen, i, eof, chunk = b"", 0, 0, False, _FIRST_CHUNK
    lim = -1  # while i <= lim, the opcode and the _AHEAD bytes after it are in buf
    synced = True  # the stream is where the machine's own reader expects it
    ops, check_at = 0, CHECK_EVERY
    shared = nested = 0  # see PickleResult: added to the machine's own counts at the end
    collecting = gc.isenabled()
    gc.disable()  # see the module docstring
    try:
        while True:
            if i > lim:
                if not eof:
                    keep = buf[i:]
                    synced = False
                    seek(base + i + len(keep))
                    more = read(chunk)
                    base, buf = base + i, keep + more if keep else more
                    blen, i, eof, chunk = len(buf), 0, not more, min(chunk * 2, _MAX_CHUNK)
                    lim = blen - _AHEAD - 1
                    continue
                if i >= blen:
                    raise PickleBreak("truncated: stream ended before STOP", base + i)
                code = buf[i] | _TAIL  # the last bytes: arguments may run past the end
            else:
                code = buf[i]
            i += 1
            ops += 1
            if ops == check_at:
                check_at += CHECK_EVERY
                if _VALID[code & 0xFF]:
                    budget.add_opcodes(CHECK_EVERY)
                    res.stack_peak = max(res.stack_peak, len(stack))
                    res.mark_peak = max(res.mark_peak, len(metastack))
            # Fixed-size arguments (at most 8 bytes) are in buf; longer ones are checked.
            if code == 0x72:  # LONG_BINPUT
                if stack:
                    memo[_U4(buf, i)[0]] = stack[-1]
                    i += 4
                    continue
            elif code == 0x71:  # BINPUT
                if stack:
                    memo[buf[i]] = stack[-1]
                    i += 1
                    continue
            elif code == 0x68:  # BINGET
                value = memo.get(buf[i], _MISSING)
                if value is not _MISSING:
                    if type(value) in SHAREABLE:
                        shared += 1
                    push(value)
                    i += 1
                    continue
            elif code == 0x4B:  # BININT1
                push(buf[i])
                i += 1
                continue
            elif code == 0x28:  # MARK
                metastack.append(stack)
                stack = []
                push = stack.append
                continue
            elif code in (0x58, 0x8C):  # BINUNICODE, SHORT_BINUNICODE
                if code == 0x58:
                    start, n = i + 4, _U4(buf, i)[0]
                else:
                    start, n = i + 1, buf[i]
                end = start + n
                if n <= INLINE_BYTES and end <= blen:
                    try:
                        push(buf[start:end].decode("utf-8", "surrogatepass"))
                    except UnicodeDecodeError:
                        pass
                    else:
                        i = end
                        continue
            elif code == 0x74:  # TUPLE
                if metastack:
                    items = tuple(stack)
                    if items and type(items[-1]) is tuple:
                        nested += 1
                    stack = metastack.pop()
                    push = stack.append
                    push(items)
                    continue
            elif code == 0x85:  # TUPLE1
                if stack:
                    if type(stack[-1]) is tuple:
                        nested += 1
                    stack[-1] = (stack[-1],)
                    continue
            elif code == 0x52:  # REDUCE
                if len(stack) >= 2:
                    args = stack.pop()
                    obj = Obj(stack[-1], args, base + i - 1, "REDUCE")
                    calls.append(obj)
                    stack[-1] = obj
                    continue
            elif code == 0x51:  # BINPERSID
                if stack:
                    pid = stack[-1]
                    pids.append(pid)
                    stack[-1] = Persistent(pid)
                    continue
            elif code == 0x89:  # NEWFALSE
                push(False)
                continue
            elif code == 0x88:  # NEWTRUE
                push(True)
                continue
            elif code == 0x4E:  # NONE
                push(None)
                continue
            elif code == 0x29:  # EMPTY_TUPLE
                push(())
                continue
            elif code == 0x86:  # TUPLE2
                if len(stack) >= 2:
                    second = stack.pop()
                    if type(second) is tuple:
                        nested += 1
                    stack[-1] = (stack[-1], second)
                    continue
            elif code == 0x87:  # TUPLE3
                if len(stack) >= 3:
                    third = stack.pop()
                    if type(third) is tuple:
                        nested += 1
                    second = stack.pop()
                    stack[-1] = (stack[-1], second, third)
                    continue
            elif code == 0x94:  # MEMOIZE
                if stack:
                    memo[len(memo)] = stack[-1]
                    continue
            elif code == 0x6A:  # LONG_BINGET
                value = memo.get(_U4(buf, i)[0], _MISSING)
                if value is not _MISSING:
                    if type(value) in SHAREABLE:
                        shared += 1
                    push(value)
                    i += 4
                    continue
            elif code == 0x4D:  # BININT2
                push(buf[i] | buf[i + 1] << 8)
                i += 2
                continue
            elif code == 0x4A:  # BININT
                push(_S4(buf, i)[0])
                i += 4
                continue
            elif code == 0x47:  # BINFLOAT
                push(float(_F8(buf, i)[0]))
                i += 8
                continue
            elif code == 0x7D:  # EMPTY_DICT
                push(DictV())
                continue
            elif code == 0x5D:  # EMPTY_LIST
                push([])
                continue
            elif code == 0x8F:  # EMPTY_SET
                push(SetV())
                continue
            elif code == 0x75:  # SETITEMS
                if metastack and metastack[-1]:
                    items_ = stack
                    stack = metastack.pop()
                    push = stack.append
                    target = stack[-1]
                    if isinstance(target, DictV):
                        target.items.extend(zip(items_[::2], items_[1::2], strict=False))
                    continue
            elif code == 0x73:  # SETITEM
                if len(stack) >= 3:
                    value = stack.pop()
                    key = stack.pop()
                    target = stack[-1]
                    if isinstance(target, DictV):
                        target.items.append((key, value))
                    continue
            elif code == 0x65:  # APPENDS
                if metastack and metastack[-1]:
                    items_ = stack
                    stack = metastack.pop()
                    push = stack.append
                    target = stack[-1]
                    if isinstance(target, list):
                        target.extend(items_)
                    continue
            elif code == 0x61:  # APPEND
                if len(stack) >= 2:
                    value = stack.pop()
                    target = stack[-1]
                    if isinstance(target, list):
                        target.append(value)
                    continue
            elif code == 0x6C:  # LIST
                if metastack:
                    items_ = stack
                    stack = metastack.pop()
                    push = stack.append
                    push(items_)
                    continue
            elif code == 0x93:  # STACK_GLOBAL
                if len(stack) >= 2:
                    name, module = stack[-1], stack[-2]
                    if isinstance(module, str) and isinstance(name, str):
                        del stack[-1]
                        ref = GlobalRef(module, name, base + i - 1, "STACK_GLOBAL")
                        globals_.append(ref)
                        stack[-1] = ref
                        continue
            elif code == 0x81:  # NEWOBJ
                if len(stack) >= 2:
                    args = stack.pop()
                    obj = Obj(stack[-1], args, base + i - 1, "NEWOBJ")
                    calls.append(obj)
                    stack[-1] = obj
                    continue
            elif code in (0x43, 0x55):  # SHORT_BINBYTES, SHORT_BINSTRING
                end = i + 1 + buf[i]
                if end <= blen:
                    raw = buf[i + 1 : end]
                    push(raw if code == 0x43 else raw.decode("latin-1"))
                    i = end
                    continue
            elif code == 0x42:  # BINBYTES
                n = _U4(buf, i)[0]
                if n <= INLINE_BYTES and i + 4 + n <= blen:
                    push(buf[i + 4 : i + 4 + n])
                    i += 4 + n
                    continue
            elif code == 0x95:  # FRAME
                i += 8
                continue
            elif code == 0x80:  # PROTO
                if buf[i] <= 5:
                    res.proto = buf[i]
                    i += 1
                    continue
            elif code == 0x2E:  # STOP
                if stack:
                    res.root = stack.pop()
                    res.stopped = True
                    break
            elif code == 0x30:  # POP
                if stack:
                    stack.pop()
                    continue
            elif code == 0x32 and stack:  # DUP
                if type(stack[-1]) in SHAREABLE:
                    shared += 1
                push(stack[-1])
                continue
            # Everything else, and every case that could fail: the machine's own step.
            code &= 0xFF
            if not _VALID[code]:
                ops -= 1
                raise PickleBreak(f"invalid opcode byte 0x{code:02x}", base + i - 1)
            m.stack = stack
            seek(base + i)
            synced = True
            m.step(code)
            stack = m.stack
            push = stack.append
            if res.stopped:
                break
            here = stream.tell()
            if base <= here <= base + blen:
                i = here - base
            else:  # a long byte string was stepped over, or data skipped by a BUILD hook
                base, buf, blen, i, lim, eof, chunk = here, b"", 0, 0, -1, False, _FIRST_CHUNK
            synced = False
    except PickleBreak as exc:
        res.error = detached(exc)
    except (OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
        res.error = PickleBreak(f"the underlying stream cannot be read: {exc}", stream.tell())
    finally:
        if collecting:
            gc.enable()
        m.stack = stack
        if not synced:
            seek(base + i)
        budget.add_opcodes(ops % CHECK_EVERY)
        res.ops = ops
        res.shared += shared
        res.nested += nested
        res.end = stream.tell()
    return res
