"""The symbolic values of the pickle machine and the result of running one pickle.

Constants stay Python values; imports are :class:`GlobalRef`; the result of every call (REDUCE,
NEWOBJ, NEWOBJ_EX, OBJ, INST) is :class:`Obj` naming the callable. Shared by the general machine
(:mod:`pickle_vm`) and its fast path for seekable streams (:mod:`pickle_fast`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from custody.errors import PickleBreak

CHECK_EVERY = 1 << 15  # opcodes between two charges to the budget (and deadline checks)


@dataclass(eq=False, slots=True)
class GlobalRef:
    module: str
    name: str
    pos: int
    opcode: str

    @property
    def qualified(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(eq=False, slots=True)
class Obj:
    """The result of calling ``func`` with ``args`` (REDUCE, NEWOBJ, OBJ, INST)."""

    func: object
    args: object
    pos: int
    opcode: str
    state: object = None


@dataclass(eq=False, slots=True)
class Persistent:
    pid: object


@dataclass(eq=False, slots=True)
class DictV:
    items: list[tuple[object, object]] = field(default_factory=list)


@dataclass(eq=False, slots=True)
class SetV:
    items: list[object] = field(default_factory=list)
    frozen: bool = False


@dataclass(eq=False, slots=True)
class Opaque:
    what: str


@dataclass(slots=True)
class Anomaly:
    rule: str
    message: str
    pos: int


@dataclass
class PickleResult:
    start: int
    end: int = 0
    ops: int = 0
    proto: int | None = None
    stopped: bool = False
    root: object = None
    error: PickleBreak | None = None
    globals: list[GlobalRef] = field(default_factory=list)
    calls: list[Obj] = field(default_factory=list)
    persistent_ids: list[object] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    # what the loader's object graph may cost (see pickle_shape): containers fetched again
    # from the memo or DUP'd (shared references), tuples wrapped in tuples, and the stack and
    # MARK depth seen at the budget checks
    shared: int = 0
    nested: int = 0
    stack_peak: int = 0
    mark_peak: int = 0


SHAREABLE = frozenset({tuple, list, DictV, SetV, Obj})


def detached(exc: PickleBreak) -> PickleBreak:
    """``exc`` without its traceback and context, which hold the frames of the machine.

    A result keeps its break; with the traceback it would also keep the machine's frames (its
    buffer, stack and memo) alive in a reference cycle until the next garbage collection.
    """
    exc.__traceback__ = None
    exc.__context__ = None
    exc.__cause__ = None
    return exc
