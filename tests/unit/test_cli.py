"""cli.main: how the console command reports usage errors (not click's own defaults)."""

from __future__ import annotations

import subprocess

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
