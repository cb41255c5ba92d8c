"""kachery-resource demo and dev: the whole stack on loopback."""

import click

commands: list[click.Command] = []
