"""Client records, kept as small JSON objects in the zone's own storage.

``<prefix>/clients/<client id>`` holds one :class:`ClientRecord`. A record written by
``/registerClient`` is a *request* (``approved: false``) unless the zone auto-approves;
``kachery-resource gateway clients add`` writes an approved one. The gateway trusts an
approved record it read for at most ``cache_sec`` (removals apply within ~1 s) and
re-reads on every miss (approvals apply at once).
"""

from __future__ import annotations

import json
import time

from pydantic import BaseModel, ConfigDict, ValidationError

from ..identity import is_client_id
from . import keys
from .storage import Storage


class ClientRecord(BaseModel):
    """One registered (or requesting) client of a zone."""

    model_config = ConfigDict(extra="ignore")

    clientId: str
    zone: str
    label: str = ""
    ownerId: str = ""
    timestampCreated: int
    approved: bool = False
    upload: bool = False
    download: bool = True
    admin: bool = False

    def rights(self) -> str:
        """A short human summary, e.g. ``approved upload download``."""
        words = ["approved" if self.approved else "pending"]
        words += [w for w, on in (("upload", self.upload), ("download", self.download),
                                  ("admin", self.admin)) if on]
        return " ".join(words)


def now_ms() -> int:
    """Milliseconds since the epoch, as kachery-cloud timestamps are."""
    return int(time.time() * 1000)


class ClientRegistry:
    """The client records of one zone."""

    def __init__(self, storage: Storage, prefix: str, zone: str, cache_sec: float = 1.0) -> None:
        self.storage = storage
        self.prefix = prefix
        self.zone = zone
        self.cache_sec = cache_sec
        self._cache: dict[str, tuple[float, ClientRecord | None]] = {}

    async def get(self, client_id: str) -> ClientRecord | None:
        """The record of ``client_id`` (approved or not), or None."""
        if not is_client_id(client_id):
            return None
        hit = self._cache.get(client_id)
        if hit is not None and hit[0] > time.monotonic() and hit[1] is not None and hit[1].approved:
            return hit[1]
        data = await self.storage.read_small(keys.client_key(self.prefix, client_id))
        record = None
        if data is not None:
            try:
                record = ClientRecord.model_validate_json(data)
            except ValidationError:
                record = None
        if len(self._cache) > 10000:
            self._cache.clear()
        self._cache[client_id] = (time.monotonic() + self.cache_sec, record)
        return record

    async def approved(self, client_id: str) -> ClientRecord | None:
        """The record of ``client_id`` if it is approved, else None."""
        record = await self.get(client_id)
        return record if record is not None and record.approved else None

    async def put(self, record: ClientRecord) -> None:
        """Write ``record`` (replacing any earlier one)."""
        data = json.dumps(record.model_dump(), indent=4).encode()
        await self.storage.write_small(keys.client_key(self.prefix, record.clientId), data)
        self._cache.pop(record.clientId, None)

    async def remove(self, client_id: str) -> bool:
        """Delete the record of ``client_id``; answers whether there was one."""
        existed = await self.get(client_id) is not None
        await self.storage.delete(keys.client_key(self.prefix, client_id))
        self._cache.pop(client_id, None)
        return existed

    async def all(self) -> list[ClientRecord]:
        """Every record of the zone, oldest first."""
        records = []
        for key in await self.storage.list_keys(keys.clients_root(self.prefix)):
            client_id = key.rsplit("/", 1)[-1]
            self._cache.pop(client_id, None)
            record = await self.get(client_id)
            if record is not None:
                records.append(record)
        return sorted(records, key=lambda r: r.timestampCreated)
