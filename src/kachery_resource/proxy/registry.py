"""Which daemon holds which resource name, and how a client request reaches it.

:class:`LocalRegistry` is the single-instance registry (one dict). The NATS registry
(:mod:`.nats_registry`) extends it so that several proxy instances share names.

Claim rules (both registries):
- a free name is claimed by whoever is authorized for it;
- a held name is refused to a claimant who presents only the shared secret
  ("Resource already exists", like the old proxy);
- a claimant presenting the name's own token takes the name over: the old socket is
  closed (code 4009) and its waiting requests fail with 502.
"""

from __future__ import annotations

from typing import Any

from .connection import DaemonConnection
from .errors import ProxyRefusal, offline

CLOSE_REPLACED = 4009


def name_taken(name: str) -> ProxyRefusal:
    return ProxyRefusal(409, "name-in-use",
                        f"Resource already exists: {name} is held by another live connection; "
                        "a per-resource token can take it over")


class LocalRegistry:
    """Names held by daemons connected to this process."""

    def __init__(self) -> None:
        self.conns: dict[str, DaemonConnection] = {}

    async def start(self) -> None:
        """Nothing to start for a single instance."""

    async def stop(self) -> None:
        """Nothing to stop for a single instance."""

    @property
    def healthy(self) -> bool:
        return True

    def local_count(self) -> int:
        return len(self.conns)

    def pending_count(self) -> int:
        return sum(len(c.pending) for c in self.conns.values())

    async def claim(self, conn: DaemonConnection) -> None:
        """Register ``conn`` for its name, or raise ProxyRefusal(409)."""
        await self._claim_local(conn)

    async def _claim_local(self, conn: DaemonConnection) -> None:
        old = self.conns.get(conn.name)
        if old is not None and not old.closed:
            if not conn.via_token:
                raise name_taken(conn.name)
            old.close(CLOSE_REPLACED, "replaced by a newer connection with the same credential")
        self.conns[conn.name] = conn

    async def release(self, conn: DaemonConnection) -> None:
        """Forget ``conn`` if it still holds its name."""
        conn.fail_all()
        if self.conns.get(conn.name) is conn:
            del self.conns[conn.name]

    async def relay(self, name: str, zone: str, request: dict[str, Any],
                    wait_sec: float) -> dict[str, Any]:
        """Relay a client request to the daemon holding ``name``; return the envelope."""
        conn = self.conns.get(name)
        if conn is None:
            raise offline(name)
        return await conn.relay(zone, request, wait_sec)
