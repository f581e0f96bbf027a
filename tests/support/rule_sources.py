"""Where the package source names rule ids, found from its syntax trees (not by importing it).

Used by tests/test_rules_registry.py. A rule id is named by a ``rule=``/``rule_id=`` keyword,
the rule argument of ``Finding``/``LimitHit``/``Anomaly`` or of any function or dataclass with
a ``rule``/``rule_id`` parameter or field, a comparison or ``startswith`` against
``.rule``/``.rule_id``, a module-level ``RULE_*`` constant, or a parameter's default. A name is
followed to its assignments (an if-expression, a for-loop over a literal table); what cannot
be followed is reported as unresolved.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SKIPPED = {"tests", "benchmarks", "sample_data", "build", "custody.egg-info"}
REGISTRY = "rules.py"  # the definitions, not uses
RULE_PARAMS = {"rule", "rule_id"}
SEVERITY_PARAMS = {"severity", "sev"}


def source_files() -> list[Path]:
    out = []
    for path in sorted(REPO.rglob("*.py")):
        parts = path.relative_to(REPO).parts
        if parts[0] in SKIPPED or parts == (REGISTRY,) or any(p.startswith(".") for p in parts):
            continue
        out.append(path)
    return out


@dataclass(frozen=True)
class Use:
    """One place that names a rule: an exact id, or (``prefix=True``) an f-string's fixed start."""

    text: str
    where: str
    prefix: bool = False
    finding: bool = False  # at a Finding-like call (one with a severity argument)
    severities: tuple[str, ...] | None = None  # the literal Severity.X there, if literal
    callee: str = ""  # the function or class called with it


@dataclass
class Source:
    uses: list[Use] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)  # rule arguments that are computed
    # finding calls with a literal severity whose rule is forwarded: (expression, severities)
    forwarded: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    literals: dict[str, list[str]] = field(default_factory=dict)  # every string constant


Callables = dict[str, tuple[int | None, int | None]]


def _defined(tree: ast.Module) -> tuple[Callables, set[str]]:
    """What a module defines: callables with a rule parameter -> (index of the rule argument,
    index of the severity argument), and the names of callables without one."""
    found: Callables = {}
    plain: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name != "__init__":
            names = [a.arg for a in node.args.posonlyargs + node.args.args]
            if names and names[0] in ("self", "cls"):
                names = names[1:]
            rule_at = next((i for i, n in enumerate(names) if n in RULE_PARAMS), None)
            if rule_at is None:
                plain.add(node.name)
            else:
                sev_at = next((i for i, n in enumerate(names) if n in SEVERITY_PARAMS), None)
                found.setdefault(node.name, (rule_at, sev_at))
        elif isinstance(node, ast.ClassDef):
            fields = [s.target.id for s in node.body
                      if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)]
            rule_at = next((i for i, n in enumerate(fields) if n in RULE_PARAMS), None)
            if rule_at is not None:
                sev_at = fields.index("severity") if "severity" in fields else None
                found.setdefault(node.name, (rule_at, sev_at))
    return found, plain - set(found)


def _rule_callables(trees: dict[str, ast.Module]) -> dict[str, Callables]:
    """Per module: the callables whose calls name a rule, as that module spells them."""
    defined = {rel: _defined(tree) for rel, tree in trees.items()}
    every: Callables = {"Finding": (0, 1), "LimitHit": (0, None), "Anomaly": (0, None)}
    for found, _ in defined.values():
        for name, at in found.items():
            every.setdefault(name, at)
    ambiguous = {n for _, plain in defined.values() for n in plain} & set(every)
    out: dict[str, Callables] = {}
    for rel, tree in trees.items():
        found, plain = defined[rel]
        imported = {a.asname or a.name: a.name for n in ast.walk(tree)
                    if isinstance(n, ast.ImportFrom) for a in n.names}
        mine = {name: at for name, at in every.items() if name not in plain
                and (name not in ambiguous or name in found or name in imported.values())}
        mine.update({alias: every[name] for alias, name in imported.items() if name in every})
        out[rel] = mine
    return out


def _callee(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _severities(node: ast.expr | None) -> tuple[str, ...] | None:
    """The labels of a literal ``Severity.X`` (or ``Severity.X if c else Severity.Y``)."""
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and node.value.id == "Severity"):
        return (node.attr.lower(),)
    if isinstance(node, ast.IfExp):
        body, orelse = _severities(node.body), _severities(node.orelse)
        if body is not None and orelse is not None:
            return body + orelse
    return None


def _loop_values(scope: ast.AST, name: str) -> list[ast.expr]:
    """``for name, ... in (("a", ...), ("b", ...))``: the literal values ``name`` takes."""
    out: list[ast.expr] = []
    for node in ast.walk(scope):
        if not isinstance(node, ast.For | ast.comprehension):
            continue
        target, source = node.target, node.iter
        if not (isinstance(target, ast.Tuple) and isinstance(source, ast.Tuple | ast.List)):
            continue
        names = [t.id if isinstance(t, ast.Name) else None for t in target.elts]
        if name not in names:
            continue
        at = names.index(name)
        out += [row.elts[at] for row in source.elts
                if isinstance(row, ast.Tuple) and len(row.elts) == len(names)]
    return out


def _assignments(scope: ast.AST, name: str) -> list[ast.expr]:
    values = [n.value for n in ast.walk(scope) if isinstance(n, ast.Assign)
              and any(isinstance(t, ast.Name) and t.id == name for t in n.targets)]
    values += [n.value for n in ast.walk(scope) if isinstance(n, ast.AnnAssign)
               and isinstance(n.target, ast.Name) and n.target.id == name and n.value is not None]
    return values + _loop_values(scope, name)


