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
from typing import TextIO

import click

from .client import load_file, request_file, stream_file
from .client.many import DEFAULT_JOBS, load_files
from .errors import (
    ConfigError,
    FileNotFoundOnResource,
    GatewayError,
    KacheryResourceError,
    ResourceOfflineError,
    TimeoutError_,
    UploadFailedError,
)
from .options import option

EXIT_CODES = (
    f"Exit codes: 0 ok, {ConfigError.exit_code} invalid URI/config/keys, "
    f"{FileNotFoundOnResource.exit_code} not found, {GatewayError.exit_code} gateway refused, "
    f"{ResourceOfflineError.exit_code} resource offline, {UploadFailedError.exit_code} upload "
    f"failed, {TimeoutError_.exit_code} timed out, {KacheryResourceError.exit_code} other."
)

_URI = click.argument("uri")
_TIMEOUT = option(
    "--timeout", type=click.FloatRange(min=0), default=None, metavar="S",
    show_default="no limit, and an offline resource fails at once",
    help="Wait at most S seconds for the resource's upload, meanwhile waiting for a resource "
         "that is offline or restarting.",
)


@click.command("load", epilog=EXIT_CODES)
@click.argument("uris", nargs=-1, metavar="URI...")
@click.option("--from", "from_file", type=click.File("r"), default=None, metavar="FILE",
              help="Also read URIs from FILE, one a line ('-' for stdin; blank lines and "
                   "lines starting with # are skipped).")
@click.option("--dest", default=None, metavar="PATH",
              help="Also copy the file here; an existing directory receives it under the "
                   "URI's label, else its sha1 (with several URIs, a directory is required).")
@_TIMEOUT
@option("--progress/--no-progress", default=None, show_default="bars only on a terminal",
        help="Show progress on stderr: bars on a terminal, else a line every few seconds.")
@click.option("--jobs", "-j", type=click.IntRange(min=1, max=64), default=DEFAULT_JOBS, metavar="N",
              show_default=True, help="Fetch up to this many files at once.")
def load_command(uris: tuple[str, ...], from_file: TextIO | None, dest: str | None,
                 timeout: float | None, progress: bool | None, jobs: int) -> None:
    """Fetch each URI and print the local path that holds it, one line per URI, in order.

    URI is sha1://<sha1> or kachery:<zone>:sha1:<sha1>[:label] (a zone there wins over
    KACHERY_ZONE). Order: $KACHERY_CLOUD_DIR, then the zone gateway (KACHERY_GATEWAY_URL,
    KACHERY_ZONE), then the resource at KACHERY_RESOURCE_URL, which uploads it on demand.

    Several URIs are fetched in parallel. A URI that fails gets an empty line on stdout
    and an "error: URI: …" line on stderr; the exit code is then the highest of theirs.
    """
    todo = list(uris) + (_read_uris(from_file) if from_file is not None else [])
    if not todo:
        raise click.UsageError("give at least one URI, or --from FILE")
    if len(todo) == 1:
        click.echo(load_file(todo[0], dest, timeout=timeout, progress=progress))
        return
    worst = 0
    for outcome in load_files(todo, dest, timeout=timeout, progress=progress, jobs=jobs):
        click.echo(outcome.path or "")
        if outcome.error is not None:
            click.echo(f"error: {outcome.uri}: {outcome.error}", err=True)
        worst = max(worst, outcome.exit_code)
    sys.exit(worst)


def _read_uris(lines: TextIO) -> list[str]:
    stripped = (line.strip() for line in lines)
    return [line for line in stripped if line and not line.startswith("#")]


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
