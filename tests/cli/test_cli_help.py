"""``--help`` of every command: an example that really parses, the choices of the enumerated
options, one placeholder style, line breaks kept when not on a terminal (issue 11).

The tests walk the command tree, so a command added without an example fails them."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import typer

from custody._commands.common import Threshold
from custody.cli import app
from custody.domain import Activity, Kind, Role

ROOT: Any = typer.main.get_command(app)
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*(\|[A-Z][A-Z0-9_]*)*$")
EXAMPLE_LINE = re.compile(r"^ +(custody( .*)?)$")


def walk(command: Any = ROOT, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from walk(sub, (*path, name))


COMMANDS = list(walk())
IDS = [" ".join(p) or "custody" for p, _ in COMMANDS]


def examples(help_text: str) -> list[str]:
    """The invocations listed under the Example(s): heading of a help text."""
    lines = help_text.splitlines()
    heads = [i for i, line in enumerate(lines) if line.strip() in ("Example:", "Examples:")]
    assert len(heads) == 1, help_text
    found = []
    for line in lines[heads[0] + 1:]:
        match = EXAMPLE_LINE.match(line)
        if match is None:
            break
        found.append(match.group(1))
    return found


def parse(invocation: str) -> tuple[tuple[str, ...], Any]:
    """Parse an example as the CLI would, without running it: the command path it names and the
    parsed context (a usage error raises)."""
    argv = shlex.split(invocation)
    assert argv[0] == "custody"
    rest = argv[1:]
    flags = {o for p in ROOT.params if p.is_flag for o in (*p.opts, *p.secondary_opts)}
    valued = {o for p in ROOT.params if not p.is_flag for o in p.opts}
    while rest and rest[0].startswith("--"):
        assert rest[0] in flags | valued, (invocation, rest[0])
        rest = rest[2:] if rest[0] in valued else rest[1:]
    command, path = ROOT, ()
    while hasattr(command, "commands"):
        assert rest, invocation
        command, path, rest = command.commands[rest[0]], (*path, rest[0]), rest[1:]
    return path, command.make_context(path[-1], rest)


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_every_command_has_examples_that_parse(cli, path, command) -> None:  # type: ignore[no-untyped-def]
    text = cli(*path, "--help").expect(0).out
    found = examples(text)
    assert found, text
    for invocation in found:
        named, _ = parse(invocation)
        assert named[:len(path)] == path, (invocation, path)  # a group's example: its commands
        if not hasattr(command, "commands"):
            assert named == path, (invocation, path)


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_one_placeholder_style(cli, path, command) -> None:  # type: ignore[no-untyped-def]
    for param in command.params:
        if param.param_type_name == "option" and (param.is_flag or param.count):
            continue
        metavar = param.metavar or (param.name.upper() if param.param_type_name == "argument"
                                    else None)
        assert metavar is not None and PLACEHOLDER.match(metavar), (path, param.opts, metavar)
    text = cli(*path, "--help").expect(0).out
    usage = text.splitlines()[0]
    assert "{" not in usage and "<" not in usage, usage
    assert not re.search(r"<[a-z ]+>", text), text  # Typer's own <path>, <int range>


CHOICES: list[tuple[tuple[str, ...], str, type[Any]]] = [
    (("record",), "--kind", Kind),
    (("record",), "--activity", Activity),
    (("record",), "--threshold", Threshold),
    (("scan",), "--threshold", Threshold),
    (("verify",), "--threshold", Threshold),
    (("dvc", "import"), "--threshold", Threshold),
    (("token", "create"), "--role", Role),
]


@pytest.mark.parametrize(("path", "option", "choices"), CHOICES)
def test_help_lists_the_choices(cli, path, option, choices) -> None:  # type: ignore[no-untyped-def]
    text = " ".join(cli(*path, "--help").expect(0).out.split())
    listed = ", ".join(c.value for c in choices)
    last = listed.rsplit(", ", 1)
    assert " or ".join(last) in text, (option, text)


@pytest.mark.parametrize(("path", "option", "choices"), CHOICES)
def test_an_unknown_choice_is_a_usage_error_listing_the_choices(cli, tmp_path, path, option,  # type: ignore[no-untyped-def]
                                                                choices) -> None:
    args = {"record": [str(tmp_path), "--name", "x", "--kind", "model"],
            "scan": [str(tmp_path)], "verify": [str(tmp_path)]}.get(path[0], [])
    result = cli(*path, *args, option, "bogus", cwd=tmp_path)
    result.expect(2, option, "bogus", *(c.value for c in choices))


def test_choices_agree_with_the_modules_that_check_them() -> None:
    from custody.domain import ACTIVITIES, KINDS
    from custody.provenance.service.tokens import ROLES
    from custody.validators.findings import Severity

    assert tuple(k.value for k in Kind) == KINDS
    assert tuple(a.value for a in Activity) == ACTIVITIES
    assert tuple(r.value for r in Role) == ROLES
    assert [t.value for t in Threshold] == [s.label for s in sorted(Severity)]


def test_a_choice_is_case_insensitive_for_severities(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "a.txt").write_text("hello\n", encoding="utf-8")
    cli("scan", tmp_path / "a.txt", "--threshold", "HIGH").expect(0)


def test_token_group_help_says_what_the_commands_do(cli) -> None:  # type: ignore[no-untyped-def]
    text = " ".join(cli("token", "--help").expect(0).out.split())
    for word in ("Create, list and revoke", "custody serve", "ledger database", "SHA-256",
                 "create", "list", "revoke"):
        assert word in text, (word, text)


def test_scan_baseline_help_says_what_it_compares(cli) -> None:  # type: ignore[no-untyped-def]
    text = " ".join(cli("scan", "--help").expect(0).out.split())
    for words in ("Parquet or CSV table", "(schema, drift and poisoning rules)",
                  "recorded in this workspace's ledger (its stored profile and reference)",
                  "Without it scan checks PATH on its own"):
        assert words in text, (words, text)
    assert "previous version of NAME" not in text  # that is record's default, not scan's


def test_examples_keep_their_lines_outside_a_terminal() -> None:
    """A subprocess has no terminal (and here no COLUMNS): the examples are still one per
    line, unwrapped, as in the source."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    run = subprocess.run([sys.executable, "-m", "custody.cli", "record", "--help"],
                         capture_output=True, text=True, check=False, env=env)
    assert run.returncode == 0, run.stderr
    found = examples(run.stdout)
    assert "custody record models/resnet --name resnet --kind model --sigstore --bundle-out "\
        "rn.sigstore" in found, run.stdout
    assert len(found) == 4, run.stdout  # the last one reads from an object store


def test_a_new_command_without_an_example_fails_the_walk(cli) -> None:  # type: ignore[no-untyped-def]
    """The check itself: a help text without an Example(s): section is caught."""
    extra = typer.Typer(rich_markup_mode=None)

    @extra.command()
    def bare() -> None:
        """No example here."""

    @extra.command()
    def other() -> None:
        """Neither."""

    from typer.testing import CliRunner

    out = CliRunner().invoke(extra, ["bare", "--help"]).output
    with pytest.raises(AssertionError):
        examples(out)
