"""CLI commands of the gateway: ``gateway`` (run the server) and ``gateway clients add|list|remove``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..errors import ConfigError
from ..identity import is_client_id
from .settings import GatewaySettings, load_settings

if TYPE_CHECKING:
    from .registry import ClientRecord, ClientRegistry
    from .zones import Zone

T = TypeVar("T")

_storage_option = click.option(
    "--storage", metavar="DIR|s3://BUCKET/PREFIX",
    help="Where the zone's bytes and client records live (zero config: zone 'default' here; "
         "default $KACHERY_GATEWAY_STORAGE or ~/.kachery-resource/gateway).")
_config_option = click.option(
    "--config", type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Zones YAML (see docs/gateway.md).")
_endpoint_option = click.option(
    "--s3-endpoint-url", metavar="URL",
    help="S3-compatible endpoint (SeaweedFS, MinIO, R2 …); default $AWS_ENDPOINT_URL or AWS.")


def _settings(storage: str | None, config: Path | None, endpoint: str | None,
              **overrides: Any) -> GatewaySettings:
    ctx = click.get_current_context()
    parent: dict[str, Any] = ctx.find_root().meta.get("gateway", {})
    return load_settings(
        config or parent.get("config"),
        storage=storage or parent.get("storage"),
        overrides={"s3EndpointUrl": endpoint or parent.get("s3_endpoint_url"), **overrides},
    )


@click.group("gateway", invoke_without_command=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=int, default=8080, show_default=True, help="Port; 0 picks a free one.")
@_storage_option
@_config_option
@_endpoint_option
@click.option("--public-url", metavar="URL",
              help="The gateway's URL as clients see it (base of signed URLs); default: from the request.")
@click.option("--timestamp-window", type=float, metavar="SECONDS",
              help="Accepted clock skew of signed requests (default 125).")
@click.option("--allow-public-upload", is_flag=True, default=None,
              help="Every zone: any approved client may upload.")
@click.option("--auto-approve-clients", is_flag=True, default=None,
              help="Every zone: /registerClient approves at once (upload + download).")
@click.option("--no-public-download", is_flag=True, default=None,
              help="Every zone: only approved clients with the download right may download.")
@click.pass_context
def gateway(ctx: click.Context, host: str, port: int, storage: str | None, config: Path | None,
            s3_endpoint_url: str | None, public_url: str | None, timestamp_window: float | None,
            allow_public_upload: bool | None, auto_approve_clients: bool | None,
            no_public_download: bool | None) -> None:
    """Run the zone gateway (the server kachery-cloud calls KACHERY_GATEWAY_URL).

    Prints its URL as the first line. With `clients …` manage client registrations instead.
    """
    ctx.find_root().meta["gateway"] = {"storage": storage, "config": config,
                                       "s3_endpoint_url": s3_endpoint_url}
    if ctx.invoked_subcommand is not None:
        return
    settings = load_settings(config, storage=storage, overrides={
        "s3EndpointUrl": s3_endpoint_url, "publicUrl": public_url,
        "timestampWindowSec": timestamp_window})
    for zone in settings.zones.values():
        if allow_public_upload:
            zone.allow_public_upload = True
        if auto_approve_clients:
            zone.auto_approve_clients = True
        if no_public_download:
            zone.allow_public_download = False
    from ..servers import run, serve
    from .app import build_app
    from .zones import open_zones

    zones = open_zones(settings)
    app = build_app(settings, zones)

    async def announce(url: str) -> None:
        for zone in zones.values():
            click.echo(f"zone {zone.name}: {zone.storage.description}"
                       + (f" (prefix {zone.prefix})" if zone.prefix else ""))
        click.echo(f"point kachery-cloud at it: export KACHERY_GATEWAY_URL={url}")
        click.echo("approve a client: kachery-resource gateway clients add CLIENT_ID --upload"
                   + (f" --config {config}" if config else f" --storage {settings.storage}"))

    run(serve(app, host, port, on_started=announce))


@gateway.group("clients")
def clients() -> None:
    """Add, list and remove the clients of a zone (works while the gateway runs)."""


def _zone(settings: GatewaySettings, name: str) -> Zone:
    from .zones import open_zones

    if name not in settings.zones:
        raise ConfigError(f"no zone {name!r} in the gateway settings; zones: {', '.join(settings.zones)}")
    only = settings.model_copy(update={"zones": {name: settings.zones[name]}})
    return open_zones(only)[name]


def _run(make: Callable[[ClientRegistry], Coroutine[Any, Any, T]], zone: Zone) -> T:
    async def main() -> T:
        try:
            return await make(zone.registry)
        finally:
            await zone.storage.close()

    return asyncio.run(main())


def _client_id(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not is_client_id(value):
        raise click.BadParameter("a client id is 64 lowercase hexadecimal characters")
    return value


@clients.command("add")
@click.argument("client_id", callback=_client_id)
@_storage_option
@_config_option
@_endpoint_option
@click.option("--zone", default="default", show_default=True)
@click.option("--upload/--no-upload", default=False, show_default=True, help="May upload.")
@click.option("--download/--no-download", default=True, show_default=True,
              help="May download (matters where public download is off).")
@click.option("--admin/--no-admin", default=False, show_default=True, help="May delete files.")
@click.option("--label", default=None, help="A name for the client (default: keep, or empty).")
@click.option("--owner", default=None, help="Who owns the client (shown by kachery-cloud-init).")
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
    click.echo(f"client {record.clientId} in zone {zone}: {record.rights()}")


@clients.command("list")
@_storage_option
@_config_option
@_endpoint_option
@click.option("--zone", default="default", show_default=True)
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
@click.option("--zone", default="default", show_default=True)
def clients_remove(client_id: str, storage: str | None, config: Path | None,
                   s3_endpoint_url: str | None, zone: str) -> None:
    """Remove CLIENT_ID from a zone (it can no longer upload; effective within ~1 s)."""
    z = _zone(_settings(storage, config, s3_endpoint_url), zone)

    async def remove(registry: ClientRegistry) -> bool:
        return await registry.remove(client_id)

    if not _run(remove, z):
        raise ConfigError(f"client {client_id} is not registered in zone {zone}")
    click.echo(f"removed client {client_id} from zone {zone}")


commands: list[click.Command] = [gateway]
