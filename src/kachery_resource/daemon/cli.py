"""CLI commands of the resource daemon: ``init``, ``share``, ``link``, ``unlink``,
``status``, ``doctor``, ``service``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import click

from ..config import CONFIG_FILE_NAME, DEFAULT_MAX_CONCURRENT_UPLOADS, DEFAULT_ZONE, load_config
from ..options import Group, option
from ..store import LocalStore
from .logs import setup_logging
from .service import Unit
from .state import state_dir_for

CONFIG_OPTION = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
    default=CONFIG_FILE_NAME, show_default=True, help="Config written by `init`.")


def store_here(config_path: Path = Path(CONFIG_FILE_NAME)) -> LocalStore:
    """The store ``share`` uses: the config's (``KACHERY_CLOUD_DIR`` wins) when there is a
    config here, else ``KACHERY_CLOUD_DIR`` / ``~/.kachery-cloud``."""
    if config_path.is_file():
        config = load_config(config_path)
        return LocalStore(config.store_dir(), also=[config.kachery_dir()])
    return LocalStore.from_env()


def zone_here(config_path: Path = Path(CONFIG_FILE_NAME)) -> str:
    """The zone of the resource here: the config's, else ``KACHERY_ZONE``, else default."""
    if config_path.is_file():
        return load_config(config_path).zone
    return os.environ.get("KACHERY_ZONE") or DEFAULT_ZONE


@click.command("init")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              default=CONFIG_FILE_NAME, show_default=True, help="Config file to write.")
@click.option("--name", help="Resource name (letters, digits, _ - .).")
@option("--zone", show_default="the existing file's, else '.'",
        help="Kachery zone ('.' = the zone named 'default').")
@option("--max-concurrent-uploads", "max_uploads", metavar="INTEGER",
        show_default=f"the existing file's, else {DEFAULT_MAX_CONCURRENT_UPLOADS}",
        help="Uploads at once.")
@click.option("--proxy-url", help="URL of the kachery-resource proxy.")
@click.option("--proxy-secret", help="Proxy secret (prompted hidden if omitted).")
@option("--gateway-url", show_default="$KACHERY_GATEWAY_URL if set (recorded), else the "
        "existing file's", help="Zone gateway URL ('.' removes it).")
@option("--kachery-cloud-dir", show_default="$KACHERY_CLOUD_DIR if set (recorded), else the "
        "existing file's", help="The store ('.' removes it).")
@click.option("-y", "--defaults", "use_defaults", is_flag=True,
              help="Take unspecified values from the existing file/defaults without prompting.")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Check the store, proxy, secret, gateway, zone and upload rights before "
                   "writing.")
def init_command(config_path: Path, name: str | None, zone: str | None, max_uploads: str | None,
                 proxy_url: str | None, proxy_secret: str | None, gateway_url: str | None,
                 kachery_cloud_dir: str | None, use_defaults: bool, check: bool) -> None:
    """Write kachery-resource.yaml (asks for what flags do not give) and ensure client keys.

    KACHERY_GATEWAY_URL and KACHERY_CLOUD_DIR, when set, are recorded in the file, so that
    `share` in a new shell uses them too (the environment still wins when set)."""
    from .setup import run_init

    run_init(config_path, name=name, zone=zone, max_uploads=max_uploads, proxy_url=proxy_url,
             proxy_secret=proxy_secret, gateway_url=gateway_url, use_defaults=use_defaults,
             kachery_cloud_dir=kachery_cloud_dir, check=check)


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
@option("--manifest", type=click.Path(dir_okay=False, path_type=Path), show_default="stdout",
        help="Write the manifest to this file (its directory is checked before hashing starts; "
             "the file appears whole at the end).")
@click.option("--format", "fmt", type=click.Choice(["tsv", "jsonl"]), default="tsv",
              show_default=True, help="Manifest format.")
@option("-j", "--jobs", "workers", type=click.IntRange(1, 256),
        show_default="twice the CPUs, at most 8", help="Files hashed in parallel.")
@click.option("--uris", "uri_form", type=click.Choice(["sha1", "kachery"]), default="sha1",
              show_default=True,
              help="URI form in the manifest: sha1://HASH (kachery-cloud), or "
                   "kachery:ZONE:sha1:HASH (kachery 2.x; the zone of kachery-resource.yaml here, "
                   "else $KACHERY_ZONE, else 'default').")
def link_command(paths: tuple[Path, ...], manifest: Path | None, fmt: str,
                 workers: int | None, uri_form: str) -> None:
    """Link files or whole trees into the local store (kachery-cloud records) and print a manifest."""
    from ..uri import kachery_uri, sha1_uri
    from .link import link_with_progress, write_manifest

    zone = zone_here()
    to_uri = sha1_uri if uri_form == "sha1" else lambda sha1: kachery_uri(sha1, zone)

    if manifest is not None and not os.access(manifest.parent, os.W_OK):
        problem = "does not exist" if not manifest.parent.is_dir() else "is not writable"
        raise click.BadParameter(f"the directory {manifest.parent} {problem}",
                                 param_hint="'--manifest'")
    report = link_with_progress(list(paths), store_here(), workers)
    if manifest is None:
        write_manifest(report.files, sys.stdout, fmt, to_uri)
    else:
        partial = manifest.with_name(f".{manifest.name}.partial")
        with open(partial, "w", encoding="utf-8") as out:
            write_manifest(report.files, out, fmt, to_uri)
        os.replace(partial, manifest)
    for path, message in report.errors:
        click.echo(f"error: {path}: {message}", err=True)
    click.echo(report.summary(), err=True)
    if report.errors:
        sys.exit(1)


