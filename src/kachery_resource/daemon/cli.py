"""CLI commands of the resource daemon: ``init``, ``share``, ``link``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ..config import CONFIG_FILE_NAME, load_config
from ..store import LocalStore
from .logs import setup_logging

STATE_DIR_NAME = ".kachery-resource"


def state_dir_for(config_path: Path) -> Path:
    """The daemon's own state (the upload journal): ``.kachery-resource/`` beside the config."""
    return config_path.resolve().parent / STATE_DIR_NAME


@click.command("init")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              default=CONFIG_FILE_NAME, show_default=True, help="Config file to write.")
@click.option("--name", help="Resource name (letters, digits, _ - .).")
@click.option("--zone", help="Kachery zone ('.' for default).")
@click.option("--max-concurrent-uploads", "max_uploads", metavar="INTEGER",
              help="Uploads at once (default 2).")
@click.option("--proxy-url", help="URL of the kachery-resource proxy.")
@click.option("--proxy-secret", help="Proxy secret (prompted hidden if omitted).")
@click.option("--gateway-url", help="Zone gateway URL (optional; '.' removes it).")
@click.option("-y", "--defaults", "use_defaults", is_flag=True,
              help="Take unspecified values from the existing file/defaults without prompting.")
def init_command(config_path: Path, name: str | None, zone: str | None, max_uploads: str | None,
                 proxy_url: str | None, proxy_secret: str | None, gateway_url: str | None,
                 use_defaults: bool) -> None:
    """Write kachery-resource.yaml (asks for what flags do not give) and ensure client keys."""
    from .setup import run_init

    run_init(config_path, name=name, zone=zone, max_uploads=max_uploads, proxy_url=proxy_url,
             proxy_secret=proxy_secret, gateway_url=gateway_url, use_defaults=use_defaults)


@click.command("share")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              default=CONFIG_FILE_NAME, show_default=True, help="Config written by `init`.")
@click.option("-v", "--verbose", is_flag=True, help="Log more than one line per event.")
def share_command(config_path: Path, verbose: bool) -> None:
    """Serve the files of the local store to clients through the proxy (until Ctrl-C)."""
    from .share import run

    setup_logging(verbose)
    run(load_config(config_path), state_dir=state_dir_for(config_path))


@click.command("link")
@click.argument("paths", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path))
@click.option("--manifest", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the manifest here instead of stdout (its directory is checked before "
                   "hashing starts; the file appears whole at the end).")
@click.option("--format", "fmt", type=click.Choice(["tsv", "jsonl"]), default="tsv",
              show_default=True, help="Manifest format.")
@click.option("-j", "--jobs", "workers", type=click.IntRange(1, 256),
              help="Files hashed in parallel.")
def link_command(paths: tuple[Path, ...], manifest: Path | None, fmt: str,
                 workers: int | None) -> None:
    """Link files or whole trees into the local store (kachery-cloud records) and print a manifest."""
    from .link import link_with_progress, write_manifest

    if manifest is not None and not os.access(manifest.parent, os.W_OK):
        problem = "does not exist" if not manifest.parent.is_dir() else "is not writable"
        raise click.BadParameter(f"the directory {manifest.parent} {problem}",
                                 param_hint="'--manifest'")
    report = link_with_progress(list(paths), LocalStore.from_env(), workers)
    if manifest is None:
        write_manifest(report.files, sys.stdout, fmt)
    else:
        partial = manifest.with_name(f".{manifest.name}.partial")
        with open(partial, "w", encoding="utf-8") as out:
            write_manifest(report.files, out, fmt)
        os.replace(partial, manifest)
    for path, message in report.errors:
        click.echo(f"error: {path}: {message}", err=True)
    click.echo(f"linked {len(report.files)} files ({report.hashed} hashed, "
               f"{len(report.files) - report.hashed} unchanged, {len(report.errors)} failed) "
               f"in {report.seconds:.1f} s", err=True)
    if report.errors:
        sys.exit(1)


commands: list[click.Command] = [init_command, share_command, link_command]
