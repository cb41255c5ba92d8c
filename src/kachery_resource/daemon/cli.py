"""CLI commands of the daemon."""

import click

commands: list[click.Command] = []
