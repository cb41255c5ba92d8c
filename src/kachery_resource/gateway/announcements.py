"""Resources of a zone: the daemons that serve it, announced through the gateway API.

A daemon running ``kachery-resource share`` calls (signed with its client keys, which
must hold the upload right in the zone)::

    announceResource {zone, resourceUrl: "PROXY_URL/r/NAME"}
        → {type, resourceUrl, ttlSec, renewSec, onDemand}

and renews it every ``renewSec`` while it is connected to its proxy; when it stops it
withdraws it (``withdrawResource {zone, resourceUrl}`` → ``{type, withdrawn}``; only the
client that announced it). The gateway keeps
one small JSON record per resource URL under ``<zone prefix>/resources/`` (several
gateway instances over one bucket see the same records); a record not renewed for
``announcementTtlSec`` has expired and is no longer asked. Records expired for more than
:data:`FORGET_AFTER_SEC` are deleted.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from . import keys
from .api import Call, Handler, Json
from .envelope import Payload
from .problems import ApiError
from .settings import check_resource_url
from .zones import Zone

FORGET_AFTER_SEC = 7 * 86400
MAX_RESOURCES_PER_ZONE = 100


class AnnounceResource(Payload):
    type: Literal["announceResource"]
    resourceUrl: Annotated[str, AfterValidator(check_resource_url)]


class WithdrawResource(Payload):
    type: Literal["withdrawResource"]
    resourceUrl: Annotated[str, AfterValidator(check_resource_url)]


class Announcement(BaseModel):
    """One announced resource of a zone (times in ms since the epoch)."""

    model_config = ConfigDict(extra="ignore")

    resourceUrl: str
    zone: str
    clientId: str = ""
    firstSeen: int
    lastSeen: int
    expires: int

    def is_live(self, now_ms: int | None = None) -> bool:
        """Answer whether the announcement was renewed recently enough to be asked."""
        return self.expires > (now_ms if now_ms is not None else _now_ms())


def _now_ms() -> int:
    return int(time.time() * 1000)


async def record(zone: Zone, resource_url: str, client_id: str, ttl_sec: float) -> Announcement:
    """Write (or renew) the announcement of ``resource_url`` in ``zone``."""
    key = keys.resource_key(zone.prefix, resource_url)
    now = _now_ms()
    old = await _read(zone, key)
    entry = Announcement(resourceUrl=resource_url, zone=zone.name, clientId=client_id,
                         firstSeen=old.firstSeen if old else now, lastSeen=now,
                         expires=now + int(ttl_sec * 1000))
    await zone.storage.write_small(key, json.dumps(entry.model_dump(), indent=2).encode())
    return entry


async def _read(zone: Zone, key: str) -> Announcement | None:
    data = await zone.storage.read_small(key)
    if data is None:
        return None
    try:
        return Announcement.model_validate_json(data)
    except ValidationError:
        return None


async def all_announcements(zone: Zone, *, prune: bool = False) -> list[Announcement]:
    """Every announcement of ``zone``, most recently seen first (``prune``: delete those
    expired for more than :data:`FORGET_AFTER_SEC`)."""
    found = await zone.storage.list_keys(keys.resources_root(zone.prefix))
    entries = await asyncio.gather(*(_read(zone, key) for key in found))
    forget_before = _now_ms() - FORGET_AFTER_SEC * 1000
    kept = []
    for key, entry in zip(found, entries, strict=True):
        if entry is not None and entry.expires < forget_before and prune:
            await zone.storage.delete(key)
        elif entry is not None:
            kept.append(entry)
    return sorted(kept, key=lambda e: -e.lastSeen)


async def announce(call: Call) -> Json:
    """The ``announceResource`` handler: only a client that may upload to the zone; a live
    announcement is renewed only by the client that made it, and a zone holds at most
    :data:`MAX_RESOURCES_PER_ZONE` (every findFile miss asks all of them)."""
    payload = call.payload
    assert isinstance(payload, AnnounceResource)
    await call.uploader()
    ttl = call.settings.announcement_ttl_sec
    await _ensure_may_announce(call.zone, payload.resourceUrl, call.client_id)
    await record(call.zone, payload.resourceUrl, call.client_id, ttl)
    return {"type": "announceResource", "resourceUrl": payload.resourceUrl, "ttlSec": ttl,
            "renewSec": ttl / 3, "onDemand": call.zone.settings.on_demand}


async def _ensure_may_announce(zone: Zone, resource_url: str, client_id: str) -> None:
    """A 409 when another client's announcement of ``resource_url`` is live, a 429 when the
    zone already has :data:`MAX_RESOURCES_PER_ZONE` live resources."""
    current = await _read(zone, keys.resource_key(zone.prefix, resource_url))
    if current is not None and current.is_live() and current.clientId != client_id:
        raise ApiError(409, "resource_announced_by_another_client",
                       f"{resource_url} is announced by client {current.clientId} until it stops "
                       "renewing it (at most announcementTtlSec); a daemon replacing it is asked "
                       "through the same URL meanwhile")
    if current is None:
        live = [a for a in await all_announcements(zone) if a.is_live()]
        if len(live) >= MAX_RESOURCES_PER_ZONE:
            raise ApiError(429, "too_many_resources",
                           f"zone {zone.name!r} already has {len(live)} live resources (at most "
                           f"{MAX_RESOURCES_PER_ZONE}); ask the gateway admin")


async def withdraw(call: Call) -> Json:
    """The ``withdrawResource`` handler: the announcer itself takes its resource off the list."""
    payload = call.payload
    assert isinstance(payload, WithdrawResource)
    await call.uploader()
    key = keys.resource_key(call.zone.prefix, payload.resourceUrl)
    entry = await _read(call.zone, key)
    if entry is None or entry.clientId != call.client_id:
        return {"type": "withdrawResource", "withdrawn": False}
    await call.zone.storage.delete(key)
    return {"type": "withdrawResource", "withdrawn": True}


PAYLOAD_TYPES: dict[str, type[Payload]] = {"announceResource": AnnounceResource,
                                           "withdrawResource": WithdrawResource}
HANDLERS: dict[str, Handler] = {"announceResource": announce, "withdrawResource": withdraw}
