"""Zones at run time: settings joined with an opened storage, key prefix, client and user registries."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from . import keys
from .registry import ClientRegistry
from .settings import GatewaySettings, ZoneSettings
from .storage import Storage, open_storage
from .users import UserRegistry


@dataclass
class Zone:
    """One zone, ready to serve."""

    name: str
    settings: ZoneSettings
    storage: Storage
    prefix: str
    registry: ClientRegistry
    users: UserRegistry

    def info(self) -> dict[str, object]:
        """What /api/info says about this zone (no secrets, no paths)."""
        return {
            "name": self.name,
            "backend": self.storage.kind,
            "allowPublicDownload": self.settings.allow_public_download,
            "allowPublicUpload": self.settings.allow_public_upload,
            "autoApproveClients": self.settings.auto_approve_clients,
        }


def open_zones(settings: GatewaySettings) -> dict[str, Zone]:
    """Open every zone's storage (zones naming the same storage share one backend)."""
    opened: dict[tuple[str, str | None], tuple[Storage, str]] = {}
    zones: dict[str, Zone] = {}
    for name, zone_settings in settings.zones.items():
        url = settings.zone_storage(name)
        endpoint = settings.zone_endpoint(name)
        if (url, endpoint) not in opened:
            opened[(url, endpoint)] = open_storage(url, endpoint)
        storage, url_prefix = opened[(url, endpoint)]
        prefix = keys.join(url_prefix, keys.ensure_safe_prefix(zone_settings.prefix))
        zones[name] = Zone(name, zone_settings, storage, prefix,
                           ClientRegistry(storage, prefix, name, settings.registry_cache_sec),
                           UserRegistry(storage, prefix, name, settings.registry_cache_sec))
    if not zones:
        raise ConfigError("the gateway has no zones")
    return zones


def _distinct(zones: dict[str, Zone]) -> list[Zone]:
    """One zone per (storage, prefix) pair, in order."""
    seen: dict[tuple[int, str], Zone] = {}
    for zone in zones.values():
        seen.setdefault((id(zone.storage), zone.prefix), zone)
    return list(seen.values())


async def check_zones(zones: dict[str, Zone]) -> None:
    """Check every zone's storage is usable (S3: bucket reachable with the credentials).

    Raises ConfigError naming the storage, the problem and what to set.
    """
    for zone in _distinct(zones):
        await zone.storage.check(zone.prefix)


async def probe_zones(zones: dict[str, Zone]) -> None:
    """Let every storage find out whether it verifies sha1 checksums (scratch keys under a
    zone's staging area, which the sweep cleans); storages probed before are skipped."""
    for zone in _distinct(zones):
        await zone.storage.probe(keys.staging_root(zone.prefix))


async def close_zones(zones: dict[str, Zone]) -> None:
    """Close every storage the zones use (once each)."""
    storages: dict[int, Storage] = {id(z.storage): z.storage for z in zones.values()}
    for storage in storages.values():
        await storage.close()


def describe(zone: Zone) -> str:
    """``zone NAME: <where its bytes are> (prefix P)``, as the CLI prints it."""
    return (f"zone {zone.name}: {zone.storage.description}"
            + (f" (prefix {zone.prefix})" if zone.prefix else ""))


def verification(zone: Zone) -> str:
    """How uploads to an S3 zone are verified, once the storage was probed ('' otherwise)."""
    if zone.storage.kind != "s3":
        return ""
    if zone.storage.verifies_sha1:
        return "; the store checks each upload's sha1 (x-amz-checksum-sha1)"
    why = zone.storage.not_verified_because
    return "; uploads are verified by reading them back" + (f" ({why})" if why else "")
