"""A click option for the commands' ``--help``: a text ``show_default`` reads
``[default: TEXT]`` like a plain default (click would wrap the text in parentheses)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from click.types import OptionHelpExtra


class Option(click.Option):
    """``click.Option`` whose text ``show_default`` is shown as is."""

    def get_help_extra(self, ctx: click.Context) -> OptionHelpExtra:
        extra = super().get_help_extra(ctx)
        if isinstance(self.show_default, str):
            extra["default"] = self.show_default
        return extra


option = functools.partial(click.option, cls=Option)
"""``click.option`` making an :class:`Option`."""


class Group(click.Group):
    """``click.Group`` whose command list shows each command's whole first sentence.

    click cuts the summaries to the terminal's width with "..."; ours wrap instead, so
    ``--help`` never hides the end of a description. Subgroups made with ``.group()``
    are of this class too."""

    group_class = type

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=10_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
