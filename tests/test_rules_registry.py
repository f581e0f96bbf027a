"""The rule registry (custody/rules.py) matches the rule ids the code actually raises and reports.

The source is read as syntax trees, not imported: every place that names a rule id is found by
its shape (a ``rule=`` keyword, the rule argument of ``Finding``/``LimitHit``/``Anomaly`` or of
any function with a ``rule``/``rule_id`` parameter, a comparison against ``.rule``/``.rule_id``,
a ``RULE_*`` constant), and every id found must be registered, and every registered id found.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from custody import rules
from custody.rules import RULES, render_markdown

REPO = Path(__file__).resolve().parents[1]
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


# Rule ids computed from a table in the code: the table's rows, checked to be in that file.
TABLES = {
    ("signing/oms.py", "problems[0][0]"): ("oms.changed_file", "oms.missing_file",
                                           "oms.extra_file"),
    ("signing/sigstore_verify.py", "rule"): ("sigstore.tlog", "sigstore.chain",
                                             "sigstore.artifact", "sigstore.bundle",
                                             "sigstore.signature", "sigstore.verify"),
}
# A finding call that forwards a rule from an object: the callables that build such objects.
FORWARDED_BY = {"hit.rule": {"LimitHit", "_hit"}, "anomaly.rule": {"Anomaly"}}
# Registered before the code that raises them lands (issue 12 asks to include them).
PENDING = {"record.input_revoked"}


def _forwarded(expr: str) -> bool:
    """An expression that passes on another error's or finding's rule (``exc.rule``)."""
    node = ast.parse(expr, mode="eval").body
    return any(isinstance(n, ast.Attribute) and n.attr in RULE_PARAMS for n in ast.walk(node)) \
        or expr == "str(data['rule_id'])"


def _table_uses(src: Source) -> list[Use]:
    out = []
    for (path, _expr), ids in TABLES.items():
        for rid in ids:
            places = [w for w in src.literals.get(rid, []) if w.startswith(path + ":")]
            assert places, f"{rid} is listed in TABLES for {path} but not written there"
            out.append(Use(rid, places[0]))
    return out


SOURCE = scan_source()


def test_the_scan_finds_rules_of_every_shape() -> None:
    """The AST walk sees each way the code names a rule (else the checks below prove nothing)."""
    found = {u.text for u in SOURCE.uses}
    for rid in ("signature.untrusted_key",  # rule= keyword
                "zip.overlap",  # ctx.finding(...) first argument
                "pickle.global.extension",  # Anomaly(...) dataclass field
                "limit.time",  # Budget._hit(rule, ...)
                "dvc.workspace_mismatch",  # RULE_MISMATCH constant
                "pickle.global.dangerous",  # local variable from an if-expression
                "poison.injected_cluster",  # for-loop over a literal table
                "merkle.inclusion_invalid",  # a parameter's default
                "dataset.baseline_unreadable",  # f.rule_id in (...)
                "sigstore.identity"):  # exc.rule != "..."
        assert rid in found, rid
    assert {u.text for u in SOURCE.uses if u.prefix} >= {"chain.", "expectation."}
    assert len(found) > 120


def test_every_rule_id_in_the_source_is_registered() -> None:
    missing = sorted(f"{u.text} ({u.where})" for u in SOURCE.uses
                     if not u.prefix and u.text not in RULES)
    assert not missing, ("rule ids used in the code but not in custody/rules.py RULES (add them "
                         "with a summary and an action, then regenerate docs/rules.md): "
                         + "; ".join(missing))
    families = {r.family + "." for r in RULES.values()}
    bad_prefixes = sorted(f"{u.text!r} ({u.where})" for u in SOURCE.uses
                          if u.prefix and u.text not in rules.PATTERNS and u.text not in families)
    assert not bad_prefixes, ("f-string rule ids whose fixed prefix is no registered family "
                              "(add a PATTERNS entry in custody/rules.py): "
                              + "; ".join(bad_prefixes))
    computed = sorted(x for x in SOURCE.unresolved if not _forwarded(x.split(": ", 1)[1])
                      and tuple(x.split(":", 1)[:1] + x.split(": ", 1)[1:]) not in TABLES)
    assert not computed, ("rule ids computed in a way this test cannot follow: list their "
                          "possible values in TABLES here: " + "; ".join(computed))
    table_ids = sorted(u.text for u in _table_uses(SOURCE) if u.text not in RULES)
    assert not table_ids, f"table rule ids not registered in custody/rules.py: {table_ids}"


def test_every_registered_rule_is_used() -> None:
    used = {u.text for u in [*SOURCE.uses, *_table_uses(SOURCE)] if not u.prefix}
    stale = sorted(set(RULES) - used - PENDING)
    assert not stale, ("custody/rules.py registers rule ids that no code raises or reports "
                       f"(remove them, then regenerate docs/rules.md): {stale}")
    prefixes = {u.text for u in SOURCE.uses if u.prefix}
    assert set(rules.PATTERNS) <= prefixes, "a PATTERNS family that no f-string builds"


def test_finding_severities_match_the_code() -> None:
    """The registered severities are the literal ``Severity.X`` at the rule's Finding calls."""
    wrong, kinds, defaults = [], [], []
    by_rule: dict[str, list[Use]] = {}
    for u in SOURCE.uses:
        if u.finding and not u.prefix:
            by_rule.setdefault(u.text, []).append(u)
    for rid, uses in sorted(by_rule.items()):
        r = RULES[rid]
        if r.kind != "finding":
            kinds.append(f"{rid} ({uses[0].where})")
            continue
        allowed = {r.severity, *r.other_severities}
        literal = [s for u in uses for s in (u.severities or ())]
        wrong += [f"{rid}: {u.severities} at {u.where}, registered {sorted(allowed, key=str)}"
                  for u in uses if u.severities and not set(u.severities) <= allowed]
        if literal and all(u.severities for u in uses) and r.severity not in literal:
            defaults.append(f"{rid}: default {r.severity}, the code uses {sorted(set(literal))}")
    assert not kinds, f"rules built as findings but registered as refusals: {kinds}"
    assert not wrong, "severity in the code differs from custody/rules.py: " + "; ".join(wrong)
    assert not defaults, "registered default severity never used: " + "; ".join(defaults)
    # `ctx.finding(hit.rule, Severity.HIGH, ...)`: the severity of every rule a LimitHit carries
    for expr, severities in SOURCE.forwarded:
        carriers = FORWARDED_BY[expr]
        for u in SOURCE.uses:
            if u.callee in carriers and not set(severities) <= set(
                    (RULES[u.text].severity, *RULES[u.text].other_severities)):
                wrong.append(f"{u.text}: {severities} through {expr}, registered "
                             f"{RULES[u.text].severity}")
    assert not wrong, "severity in the code differs from custody/rules.py: " + "; ".join(wrong)
    pattern = rules.PATTERNS["expectation."]
    expectation = [u for u in SOURCE.uses if u.prefix and u.text == "expectation." and u.finding]
    assert expectation and all(u.severities == (pattern.severity,) for u in expectation)


