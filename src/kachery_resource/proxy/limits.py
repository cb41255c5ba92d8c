"""Per-client-IP limit on open HTTP requests and daemon sockets."""

from __future__ import annotations

from aiohttp import web

from .errors import ProxyRefusal


class PerIpLimiter:
    """Counts what each IP has open; refuses past ``limit`` (0 = no limit)."""

    def __init__(self, limit: int, trust_forwarded_for: bool = False) -> None:
        self.limit = limit
        self.trust_forwarded_for = trust_forwarded_for
        self.open: dict[str, int] = {}

    def client_ip(self, request: web.BaseRequest) -> str:
        if self.trust_forwarded_for:
            forwarded = request.headers.get("X-Forwarded-For")
            if forwarded:
                return forwarded.split(",")[0].strip()
        return request.remote or "?"

    def acquire(self, ip: str) -> None:
        count = self.open.get(ip, 0)
        if self.limit and count >= self.limit:
            raise ProxyRefusal(429, "too-many-connections",
                               f"too many open connections from {ip} (limit {self.limit})",
                               retry_after=1)
        self.open[ip] = count + 1

    def release(self, ip: str) -> None:
        count = self.open.get(ip, 0) - 1
        if count > 0:
            self.open[ip] = count
        else:
            self.open.pop(ip, None)

    def total(self) -> int:
        return sum(self.open.values())
