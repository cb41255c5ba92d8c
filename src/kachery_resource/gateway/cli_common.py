"""What the gateway's admin commands share: the storage/config/zone options, reading the
settings (flags given to ``gateway`` itself count too), opening one zone and running a
registry operation on it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..errors import ConfigError
from ..options import option
from .settings import GatewaySettings, load_settings

if TYPE_CHECKING:
    from .zones import Zone

T = TypeVar("T")

storage_option = option(
    "--storage", metavar="DIR|s3://BUCKET/PREFIX",
    show_default="$KACHERY_GATEWAY_STORAGE or ~/.kachery-resource/gateway",
    help="Where the zones' bytes and client records live: a local directory or an S3 bucket "
         "(overrides the config's storage; without --config: zone 'default').")
config_option = click.option(
    "--config", type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Zones YAML (see docs/gateway.md).")
endpoint_option = option(
    "--s3-endpoint-url", metavar="URL", show_default="$AWS_ENDPOINT_URL or AWS",
    help="S3-compatible endpoint: SeaweedFS, MinIO, R2 … (overrides the config's s3EndpointUrl).")
zone_option = click.option(
    "--zone", default="default", show_default=True,
    help="The zone to manage (a zone of --config; without --config there is only 'default').")


def read_settings(storage: str | None, config: Path | None, endpoint: str | None,
                  **overrides: Any) -> GatewaySettings:
    """The gateway settings these flags (or those given to ``gateway`` itself) name."""
    ctx = click.get_current_context()
    parent: dict[str, Any] = ctx.find_root().meta.get("gateway", {})
    return load_settings(
        config or parent.get("config"),
        storage=storage or parent.get("storage"),
        overrides={"s3EndpointUrl": endpoint or parent.get("s3_endpoint_url"), **overrides},
    )


def open_zone(settings: GatewaySettings, name: str) -> Zone:
    """Open zone ``name`` and say on stderr which storage it is (a forgotten --storage shows)."""
    from .zones import describe, open_zones

    if name not in settings.zones:
        raise ConfigError(f"no zone {name!r} in the gateway settings; zones: {', '.join(settings.zones)}")
    only = settings.model_copy(update={"zones": {name: settings.zones[name]}})
    zone = open_zones(only)[name]
    click.echo(describe(zone), err=True)
    return zone


def run_on_zone(make: Callable[[Zone], Coroutine[Any, Any, T]], zone: Zone) -> T:
    """Run ``make(zone)`` after checking the storage is usable, then close the storage."""

    async def main() -> T:
        try:
            await zone.storage.check(zone.prefix)
            return await make(zone)
        finally:
            await zone.storage.close()

    return asyncio.run(main())


