"""CLI commands of the gateway."""

import click

commands: list[click.Command] = []
