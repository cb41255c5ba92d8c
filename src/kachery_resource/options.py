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
