"""Who may claim a resource name: per-resource tokens (stored hashed) and the shared secret.

Token file (JSON, written with mode 0600)::

    {"version": 1,
     "tokens": {"<resourceName>": {"sha256": "<hex of sha256(token)>", "zone": "default",
                                   "created": "2026-11-26T12:00:00Z"}}}

Tokens are random (``secrets.token_urlsafe(32)``), so a plain SHA-256 is enough; the
plain token is shown once by ``kachery-resource proxy tokens add``. A daemon presents it in
the v1 ``proxySecret`` field. The file is re-read when its mtime changes, so tokens added
while the proxy runs take effect at the next daemon connection.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .errors import ProxyRefusal

TOKEN_PREFIX = "krp_"


def _sha256(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


@dataclass(frozen=True)
class TokenEntry:
    """One resource name's credential: the token's hash and the zone it is bound to."""

    sha256_hex: str
    zone: str
    created: str


@dataclass(frozen=True)
class Grant:
    """The result of a successful authorization."""

    zone: str  # the zone the resource is served in (fixed by token or config)
    via_token: bool  # True: the per-resource credential; may take over a stale socket


class TokenStore:
    """The token file: read (cached by mtime), add, remove, list."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._entries: dict[str, TokenEntry] = {}
        self._mtime: float | None = None

    def entries(self) -> dict[str, TokenEntry]:
        if self.path is None:
            return {}
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            self._entries, self._mtime = {}, None
            return self._entries
        if mtime != self._mtime:
            self._entries = _read_entries(self.path)
            self._mtime = mtime
        return self._entries

    def get(self, name: str) -> TokenEntry | None:
        return self.entries().get(name)

    def add(self, name: str, zone: str, *, replace: bool = False) -> str:
        """Issue a new token for ``name``; return the plain token (shown only once)."""
        entries = dict(self._require_path_entries())
        if name in entries and not replace:
            raise ConfigError(f"resource {name!r} already has a token; pass --replace to rotate it")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        entries[name] = TokenEntry(_sha256(token).hex(), zone, created)
        self._write(entries)
        return token

    def remove(self, name: str) -> None:
        entries = dict(self._require_path_entries())
        if name not in entries:
            raise ConfigError(f"resource {name!r} has no token in {self.path}")
        del entries[name]
        self._write(entries)

    def _require_path_entries(self) -> dict[str, TokenEntry]:
        if self.path is None:
            raise ConfigError("no tokens file configured; pass --tokens-file")
        return self.entries()

    def _write(self, entries: dict[str, TokenEntry]) -> None:
        assert self.path is not None
        doc = {"version": 1, "tokens": {
            n: {"sha256": e.sha256_hex, "zone": e.zone, "created": e.created}
            for n, e in sorted(entries.items())}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + f".tmp{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        os.replace(tmp, self.path)
        self._mtime = None


def _read_entries(path: Path) -> dict[str, TokenEntry]:
    try:
        doc: Any = json.loads(path.read_text())
        tokens = doc["tokens"]
        return {str(name): TokenEntry(str(t["sha256"]), str(t["zone"]), str(t.get("created", "")))
                for name, t in tokens.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"cannot read proxy tokens file {path}: {exc}") from exc


class Authorizer:
    """Decides whether a daemon's initialize may claim a name, and in which zone."""

    def __init__(self, tokens: TokenStore, shared_secret: str, *, require_tokens: bool = False,
                 resource_zones: dict[str, str] | None = None) -> None:
        self.tokens = tokens
        self._shared_digest = _sha256(shared_secret) if shared_secret else None
        self.require_tokens = require_tokens
        self.resource_zones = resource_zones or {}

    def authorize(self, name: str, presented: str, claimed_zone: str) -> Grant:
        """Return the grant, or raise ProxyRefusal (status 401/403) saying why."""
        digest = _sha256(presented)
        entry = self.tokens.get(name)
        if entry is not None:
            if not hmac.compare_digest(digest, bytes.fromhex(entry.sha256_hex)):
                raise ProxyRefusal(401, "wrong-credential",
                                   f"resource {name} has its own token; the secret presented is not it")
            return Grant(self._check_zone(name, entry.zone, claimed_zone), via_token=True)
        if self.require_tokens or self._shared_digest is None:
            raise ProxyRefusal(401, "token-required",
                               f"resource {name} has no token on this proxy; ask its admin to run "
                               "`kachery-resource proxy tokens add`")
        if not hmac.compare_digest(digest, self._shared_digest):
            raise ProxyRefusal(401, "wrong-secret", "wrong proxy secret")
        fixed = self.resource_zones.get(name, claimed_zone)
        return Grant(self._check_zone(name, fixed, claimed_zone), via_token=False)

    @staticmethod
    def _check_zone(name: str, fixed: str, claimed: str) -> str:
        if fixed != claimed:
            raise ProxyRefusal(403, "zone-mismatch",
                               f"resource {name} is bound to zone {fixed}, not {claimed}")
        return fixed
