"""Bounded, human-readable renderings of symbolic pickle values (for messages and evidence)."""

from __future__ import annotations

from custody.validators.models.opcodes import BytesRef
from custody.validators.models.pickle_values import DictV, GlobalRef, Obj


def short_repr(value: object, limit: int = 120) -> str:
    """A bounded, human-readable rendering of a symbolic value (for messages and evidence)."""
    text = _render(value, 3)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _render(value: object, depth: int) -> str:
    if depth <= 0:
        return "..."
    if isinstance(value, GlobalRef):
        return value.qualified
    if isinstance(value, Obj):
        return f"{_render(value.func, depth - 1)}{_render_args(value.args, depth - 1)}"
    if isinstance(value, BytesRef):
        return f"<{value.length} bytes>"
    if isinstance(value, tuple):
        return "(" + ", ".join(_render(v, depth - 1) for v in value[:6]) + ")"
    if isinstance(value, list):
        return "[" + ", ".join(_render(v, depth - 1) for v in value[:6]) + "]"
    if isinstance(value, DictV):
        return "{" + ", ".join(f"{_render(k, 1)}: ..." for k, _ in value.items[:6]) + "}"
    if isinstance(value, str | bytes | int | float | bool) or value is None:
        return repr(value[:80] if isinstance(value, str | bytes) else value)
    return f"<{type(value).__name__}>"


def _render_args(args: object, depth: int) -> str:
    if isinstance(args, tuple):
        return "(" + ", ".join(_render(v, depth) for v in args[:6]) + ")"
    return f"(*{_render(args, depth)})"
