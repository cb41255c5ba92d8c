"""CLI commands of the client: ``load``, ``request``, ``cat``.

Exit codes (from the exception classes' ``exit_code``):

==  =====================================================================
0   success
1   other failure (e.g. downloaded bytes did not match the sha1)
2   invalid URI, configuration or client keys
3   the file is not in the zone and not on the resource (not found)
4   the zone gateway refused or could not be reached
5   the resource is offline (no daemon connected, proxy unreachable)
6   the daemon reported that uploading the file failed
7   the overall ``--timeout`` ran out
==  =====================================================================
"""

from __future__ import annotations

import json
import os
import sys

import click

from .client import load_file, request_file, stream_file
from .errors import (
    ConfigError,
    FileNotFoundOnResource,
    GatewayError,
    KacheryResourceError,
    ResourceOfflineError,
    TimeoutError_,
    UploadFailedError,
)

EXIT_CODES = (
    f"Exit codes: 0 ok, {ConfigError.exit_code} invalid URI/config/keys, "
    f"{FileNotFoundOnResource.exit_code} not found, {GatewayError.exit_code} gateway refused, "
    f"{ResourceOfflineError.exit_code} resource offline, {UploadFailedError.exit_code} upload "
    f"failed, {TimeoutError_.exit_code} timed out, {KacheryResourceError.exit_code} other."
)

_URI = click.argument("uri")
_TIMEOUT = click.option(
    "--timeout", type=click.FloatRange(min=0), default=None, metavar="S",
    help="Give up waiting for the resource's upload after S seconds (default: no limit).",
)


@click.command("load", epilog=EXIT_CODES)
@_URI
@click.option("--dest", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Also copy the file here.")
@_TIMEOUT
@click.option("--progress/--no-progress", default=None,
              help="Show progress on stderr: bars on a terminal, else a line every few seconds "
                   "(default: bars only on a terminal).")
def load_command(uri: str, dest: str | None, timeout: float | None, progress: bool | None) -> None:
    """Fetch URI and print the local path that holds it.

    URI is sha1://<sha1> or kachery:<zone>:sha1:<sha1>[:label] (a zone there wins over
    KACHERY_ZONE).

    Order: $KACHERY_CLOUD_DIR, then the zone gateway (KACHERY_GATEWAY_URL, KACHERY_ZONE),
    then the resource at KACHERY_RESOURCE_URL, which uploads it on demand.
    """
    click.echo(load_file(uri, dest, timeout=timeout, progress=progress))


@click.command("request", epilog=EXIT_CODES)
@_URI
@click.option("--wait", type=click.FloatRange(min=0, max=25), default=1.0, metavar="S",
              show_default=True, help="Let the daemon hold the request up to S seconds.")
def request_command(uri: str, wait: float) -> None:
    """Print where URI stands as JSON, asking the resource to upload it; no download.

    Exit code 3 if nobody has it, 6 if the upload failed (the other codes below).
    """
    result = request_file(uri, wait=wait)
    click.echo(json.dumps(result.to_json()))
    if result.status == "not-found":
        sys.exit(FileNotFoundOnResource.exit_code)
    if result.status == "error":
        sys.exit(UploadFailedError.exit_code)


@click.command("cat", epilog=EXIT_CODES)
@_URI
@_TIMEOUT
def cat_command(uri: str, timeout: float | None) -> None:
    """Write the bytes of URI to stdout as they arrive, fetching it like `load`.

    The sha1 is checked at the end: if the bytes were wrong the exit code is non-zero.
    A closed pipe (`cat URI | head`) ends quietly with exit code 0.
    """
    out = sys.stdout.buffer

    def write(chunk: bytes) -> None:
        out.write(chunk)
        out.flush()

    try:
        stream_file(uri, write, timeout=timeout)
    except BrokenPipeError:
        # stdout's reader is gone: nothing more to say, and nothing to flush at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)


commands: list[click.Command] = [load_command, request_command, cat_command]
