"""Everything one proxy instance holds, shared by its handlers (``app[STATE]``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..accesslog import AccessLog
from .credentials import Authorizer
from .limits import PerIpLimiter
from .metrics import ProxyMetrics
from .registry import LocalRegistry
from .settings import ProxySettings


@dataclass
class ProxyState:
    settings: ProxySettings
    registry: LocalRegistry
    authorizer: Authorizer
    metrics: ProxyMetrics
    access_log: AccessLog
    limiter: PerIpLimiter
    openapi: dict[str, Any]
    open_http: int = 0  # client requests being handled right now (POST /r/…)

    def counters(self) -> dict[str, int]:
        """Live state that must return to 0 once clients and daemons are gone."""
        serving = getattr(self.registry, "serving_count", lambda: 0)()
        return {"connectedResources": self.registry.local_count(),
                "waitingRequests": self.registry.pending_count(),
                "openClientRequests": self.open_http,
                "remoteRelays": serving,
                "openConnections": self.limiter.total()}


STATE = web.AppKey("proxy_state", ProxyState)
