"""Every ``--help`` shows defaults one way: click's ``[default: …]`` after the help text."""

from __future__ import annotations

import re
from collections.abc import Iterator

import click
from click.testing import CliRunner

from kachery_resource.cli import cli

# a default written into the help text, "(default 2)", "(default: …)", "Default: …"
DEFAULT_IN_TEXT = re.compile(r"\(default\b|(?<!\[)\bdefault:", re.IGNORECASE)


def _commands(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))


def _has_default(option: click.Option, ctx: click.Context) -> bool:
    value = option.get_default(ctx, call=False)
    if value is None or value is getattr(click.core, "UNSET", object()):
        return False
    return not (option.is_flag and not option.secondary_opts and value is False)


def test_the_walk_reaches_every_command() -> None:
    paths = {" ".join(path) for path, _ in _commands(cli)}
    expected = {"", "gateway", "gateway clients add", "gateway users add", "proxy",
                "proxy tokens add", "init", "share", "link", "unlink", "status", "doctor",
                "service install", "load", "cat", "request", "demo", "dev"}
    assert expected <= paths, expected - paths


def test_every_default_is_shown_as_click_shows_one() -> None:
    problems = []
    for path, command in _commands(cli):
        result = CliRunner().invoke(cli, [*path, "--help"], terminal_width=1000)
        assert result.exit_code == 0, (path, result.output)
        for line in result.output.splitlines():
            if DEFAULT_IN_TEXT.search(line):
                problems.append(f"{' '.join(path)}: default in the help text: {line.strip()}")
        ctx = click.Context(command, info_name=command.name)
        for param in command.params:
            if not isinstance(param, click.Option) or param.hidden:
                continue
            record = param.get_help_record(ctx)
            if _has_default(param, ctx) and (record is None or "[default: " not in record[1]):
                problems.append(f"{' '.join(path)} {param.opts[-1]}: default "
                                f"{param.get_default(ctx, call=False)!r} not shown")
    assert not problems, "\n".join(problems)


def test_a_text_default_reads_like_a_plain_one() -> None:
    result = CliRunner().invoke(cli, ["link", "--help"], terminal_width=1000)
    assert "[default: twice the CPUs, at most 8; 1<=x<=256]" in result.output, result.output