@click.command("unlink")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def unlink_command(paths: tuple[Path, ...]) -> None:
    """Remove the link records of files or whole trees (moved or deleted ones too), so that
    they are no longer offered. The files themselves are not touched."""
    from .link import plural, unlink_paths

    counts = unlink_paths(list(paths), store_here())
    for path, removed in counts.items():
        if removed == 0:
            click.echo(f"error: nothing is linked at or under {path}", err=True)
    total = sum(counts.values())
    click.echo(f"unlinked {plural(total, 'file')}", err=True)
    if 0 in counts.values():
        sys.exit(1)


@click.command("status")
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the state as JSON.")
def status_command(config_path: Path, as_json: bool) -> None:
    """Whether this directory's `share` runs and is connected, since when, through which
    proxy, files served, uploads in flight, recent failures. Exit 0 when connected, 1 not."""
    import json

    from .status import render, status_of

    status = status_of(state_dir_for(config_path))
    click.echo(json.dumps(status, indent=1) if as_json else "\n".join(render(status)))
    sys.exit(0 if status.get("connected") else 1)


@click.command("doctor")
@CONFIG_OPTION
def doctor_command(config_path: Path) -> None:
    """Check everything `share` needs (store, keys, proxy and secret, gateway, zone, upload
    rights, clocks, linked files): one line per check with its fix; exit 0 only if all pass."""
    from .. import servers
    from .doctor import diagnose

    checks = servers.run(diagnose(load_config(config_path), state_dir_for(config_path)))
    for item in checks:
        click.echo(item.line())
    failed = sum(1 for c in checks if not c.ok)
    click.echo(f"{len(checks) - failed} of {len(checks)} checks passed", err=True)
    sys.exit(1 if failed else 0)


@click.group("service", cls=Group)
def service_group() -> None:
    """Run `share` for this directory as a service: a systemd user unit (Linux) or a launchd
    agent (macOS), restarted on failure, logging to the journal. See docs/daemon.md."""


def _service_options(f: Callable[..., None]) -> Callable[..., None]:
    f = click.option("--platform", type=click.Choice(["linux", "darwin"]),
                     default="darwin" if sys.platform == "darwin" else "linux", show_default=True,
                     help="Which service manager to write for (systemd on linux, launchd on "
                          "darwin).")(f)
    f = option("--unit-dir", type=click.Path(file_okay=False, path_type=Path),
               show_default="~/.config/systemd/user or ~/Library/LaunchAgents",
               help="Write the unit here and leave the service manager alone.")(f)
    return CONFIG_OPTION(f)


def _run_manager(unit: Unit, action: str) -> int:
    from .service import manage, manager_problem

    problem = manager_problem(unit.kind)
    if problem is not None:
        commands = " && ".join(" ".join(c) for c in manage(unit, action))
        verb = {"install": "started", "uninstall": "stopped", "status": "asked"}[action]
        click.echo(f"warning: {problem}, so the service was not {verb}; where it works, run: "
                   f"{commands}", err=True)
        return 1
    for command in manage(unit, action):
        code = subprocess.run(command).returncode
        if code != 0:
            click.echo(f"error: `{' '.join(command)}` failed (exit {code})", err=True)
            return code
    return 0


def _unit_for(config_path: Path, platform: str, unit_dir: Path | None) -> Unit:
    from .service import make_unit

    return make_unit(load_config(config_path), config_path, platform=platform, unit_dir=unit_dir)


@service_group.command("install")
@_service_options
@click.option("--dry-run", is_flag=True, help="Print the unit and where it would go; change nothing.")
def service_install(config_path: Path, unit_dir: Path | None, platform: str, dry_run: bool) -> None:
    """Write the unit for this directory's `share`, enable and start it."""
    from .service import logs_hint

    unit = _unit_for(config_path, platform, unit_dir)
    if dry_run:
        click.echo(f"# {unit.path}\n{unit.text}")
        return
    unit.path.parent.mkdir(parents=True, exist_ok=True)
    unit.path.write_text(unit.text, encoding="utf-8")
    click.echo(f"wrote {unit.path}", err=True)
    if unit_dir is None:
        if code := _run_manager(unit, "install"):
            sys.exit(code)
        click.echo(f"started {unit.name}; {logs_hint(unit)}", err=True)


@service_group.command("uninstall")
@_service_options
def service_uninstall(config_path: Path, unit_dir: Path | None, platform: str) -> None:
    """Stop and disable this directory's service and remove its unit."""
    unit = _unit_for(config_path, platform, unit_dir)
    if not unit.path.exists():
        click.echo(f"error: no unit at {unit.path}", err=True)
        sys.exit(1)
    code = 0 if unit_dir is not None else _run_manager(unit, "uninstall")
    unit.path.unlink()
    click.echo(f"removed {unit.path}", err=True)
    sys.exit(code)


@service_group.command("status")
@_service_options
def service_status(config_path: Path, unit_dir: Path | None, platform: str) -> None:
    """Whether the unit is installed, and what the service manager says about it."""
    unit = _unit_for(config_path, platform, unit_dir)
    if not unit.path.exists():
        click.echo(f"not installed (no {unit.path}); run `kachery-resource service install`")
        sys.exit(1)
    click.echo(f"installed: {unit.path}")
    sys.exit(_run_manager(unit, "status"))


commands: list[click.Command] = [init_command, share_command, link_command, unlink_command,
                                 status_command, doctor_command, service_group]
