"""cli.main: how the console command reports usage errors (not click's own defaults)."""

from __future__ import annotations

import subprocess

import click

from ..servers import BIN


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "kachery-resource"), *args], capture_output=True, text=True,
                          timeout=60)


def test_a_usage_error_is_an_error_line_after_the_usage() -> None:
    done = run("cat")
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["Usage: kachery-resource cat [OPTIONS] URI",
                                        "Try 'kachery-resource cat -h' for help.", "",
                                        "error: Missing argument 'URI'."]


def test_a_group_run_bare_shows_its_help() -> None:
    done = run("proxy", "tokens")
    text = done.stdout + done.stderr
    assert text.startswith("Usage: kachery-resource proxy tokens [OPTIONS] COMMAND")
    assert "error:" not in text and "Commands:" in text


def _groups(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _groups(command, (*path, name))
    return found


def test_every_help_lists_whole_command_descriptions() -> None:
    """click cuts summaries with '...'; ours show each command's whole first sentence."""
    from click.testing import CliRunner

    from kachery_resource.cli import cli

    groups = _groups(cli)
    assert ("gateway", "clients") in groups and ("proxy", "tokens") in groups
    for path in groups:
        result = CliRunner().invoke(cli, [*path, "--help"], terminal_width=80)
        assert result.exit_code == 0, result.output
        listing = result.output.split("Commands:", 1)[1]
        assert "..." not in listing, (path, listing)
