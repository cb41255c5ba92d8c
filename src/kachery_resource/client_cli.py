"""CLI commands of the client (load, request, cat)."""

import click

commands: list[click.Command] = []
