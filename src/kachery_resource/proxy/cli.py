"""CLI commands of the proxy."""

import click

commands: list[click.Command] = []
