"""What the object graph a pickle builds costs its loader: expansion and nesting depth.

A pickle can reference one container many times (memo GET, DUP). The loader builds it once, but
every consumer that walks it as a tree (``hash`` of a tuple used as a dict key or set member,
``repr``, ``==``, ``copy.deepcopy``, JSON) pays for the unfolded tree: a chain of tuples that each
hold the previous one twice doubles per level (the 'billion laughs' of pickles). Nesting tens of
thousands deep overflows the C stack of ``hash`` on tuples, or raises RecursionError in consumers.

:func:`measure` computes both over the symbolic values (containers only, each once, iteratively,
with early exits at the limits). It runs on every pickle up to ``ALWAYS_UP_TO`` opcodes, and on
larger ones when the machine saw what makes either possible: containers shared, tuples wrapped
in tuples, MARKs nested deep or a very long stack at a budget check (:class:`PickleResult`).
"""

from __future__ import annotations

from dataclasses import dataclass

from custody.validators.interface import ScanLimits
from custody.validators.models.context import Budget
from custody.validators.models.pickle_values import DictV, Obj, Persistent, PickleResult, SetV

_ALWAYS_UP_TO = 300_000  # opcodes; the walk costs about 1.5 us per container
_SHARED_TRIGGER = 32  # a doubling chain needs two shared references per level
_NESTED_TRIGGER = 64
_STACK_TRIGGER = 50_000  # items on the stack at once (real pickles batch 1,000 at a time)
_CHECK_EVERY = 1 << 16


@dataclass(frozen=True)
class Shape:
    expansion: int  # values with shared references unfolded (at least the limit when cut)
    depth: int
    cut: bool = False  # the walk stopped at a limit


def needs_walk(result: PickleResult, limits: ScanLimits) -> bool:
    return (
        result.ops <= _ALWAYS_UP_TO
        or result.shared >= _SHARED_TRIGGER
        or result.nested >= _NESTED_TRIGGER
        or result.mark_peak > limits.max_pickle_depth
        or result.stack_peak > _STACK_TRIGGER
    )


def _children(node: object) -> tuple[object, ...] | list[object] | None:
    if isinstance(node, tuple | list):
        return node
    if isinstance(node, Obj):
        return (node.func, node.args, node.state)
    if isinstance(node, DictV):
        return [x for pair in node.items for x in pair]
    if isinstance(node, SetV):
        return node.items
    if isinstance(node, Persistent):
        return (node.pid,)
    return None


def measure(roots: list[object], limits: ScanLimits, budget: Budget) -> Shape:
    """Expansion and depth of the values reachable from ``roots`` (a cycle counts once)."""
    done: dict[int, tuple[int, int]] = {}
    on_path: set[int] = set()
    max_expansion, max_depth = limits.max_pickle_expansion, limits.max_pickle_depth
    best = Shape(0, 0)
    steps = 0
    for root in roots:
        if _children(root) is None:
            continue
        stack: list[tuple[object, bool]] = [(root, False)]
        while stack:
            node, closing = stack.pop()
            key = id(node)
            kids = _children(node)
            assert kids is not None  # noqa: S101 - only containers are pushed
            if closing:
                on_path.discard(key)
                size, depth = 1, 0
                for kid in kids:
                    got = done.get(id(kid))
                    if got is None:
                        size += 1
                    else:
                        size += got[0]
                        depth = max(depth, got[1])
                done[key] = (size, depth + 1)
                if size > max_expansion or depth + 1 > max_depth:
                    return Shape(size, depth + 1, cut=True)
                continue
            if key in done or key in on_path:
                continue
            steps += 1
            if steps % _CHECK_EVERY == 0:
                budget.check_time()
            if len(on_path) > max_depth:
                return Shape(0, len(on_path), cut=True)
            on_path.add(key)
            stack.append((node, True))
            stack.extend((kid, False) for kid in kids
                         if _children(kid) is not None and id(kid) not in done)
        got = done.get(id(root), (0, 0))
        best = Shape(max(best.expansion, got[0]), max(best.depth, got[1]))
    return best
