"""Users of the kachery 2.x API and their API keys, kept in the zone's own storage.

``<prefix>/users/<sha256 of the key>`` holds one :class:`UserRecord`; the key itself is
shown once, by ``kachery-resource gateway users add|reset-key``, and never stored. A
request's ``Authorization: Bearer <key>`` finds its user by hashing the key. The gateway
trusts a record it read for at most ``cache_sec`` (removals and key resets apply within
~1 s) and re-reads on every miss (new users and keys work at once).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import string
import time

from pydantic import BaseModel, ConfigDict, ValidationError

from . import keys
from .storage import Storage

USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}")
API_KEY = re.compile(r"[\x21-\x7e]{1,200}")
_KEY_ALPHABET = string.ascii_letters + string.digits
KEY_LENGTH = 40


class UserRecord(BaseModel):
    """One user of a zone and what it may do there."""

    model_config = ConfigDict(extra="ignore")

    name: str
    zone: str
    keySha256: str
    timestampCreated: int
    upload: bool = False
    download: bool = True
    admin: bool = False

    def rights(self) -> str:
        """A short human summary, e.g. ``upload download``."""
        words = [w for w, on in (("upload", self.upload), ("download", self.download),
                                 ("admin", self.admin)) if on]
        return " ".join(words) or "no rights"

    def public(self) -> dict[str, object]:
        """The record without its key hash (what ``users list --json`` prints)."""
        return self.model_dump(exclude={"keySha256"})


def new_api_key() -> str:
    """A fresh API key: 40 random letters and digits (about 238 bits)."""
    return "".join(secrets.choice(_KEY_ALPHABET) for _ in range(KEY_LENGTH))


def key_hash(api_key: str) -> str:
    """What a user record stores instead of its key (sha256, hex). The keys are long and
    random, so a fast hash is enough: nobody can guess one from its hash."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def is_user_name(name: str) -> bool:
    """Answer whether ``name`` is a valid user name (letters, digits, ``._@+-``)."""
    return USER_NAME.fullmatch(name) is not None


class UserRegistry:
    """The user records of one zone."""

    def __init__(self, storage: Storage, prefix: str, zone: str, cache_sec: float = 1.0) -> None:
        self.storage = storage
        self.prefix = prefix
        self.zone = zone
        self.cache_sec = cache_sec
        self._cache: dict[str, tuple[float, UserRecord]] = {}

    async def _read(self, digest: str) -> UserRecord | None:
        data = await self.storage.read_small(keys.user_key(self.prefix, digest))
        if data is None:
            return None
        try:
            record = UserRecord.model_validate_json(data)
        except ValidationError:
            return None
        return record if record.zone == self.zone and record.keySha256 == digest else None

    async def for_key(self, api_key: str) -> UserRecord | None:
        """The user whose API key is ``api_key``, or None (malformed keys included)."""
        if API_KEY.fullmatch(api_key) is None:
            return None
        digest = key_hash(api_key)
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        record = await self._read(digest)
        if len(self._cache) > 10000:
            self._cache.clear()
        if record is None:
            self._cache.pop(digest, None)
        else:
            self._cache[digest] = (time.monotonic() + self.cache_sec, record)
        return record

    async def all(self) -> list[UserRecord]:
        """Every user of the zone, oldest first."""
        records = []
        for key in await self.storage.list_keys(keys.users_root(self.prefix)):
            record = await self._read(key.rsplit("/", 1)[-1])
            if record is not None:
                records.append(record)
        return sorted(records, key=lambda r: (r.timestampCreated, r.name))

    async def named(self, name: str) -> UserRecord | None:
        """The user called ``name``, or None."""
        return next((r for r in await self.all() if r.name == name), None)

    async def put(self, record: UserRecord) -> None:
        """Write ``record`` (under its key hash)."""
        data = json.dumps(record.model_dump(), indent=4).encode()
        await self.storage.write_small(keys.user_key(self.prefix, record.keySha256), data)
        self._cache.pop(record.keySha256, None)

    async def remove(self, record: UserRecord) -> None:
        """Delete ``record``: its key stops working (within ``cache_sec`` on running gateways)."""
        await self.storage.delete(keys.user_key(self.prefix, record.keySha256))
        self._cache.pop(record.keySha256, None)

    async def add(self, name: str, *, upload: bool, download: bool, admin: bool) -> tuple[UserRecord, str]:
        """Create user ``name`` with a new key; returns the record and the key."""
        api_key = new_api_key()
        record = UserRecord(name=name, zone=self.zone, keySha256=key_hash(api_key),
                            timestampCreated=int(time.time() * 1000), upload=upload,
                            download=download, admin=admin)
        await self.put(record)
        return record, api_key

    async def reset_key(self, record: UserRecord) -> tuple[UserRecord, str]:
        """Give ``record``'s user a new key (the old one stops working); returns both."""
        api_key = new_api_key()
        renewed = record.model_copy(update={"keySha256": key_hash(api_key)})
        await self.put(renewed)
        await self.remove(record)
        return renewed, api_key
