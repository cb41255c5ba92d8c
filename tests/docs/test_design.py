"""The command-line contract in docs/design.md is true of the CLI.

The contract is the first fenced block under "## 5. Command-line contract". Each of its
lines is ``kachery-resource WORD... [POSITIONAL...] [OPTIONS...]  # comment``, where a
word may list alternatives (``remove|reset-key``). For every command a line names, the
test checks, in-process with click's ``CliRunner`` (``--help``, no processes):

- the command exists (its ``--help`` exits 0 and shows its own usage line);
- every ``--option`` (and ``--x/--no-x`` pair) the line shows is an option of that
  command and appears in its help;
- the positionals shown are the command's arguments, in number, with ``...`` exactly
  where the command takes any number.

So a command or option that disappears from the CLI (or is renamed) fails here until
the design map says so too.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from kachery_resource.cli import cli

DESIGN = Path(__file__).resolve().parents[2] / "docs" / "design.md"
HEADING = "## 5. Command-line contract"
PROGRAM = "kachery-resource"

_WORD = re.compile(r"[a-z][a-z0-9-]*(\|[a-z][a-z0-9-]*)*")
_POSITIONAL = re.compile(r"\[?([A-Z][A-Z0-9_]*)(\.\.\.)?\]?")
_OPTION = re.compile(r"--?[A-Za-z][A-Za-z0-9-]*")
_COMMENT = re.compile(r"\s+#\s.*$")


def contract_lines(text: str) -> list[str]:
    """The non-blank lines of the first fenced block after the contract's heading."""
    if HEADING not in text:
        raise AssertionError(f"docs/design.md has no heading {HEADING!r}")
    section = text.split(HEADING, 1)[1]
    match = re.search(r"^```[a-z]*\n(.*?)^```", section, re.S | re.M)
    if match is None:
        raise AssertionError(f"no fenced block under {HEADING!r} in docs/design.md")
    return [line for line in match.group(1).splitlines() if line.strip()]


@dataclass
class Usage:
    """One contract line, parsed."""

    line: str
    commands: list[list[str]]  # every command path it names (alternatives expanded)
    positionals: list[tuple[str, bool]]  # (name, variadic)
    options: list[str]


def parse(line: str) -> Usage:
    tokens = _COMMENT.sub("", line).split()
    if not tokens or tokens[0] != PROGRAM:
        raise AssertionError(f"a contract line must start with {PROGRAM!r}: {line!r}")
    i = 1
    words: list[list[str]] = []
    while i < len(tokens) and _WORD.fullmatch(tokens[i]):
        words.append(tokens[i].split("|"))
        i += 1
    positionals: list[tuple[str, bool]] = []
    while i < len(tokens) and (m := _POSITIONAL.fullmatch(tokens[i])):
        positionals.append((m.group(1), m.group(2) is not None))
        i += 1
    options = [piece for token in tokens[i:]
               for piece in token.strip("[]").split("/") if _OPTION.fullmatch(piece)]
    return Usage(line, [list(p) for p in itertools.product(*words)], positionals, options)


def find_command(path: list[str]) -> click.Command | None:
    """The click command at ``path`` under the ``kachery-resource`` group, or None."""
    command: click.Command = cli
    ctx = click.Context(cli, info_name=PROGRAM)
    for word in path:
        if not isinstance(command, click.Group):
            return None
        found = command.get_command(ctx, word)
        if found is None:
            return None
        command = found
        ctx = click.Context(command, parent=ctx, info_name=word)
    return command


def option_names(command: click.Command) -> set[str]:
    return {name for p in command.params if isinstance(p, click.Option)
            for name in (*p.opts, *p.secondary_opts)}


def check(usage: Usage) -> list[str]:
    """What in ``usage`` the CLI does not have (empty: the line is true)."""
    problems: list[str] = []
    runner = CliRunner()
    for path in usage.commands:
        shown = " ".join([PROGRAM, *path])
        command = find_command(path)
        result = runner.invoke(cli, [*path, "--help"], prog_name=PROGRAM)
        if command is None or result.exit_code != 0:
            problems.append(f"{shown}: no such command (--help exit {result.exit_code})")
            continue
        if f"Usage: {shown}" not in result.output:
            problems.append(f"{shown}: --help shows another command's usage")
        known = option_names(command)
        for option in usage.options:
            if option not in known:
                problems.append(f"{shown}: no option {option}")
            elif not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", result.output):
                problems.append(f"{shown}: {option} missing from --help")
        arguments = [p for p in command.params if isinstance(p, click.Argument)]
        expected = [(a.human_readable_name, a.nargs == -1) for a in arguments]
        if [v for _, v in usage.positionals] != [v for _, v in expected]:
            problems.append(f"{shown}: the line shows arguments {usage.positionals}, "
                            f"the command takes {expected} ((name, any number))")
    return problems


LINES = contract_lines(DESIGN.read_text(encoding="utf-8"))


def test_the_contract_block_is_read() -> None:
    usages = [parse(line) for line in LINES]
    top = {path[0] for u in usages for path in u.commands}
    # the original contract's commands, which must stay; a parser that read nothing fails
    assert {"gateway", "proxy", "init", "share", "link", "load", "demo", "dev"} <= top
    assert sum(len(u.commands) for u in usages) >= 20
    assert sum(len(u.options) for u in usages) >= 40


@pytest.mark.parametrize("line", LINES, ids=[" ".join(parse(x).commands[0]) for x in LINES])
def test_contract_line_is_true(line: str) -> None:
    assert check(parse(line)) == []


@pytest.mark.parametrize(("line", "expected"), [
    ("kachery-resource load URI... [--dest PATH] [--no-such-option X]",
     "kachery-resource load: no option --no-such-option"),
    ("kachery-resource gateway users add|rename NAME [--zone Z]",
     "kachery-resource gateway users rename: no such command"),
    ("kachery-resource gateway clients add CLIENT_ID [--upload/--no-uplod]",
     "kachery-resource gateway clients add: no option --no-uplod"),
    ("kachery-resource status EXTRA [--json]   # comment --not-an-option",
     "kachery-resource status: the line shows arguments"),
    ("kachery-resource link PATH [--manifest FILE]",
     "kachery-resource link: the line shows arguments"),
])
def test_drift_is_caught(line: str, expected: str) -> None:
    problems = check(parse(line))
    assert len(problems) == 1 and problems[0].startswith(expected), problems
