"""CLI commands of the gateway: ``gateway`` (run the server), ``gateway clients add|list|remove``
(and ``gateway users …``, users_cli.py)."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from click.core import ParameterSource

from ..errors import ConfigError
from ..identity import is_client_id
from ..options import Group, option
from .cli_common import config_option as _config_option
from .cli_common import endpoint_option as _endpoint_option
from .cli_common import open_zone as _zone
from .cli_common import read_settings as _settings
from .cli_common import run_on_zone
from .cli_common import storage_option as _storage_option
from .cli_common import zone_option as _zone_option
from .settings import GatewaySettings, load_settings
from .users_cli import users

if TYPE_CHECKING:
    from .registry import ClientRecord, ClientRegistry
    from .zones import Zone

T = TypeVar("T")

@click.group("gateway", cls=Group, invoke_without_command=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Port; 0 picks a free one.")
@_storage_option
@_config_option
@_endpoint_option
@option("--public-url", metavar="URL", show_default="the URL each request came to",
              help="The gateway's http(s) URL as clients see it, the base of signed URLs "
                   "(overrides the config's publicUrl).")
@click.option("--timestamp-window", type=float, metavar="SECONDS", show_default=True,
              default=int(GatewaySettings.model_fields["timestamp_window_sec"].default),
              help="Accepted clock skew of signed requests (overrides the config's timestampWindowSec).")
@click.option("--allow-public-upload", is_flag=True, default=None,
              help="Every zone: any approved client may upload (overrides allowPublicUpload).")
@click.option("--auto-approve-clients", is_flag=True, default=None,
              help="Every zone: /registerClient approves at once, with upload + download "
                   "(overrides autoApproveClients).")
@click.option("--no-public-download", is_flag=True, default=None,
              help="Every zone: only approved clients with the download right may download "
                   "(overrides allowPublicDownload).")
@click.option("--no-on-demand", is_flag=True, default=None,
              help="Every zone: findFile does not ask the zone's resources for missing files "
                   "(overrides onDemand).")
@option("--access-log", "access_log", default=None, metavar="-|FILE",
        show_default="the config's accessLog, else - (stderr)",
        help="One JSON line per request (time, client, method, path, status, bytes, duration, "
             "the resource that served an on-demand find): '-' (stderr) or a file (appended).")
@click.option("--no-access-log", is_flag=True, default=False, help="Write no access log.")
@click.pass_context
def gateway(ctx: click.Context, host: str, port: int, storage: str | None, config: Path | None,
            s3_endpoint_url: str | None, public_url: str | None, timestamp_window: float | None,
            allow_public_upload: bool | None, auto_approve_clients: bool | None,
            no_public_download: bool | None, no_on_demand: bool | None, access_log: str | None,
            no_access_log: bool) -> None:
    """Run the zone gateway (the server kachery-cloud calls KACHERY_GATEWAY_URL).

    Prints its URL as the first line. With `clients …` manage client registrations instead.
    """
    ctx.find_root().meta["gateway"] = {"storage": storage, "config": config,
                                       "s3_endpoint_url": s3_endpoint_url}
    if ctx.invoked_subcommand is not None:
        return
    if ctx.get_parameter_source("timestamp_window") is ParameterSource.DEFAULT:
        timestamp_window = None  # the config's timestampWindowSec, else the same default
    settings = load_settings(config, storage=storage, overrides={
        "s3EndpointUrl": s3_endpoint_url, "publicUrl": public_url,
        "timestampWindowSec": timestamp_window,
        "accessLog": "off" if no_access_log else access_log})
    for zone in settings.zones.values():
        if allow_public_upload:
            zone.allow_public_upload = True
        if auto_approve_clients:
            zone.auto_approve_clients = True
        if no_public_download:
            zone.allow_public_download = False
        if no_on_demand:
            zone.on_demand = False
    from ..servers import run, serve
    from .app import build_app
    from .requestlog import GatewayAccessLogger
    from .zones import check_zones, close_zones, describe, open_zones, verification

    zones = open_zones(settings)
    app = build_app(settings, zones)

    async def announce(url: str) -> None:
        for zone in zones.values():
            click.echo(describe(zone) + verification(zone))
        where = f" --config {config}" if config else f" --storage {settings.storage}"
        click.echo(f"point kachery-cloud at it: export KACHERY_GATEWAY_URL={url}")
        click.echo("approve a client: kachery-resource gateway clients add CLIENT_ID --upload" + where)
        click.echo(f"point kachery 2.x at it: export KACHERY_BASE_URL={url}; a user and its API "
                   "key: kachery-resource gateway users add NAME --upload" + where)

    async def main() -> None:
        try:
            await check_zones(zones)  # refuse to start on an unusable bucket, before listening
        except BaseException:
            await close_zones(zones)
            raise
        await serve(app, host, port, on_started=announce, access_log_class=GatewayAccessLogger)

    run(main())


@gateway.group("clients")
def clients() -> None:
    """Add, list and remove the clients of a zone (works while the gateway runs)."""


def _run(make: Callable[[ClientRegistry], Coroutine[Any, Any, T]], zone: Zone) -> T:
    return run_on_zone(lambda z: make(z.registry), zone)


def _client_id(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not is_client_id(value):
        raise click.BadParameter("a client id is 64 lowercase hexadecimal characters")
    return value


@clients.command("add")
@click.argument("client_id", callback=_client_id)
@_storage_option
@_config_option
@_endpoint_option
@_zone_option
@click.option("--upload/--no-upload", default=False, show_default=True, help="May upload.")
@click.option("--download/--no-download", default=True, show_default=True,
              help="May download (matters where public download is off).")
@click.option("--admin/--no-admin", default=False, show_default=True, help="May delete files.")
@option("--label", default=None, show_default="unchanged, or empty",
              help="A name for the client.")
@option("--owner", default=None, show_default="unchanged, or 'admin'",
              help="Who owns the client (shown by kachery-cloud-init).")
def clients_add(client_id: str, storage: str | None, config: Path | None, s3_endpoint_url: str | None,
                zone: str, upload: bool, download: bool, admin: bool, label: str | None,
                owner: str | None) -> None:
    """Register CLIENT_ID in a zone with the given rights (approves a pending request)."""
    from .registry import ClientRecord, now_ms

    z = _zone(_settings(storage, config, s3_endpoint_url), zone)

    async def add(registry: ClientRegistry) -> ClientRecord:
        old = await registry.get(client_id)
        record = ClientRecord(
            clientId=client_id, zone=zone,
            label=label if label is not None else (old.label if old else ""),
            ownerId=owner if owner is not None else (old.ownerId if old and old.ownerId else "admin"),
            timestampCreated=old.timestampCreated if old else now_ms(),
            approved=True, upload=upload, download=download, admin=admin,
        )
        await registry.put(record)
        return record

    record = _run(add, z)
    click.echo(f"client {record.clientId} in zone {zone}: {record.rights()} "
               f"(written to {z.storage.description})")


@clients.command("list")
@_storage_option
@_config_option
@_endpoint_option
@_zone_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of the records.")
def clients_list(storage: str | None, config: Path | None, s3_endpoint_url: str | None,
                 zone: str, as_json: bool) -> None:
    """List the clients (approved and pending) of a zone."""
    z = _zone(_settings(storage, config, s3_endpoint_url), zone)

    async def listing(registry: ClientRegistry) -> list[ClientRecord]:
        return await registry.all()

    records = _run(listing, z)
    if as_json:
        click.echo(json.dumps([r.model_dump() for r in records], indent=2))
        return
    if not records:
        click.echo(f"no clients in zone {zone}")
    for r in records:
        click.echo(f"{r.clientId}  {r.rights():<32}  {r.label}")


@clients.command("remove")
@click.argument("client_id", callback=_client_id)
@_storage_option
@_config_option
@_endpoint_option
@_zone_option
def clients_remove(client_id: str, storage: str | None, config: Path | None,
                   s3_endpoint_url: str | None, zone: str) -> None:
    """Remove CLIENT_ID from a zone (it can no longer upload; effective within ~1 s)."""
    z = _zone(_settings(storage, config, s3_endpoint_url), zone)

    async def remove(registry: ClientRegistry) -> bool:
        return await registry.remove(client_id)

    if not _run(remove, z):
        raise ConfigError(f"client {client_id} is not registered in zone {zone}")
    click.echo(f"removed client {client_id} from zone {zone}")


gateway.add_command(users)


@gateway.group("resources")
def resources() -> None:
    """The resources a zone asks for files it lacks (announced by daemons, or in --config)."""


@resources.command("list")
@_storage_option
@_config_option
@_endpoint_option
@click.option("--zone", default="default", show_default=True,
              help="The zone whose resources to list (a zone of --config).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def resources_list(storage: str | None, config: Path | None, s3_endpoint_url: str | None,
                   zone: str, as_json: bool) -> None:
    """List a zone's resources: announced ones with the last time each was seen, and those
    the zones file lists."""
    from .announcements import Announcement, all_announcements

    z = _zone(_settings(storage, config, s3_endpoint_url), zone)

    async def listing(_registry: ClientRegistry) -> list[Announcement]:
        return await all_announcements(z)

    rows: list[dict[str, str | None]] = [{"resourceUrl": a.resourceUrl, "source": "announced",
             "status": "live" if a.is_live() else "expired", "lastSeen": _iso(a.lastSeen),
             "expires": _iso(a.expires), "clientId": a.clientId} for a in _run(listing, z)]
    announced = {r["resourceUrl"] for r in rows}
    rows += [{"resourceUrl": url, "source": "config", "status": "listed", "lastSeen": None,
              "expires": None, "clientId": None} for url in z.settings.resources if url not in announced]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"no resources in zone {zone}")
    for row in rows:
        seen = f"last seen {row['lastSeen']}" if row["lastSeen"] else "from the zones file"
        click.echo(f"{row['resourceUrl']}  {row['status']:<8} {seen}")


def _iso(ms: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


commands: list[click.Command] = [gateway]
