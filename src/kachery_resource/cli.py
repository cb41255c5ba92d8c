"""The ``kachery-resource`` command: a thin click group.

Each area registers its own commands in its ``commands`` list; this module only
assembles them and turns our exceptions into clean messages and exit codes.
"""

from __future__ import annotations

import importlib
import sys

import click

from .errors import KacheryResourceError
from .options import Group

COMMAND_MODULES = (
    "kachery_resource.gateway.cli",
    "kachery_resource.proxy.cli",
    "kachery_resource.daemon.cli",
    "kachery_resource.client_cli",
    "kachery_resource.demo",
)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kachery-resource")
def cli() -> None:
    """Share local files on demand with kachery clients."""


for _name in COMMAND_MODULES:
    for _command in importlib.import_module(_name).commands:
        cli.add_command(_command)


def main() -> None:
    """Console entry point: run the CLI; known failures print a message, not a traceback."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.exceptions.NoArgsIsHelpError as exc:  # a group run bare: its help
        exc.show()
        sys.exit(exc.exit_code)
    except click.ClickException as exc:  # printed like ours: "error: …", after the usage
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            click.echo(f"{exc.ctx.get_usage()}\nTry '{exc.ctx.command_path} -h' for help.\n",
                       err=True)
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except KacheryResourceError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