def test_rule_ids_at_refusals_are_refusals_or_findings_passed_on() -> None:
    """A ``rule=`` keyword names a refusal; a finding's id reaches refusals only forwarded."""
    refusals = [u for u in SOURCE.uses if not u.finding and not u.prefix
                and u.text in RULES and RULES[u.text].kind == "finding"]
    # Findings named outside Finding calls are compared (cli.py, rows.py), never raised with rule=
    for u in refusals:
        path, line = u.where.rsplit(":", 1)
        text = (REPO / path).read_text().splitlines()[int(line) - 1]
        assert "rule=" not in text, f"{u.text} is a finding but raised as a refusal at {u.where}"


def test_severity_labels_are_the_scanners() -> None:
    from custody.validators.findings import Severity

    assert tuple(s.label for s in sorted(Severity)) == rules.SEVERITIES


def test_rules_imports_only_the_standard_library_and_errors() -> None:
    tree = ast.parse((REPO / REGISTRY).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                 and n.module and n.module.split(".")[0] != "custody"}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                 and n.module and n.module.startswith("custody")}
    allowed = {"__future__", "sys", "collections.abc", "dataclasses", "types", "custody.errors"}
    assert imported <= allowed, imported - allowed


def test_lookup() -> None:
    r = rules.rule("pickle.global.dangerous")
    assert (r.family, r.kind, r.severity) == ("pickle", "finding", "critical")
    assert rules.rule("signature.untrusted_key").severity is None
    assert rules.rule("chain.signature.invalid").id == "chain.<rule>"
    assert rules.rule("expectation.expect_column_values_to_not_be_null").severity == "medium"
    for unknown in ("nope.nothing", "chain.nope.nothing", "chain.", "expectation."):
        try:
            rules.rule(unknown)
        except LookupError as exc:
            assert repr(unknown) in str(exc) and "custody/rules.py" in str(exc)
        else:
            raise AssertionError(f"{unknown} resolved")


def test_every_rule_is_documented() -> None:
    for r in [*RULES.values(), *rules.PATTERNS.values()]:
        assert r.family and r.id.startswith(r.family)
        for text in (r.summary, r.action):
            assert len(text) > 15 and not any(w in text.lower() for w in ("todo", "tbd", "xxx")), \
                (r.id, text)


def test_docs_are_generated_from_the_registry() -> None:
    hint = "regenerate it: python -m custody.rules > docs/rules.md"
    docs = REPO / "docs" / "rules.md"
    assert docs.is_file(), f"docs/rules.md is missing; {hint}"
    assert docs.read_text() == render_markdown(), f"docs/rules.md is out of date; {hint}"
    # Follow the hint: the command prints exactly that content.
    run = subprocess.run([sys.executable, "-m", "custody.rules"], capture_output=True, text=True,
                         check=True)
    assert run.stdout == render_markdown()
    for rid in RULES:
        assert f"| `{rid}` |" in run.stdout


def test_the_commands_the_actions_name_exist(cli) -> None:  # type: ignore[no-untyped-def]
    """Following an action leads somewhere: every `custody CMD` it names is a command."""
    named = set()
    for r in [*RULES.values(), *rules.PATTERNS.values()]:
        named |= set(re.findall(r"`custody ((?:audit |dvc |policy )?[a-z]+)", r.action))
    assert {"audit verify", "lineage", "scan", "record", "bundle"} <= named
    helps = [cli(*command.split(), "--help").expect(0, "Usage").out
             for command in sorted(named | {"verify", "scan"})]
    # and every --option an action names is one that a command takes
    options = {o for r in RULES.values() for o in re.findall(r"--[a-z][a-z-]+", r.action)}
    assert options >= {"--allow-flagged", "--baseline", "--key", "--ca-cert", "--identity"}
    unknown = sorted(o for o in options if not any(o in h for h in helps))
    assert not unknown, f"actions name options the CLI does not have: {unknown}"


def test_a_real_scan_reports_registered_rules(cli) -> None:  # type: ignore[no-untyped-def]
    """The malicious sample's findings are registered, with the registered severity."""
    sample = REPO / "sample_data" / "malicious.pkl"
    result = cli("--json", "scan", sample).expect(1, "pickle.global.dangerous")
    for finding in result.json()["findings"]:
        r = rules.rule(finding["rule_id"])
        assert r.kind == "finding"
        assert finding["severity"] in (r.severity, *r.other_severities)