class _Resolver:
    """Turns an expression naming a rule into the ids it can take."""

    def __init__(self, module: ast.Module, functions: list[ast.AST]) -> None:
        self.module = module
        self.functions = functions  # innermost last

    def _assigned(self, name: str) -> list[ast.expr] | None:
        """The values assigned to ``name`` in the nearest scope; None for a parameter."""
        for scope in reversed(self.functions):
            assert isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef)
            values = _assignments(scope, name)
            if values:
                return values
            args = scope.args
            if name in {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)}:
                return None  # passed through: the ids are found where the function is called
        return _assignments(ast.Module(body=[n for n in self.module.body if not isinstance(
            n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)], type_ignores=[]), name)

    def ids(self, node: ast.expr, depth: int = 0) -> Iterator[tuple[str, bool] | None]:
        """(text, is_prefix) per possible value; None for a value computed elsewhere."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value, False
        elif isinstance(node, ast.JoinedStr):
            head = node.values[0] if node.values else None
            if isinstance(head, ast.Constant) and isinstance(head.value, str):
                yield head.value, True
            else:
                yield None
        elif isinstance(node, ast.IfExp):
            yield from self.ids(node.body, depth)
            yield from self.ids(node.orelse, depth)
        elif isinstance(node, ast.BoolOp):
            for value in node.values:
                yield from self.ids(value, depth)
        elif isinstance(node, ast.Name) and depth < 3:
            values = self._assigned(node.id)
            if values == []:
                yield None
            for value in values or []:
                yield from self.ids(value, depth + 1)
        else:
            yield None


def _is_rule_attr(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and node.attr in RULE_PARAMS


def _compared(node: ast.Compare) -> list[ast.expr]:
    sides = [node.left, *node.comparators]
    if not any(_is_rule_attr(s) for s in sides):
        return []
    out: list[ast.expr] = []
    for side in sides:
        if isinstance(side, ast.Tuple | ast.List | ast.Set):
            out += side.elts
        elif not _is_rule_attr(side):
            out.append(side)
    return out


def _walk(node: ast.AST, functions: list[ast.AST]) -> Iterator[tuple[ast.AST, list[ast.AST]]]:
    yield node, functions
    inner = [*functions, node] if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) \
        else functions
    for child in ast.iter_child_nodes(node):
        yield from _walk(child, inner)


def scan_source() -> Source:
    trees = {str(p.relative_to(REPO)): ast.parse(p.read_text(), str(p)) for p in source_files()}
    per_module = _rule_callables(trees)
    src = Source()
    for rel, tree in trees.items():
        callables = per_module[rel]
        for node, functions in _walk(tree, []):
            where = f"{rel}:{getattr(node, 'lineno', 0)}"
            resolver = _Resolver(tree, functions)
            prefixes: list[ast.expr] = []
            named: list[tuple[ast.expr, bool, tuple[str, ...] | None]] = []
            callee = _callee(node) or "" if isinstance(node, ast.Call) else ""
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                src.literals.setdefault(node.value, []).append(where)
            elif isinstance(node, ast.Call):
                named += _call_rules(node, callables)
                if (isinstance(node.func, ast.Attribute) and node.func.attr == "startswith"
                        and _is_rule_attr(node.func.value)):
                    prefixes += node.args
            elif isinstance(node, ast.Compare):
                named += [(e, False, None) for e in _compared(node)]
            elif isinstance(node, ast.Assign | ast.AnnAssign) and not functions:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if node.value is not None and any(
                        isinstance(t, ast.Name) and t.id.startswith("RULE_") for t in targets):
                    named.append((node.value, False, None))
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                args = node.args.posonlyargs + node.args.args
                defaults = dict(zip(args[len(args) - len(node.args.defaults):],
                                    node.args.defaults, strict=True))
                defaults.update({a: d for a, d in zip(node.args.kwonlyargs,
                                                      node.args.kw_defaults, strict=True) if d})
                named += [(d, False, None) for a, d in defaults.items() if a.arg in RULE_PARAMS]
            for expr in prefixes:  # `x.rule.startswith("chain.")`
                if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
                    src.uses.append(Use(expr.value, where, prefix=True))
            for expr, finding, severities in named:
                for value in resolver.ids(expr):
                    if value is None:
                        src.unresolved.append(f"{where}: {ast.unparse(expr)}")
                        if finding and severities:
                            src.forwarded.append((ast.unparse(expr), severities))
                    else:
                        src.uses.append(Use(value[0], where, value[1], finding, severities,
                                            callee))
    return src


def _call_rules(call: ast.Call, callables: Callables,
                ) -> list[tuple[ast.expr, bool, tuple[str, ...] | None]]:
    """(rule expression, at a Finding-like call, literal severities) for one call."""
    name = _callee(call) or ""
    rule_at, sev_at = callables.get(name, (None, None))
    sev_node: ast.expr | None = None
    if sev_at is not None:
        sev_node = call.args[sev_at] if len(call.args) > sev_at else next(
            (k.value for k in call.keywords if k.arg in SEVERITY_PARAMS), None)
    exprs = [k.value for k in call.keywords if k.arg in RULE_PARAMS]
    if rule_at is not None and len(call.args) > rule_at:
        exprs.append(call.args[rule_at])
    out: list[tuple[ast.expr, bool, tuple[str, ...] | None]] = []
    for expr in exprs:
        if (isinstance(expr, ast.IfExp) and isinstance(sev_node, ast.IfExp)
                and ast.dump(expr.test) == ast.dump(sev_node.test)):
            # `"a" if c else "b", Severity.X if c else Severity.Y`: pair the branches
            out += [(expr.body, True, _severities(sev_node.body)),
                    (expr.orelse, True, _severities(sev_node.orelse))]
        else:
            out.append((expr, sev_at is not None, _severities(sev_node)))
    return out
