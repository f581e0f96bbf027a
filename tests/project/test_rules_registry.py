"""The rule registry (custody/rules.py) matches the rule ids the code actually raises and reports.

tests/rule_sources.py reads the package source as syntax trees and finds every place that names
a rule id; every id found must be registered, every registered id found, the severities at
``Finding`` calls must be the registered ones, and docs/rules.md must be the generated file.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from typing import Any

from support import rule_sources as collector

from custody import rules
from custody.rules import RULES, render_markdown

REPO, REGISTRY, RULE_PARAMS = collector.REPO, collector.REGISTRY, collector.RULE_PARAMS
Use = collector.Use


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


def _forwarded(expr: str) -> bool:
    """An expression that passes on another error's or finding's rule (``exc.rule``)."""
    node = ast.parse(expr, mode="eval").body
    return any(isinstance(n, ast.Attribute) and n.attr in RULE_PARAMS for n in ast.walk(node)) \
        or expr in ("str(data['rule_id'])", "body['rule']")  # the service's own refusal


def _table_uses(src: Any) -> list[Any]:
    out = []
    for (path, _expr), ids in TABLES.items():
        for rid in ids:
            places = [w for w in src.literals.get(rid, []) if w.startswith(path + ":")]
            assert places, f"{rid} is listed in TABLES for {path} but not written there"
            out.append(Use(rid, places[0]))
    return out


SOURCE = collector.scan_source()


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
    stale = sorted(set(RULES) - used)
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
            # Markdown would swallow <word> outside code spans as an HTML tag
            assert "<" not in re.sub(r"`[^`]*`", "", text), (r.id, text)


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
