"""``build_app()``: the proxy as one aiohttp application."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from ..accesslog import AccessLog
from . import http_api
from .credentials import Authorizer, TokenStore
from .daemon_socket import root
from .limits import PerIpLimiter
from .metrics import ProxyMetrics
from .registry import LocalRegistry
from .settings import ProxySettings
from .state import STATE, ProxyState

OPENAPI_FILE = Path(__file__).with_name("openapi.yaml")


def load_openapi() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(OPENAPI_FILE.read_text())
    return doc


def make_registry(settings: ProxySettings) -> LocalRegistry:
    """A local registry, or a NATS-backed one when ``nats_url`` is set."""
    if settings.nats_url is None:
        return LocalRegistry()
    from .nats_registry import NatsRegistry

    return NatsRegistry(settings.nats_url, settings.nats_subject_prefix, settings.instance_id)


def build_app(settings: ProxySettings, *, registry: LocalRegistry | None = None) -> web.Application:
    """The proxy app: routes, the error/limit middleware, and the registry's lifecycle."""
    registry = registry if registry is not None else make_registry(settings)
    metrics = ProxyMetrics()
    metrics.bind_gauges(registry.local_count, registry.pending_count)
    state = ProxyState(
        settings=settings,
        registry=registry,
        authorizer=Authorizer(TokenStore(settings.tokens_file), settings.proxy_secret,
                              require_tokens=settings.require_tokens,
                              resource_zones=settings.resource_zones),
        metrics=metrics,
        access_log=AccessLog(settings.access_log),
        limiter=PerIpLimiter(settings.max_connections_per_ip, settings.trust_forwarded_for),
        openapi=load_openapi(),
    )
    app = web.Application(
        middlewares=[http_api.guard],
        client_max_size=settings.max_body_bytes,
        # a client that disconnects while waiting cancels its handler: its slot frees at once
        handler_args={"handler_cancellation": True},
    )
    app[STATE] = state
    expect = http_api.expect  # our Expect handler: aiohttp's answers 500 to non-ASCII values
    app.router.add_post("/r/{resource}", http_api.post_resource, expect_handler=expect)
    for path, handler in [("/", root), ("/probe", http_api.probe), ("/healthz", http_api.healthz),
                          ("/api/info", http_api.info), ("/metrics", http_api.metrics),
                          ("/openapi.json", http_api.openapi)]:
        app.router.add_get(path, handler, expect_handler=expect)

    async def start(_app: web.Application) -> None:
        await registry.start()

    async def stop(_app: web.Application) -> None:
        for conn in list(registry.conns.values()):
            conn.close(1001, "proxy shutting down")
        await registry.stop()
        state.access_log.close()

    app.on_startup.append(start)
    app.on_shutdown.append(stop)
    return app
