"""``kachery-resource gateway users add|list|remove|reset-key``: the users of a zone and
their API keys (the kachery 2.x client sends one as ``KACHERY_API_KEY``).

Like ``clients …`` these edit the registry in the zone's storage, so a running gateway
applies them within about a second. A new key is printed once, as the last line of
stdout, and never stored (only its sha256 is).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import ConfigError
from ..options import Group
from .cli_common import (
    config_option,
    endpoint_option,
    open_zone,
    read_settings,
    run_on_zone,
    storage_option,
    zone_option,
)
from .users import is_user_name

if TYPE_CHECKING:
    from .users import UserRecord
    from .zones import Zone


def _name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not is_user_name(value):
        raise click.BadParameter("a user name is 1-100 letters, digits and '._@+-', "
                                 "starting with a letter or digit")
    return value


@click.group("users", cls=Group)
def users() -> None:
    """Add, list and remove the users (API keys) of a zone, for kachery 2.x clients and web
    pages (works while the gateway runs)."""


@users.command("add")
@click.argument("name", callback=_name)
@storage_option
@config_option
@endpoint_option
@zone_option
@click.option("--upload/--no-upload", default=False, show_default=True, help="May upload.")
@click.option("--download/--no-download", default=True, show_default=True,
              help="May download (matters where public download is off).")
@click.option("--admin/--no-admin", default=False, show_default=True,
              help="Admin of the zone (recorded for admin tools).")
def users_add(name: str, storage: str | None, config: Path | None, s3_endpoint_url: str | None,
              zone: str, upload: bool, download: bool, admin: bool) -> None:
    """Create user NAME with these rights and print its new API key as the last line (the
    only time it is shown). For an existing NAME only its rights change, its key stays, and
    nothing is printed on stdout."""
    z = open_zone(read_settings(storage, config, s3_endpoint_url), zone)

    async def add(z: Zone) -> tuple[UserRecord, str | None]:
        old = await z.users.named(name)
        if old is None:
            return await z.users.add(name, upload=upload, download=download, admin=admin)
        record = old.model_copy(update={"upload": upload, "download": download, "admin": admin})
        await z.users.put(record)
        return record, None

    record, api_key = run_on_zone(add, z)
    if api_key is None:
        click.echo(f"user {name} in zone {zone}: {record.rights()} (rights updated; its API key "
                   f"is unchanged: `gateway users reset-key {name}` prints a new one)", err=True)
        return
    click.echo(f"user {name} in zone {zone}: {record.rights()}; its API key (shown only now; "
               "the client reads it from KACHERY_API_KEY):")
    click.echo(api_key)


@users.command("list")
@storage_option
@config_option
@endpoint_option
@zone_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of the users (no keys).")
def users_list(storage: str | None, config: Path | None, s3_endpoint_url: str | None,
               zone: str, as_json: bool) -> None:
    """List the users of a zone and their rights (never their keys)."""
    z = open_zone(read_settings(storage, config, s3_endpoint_url), zone)

    async def listing(z: Zone) -> list[UserRecord]:
        return await z.users.all()

    records = run_on_zone(listing, z)
    if as_json:
        click.echo(json.dumps([r.public() for r in records], indent=2))
        return
    if not records:
        click.echo(f"no users in zone {zone}")
    for r in records:
        click.echo(f"{r.name:<24}  {r.rights()}")


@users.command("remove")
@click.argument("name", callback=_name)
@storage_option
@config_option
@endpoint_option
@zone_option
def users_remove(name: str, storage: str | None, config: Path | None,
                 s3_endpoint_url: str | None, zone: str) -> None:
    """Remove user NAME: its API key stops working (within ~1 s on a running gateway)."""
    z = open_zone(read_settings(storage, config, s3_endpoint_url), zone)

    async def remove(z: Zone) -> bool:
        record = await z.users.named(name)
        if record is not None:
            await z.users.remove(record)
        return record is not None

    if not run_on_zone(remove, z):
        raise ConfigError(f"there is no user {name} in zone {zone} (see: gateway users list)")
    click.echo(f"removed user {name} from zone {zone}")


@users.command("reset-key")
@click.argument("name", callback=_name)
@storage_option
@config_option
@endpoint_option
@zone_option
def users_reset_key(name: str, storage: str | None, config: Path | None,
                    s3_endpoint_url: str | None, zone: str) -> None:
    """Give user NAME a new API key, printed as the last line; the old key stops working
    (within ~1 s on a running gateway)."""
    z = open_zone(read_settings(storage, config, s3_endpoint_url), zone)

    async def reset(z: Zone) -> str | None:
        record = await z.users.named(name)
        return None if record is None else (await z.users.reset_key(record))[1]

    api_key = run_on_zone(reset, z)
    if api_key is None:
        raise ConfigError(f"there is no user {name} in zone {zone} (see: gateway users list)")
    click.echo(f"user {name} in zone {zone}: new API key (shown only now; the old one no longer works):")
    click.echo(api_key)
