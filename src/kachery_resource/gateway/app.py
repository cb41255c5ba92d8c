"""``build_app()``: the zone gateway as one aiohttp application.

Routes::

    POST /api/gateway               kachery-cloud's gateway API (api.py)
    POST /api/findFile, /api/initiateFileUpload, /api/finalizeFileUpload
                                    the kachery 2.x API (api_v2.py)
    GET  /api/info                  capabilities (JSON)
    GET  /healthz                   {"status": "ok"}
    GET  /metrics                   Prometheus metrics (metrics.py)
    GET  /openapi.json              this API as an OpenAPI document (openapi.yaml)
    GET  /registerClient/<id>       client self-registration (registration.py)
    GET  /client/<id>               a client's registration status
    GET|HEAD|PUT /files/<zone>/<key> signed object URLs of local-directory zones (files.py)

Middleware: CORS for browsers on ``/api/`` and ``/files/`` (cors.py), per-request log
fields (requestlog.py), one error renderer (problems.py); serve with
``access_log_class=GatewayAccessLogger`` for metrics and the access log. findFile misses
(both API generations) go to the on-demand fetcher (on_demand.py). At startup, before the
server listens,
every storage not probed yet finds out whether it verifies sha1 checksums itself
(zones.probe_zones). A background task deletes unfinished uploads older than
``stagingMaxAgeSec`` and chunk sets no longer needed; another checks chunk lists against
whole files as they arrive (chunk_check.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import yaml
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..accesslog import AccessLog
from . import announcements, chunks, keys, multipart
from .api import FETCHER_KEY, WHOLE_FILES_KEY, GatewayApi
from .api_v2 import V2Api
from .chunk_check import ChunkChecks
from .chunk_store import ChunkStore
from .cors import cors_middleware
from .files import FileRoutes
from .metrics import GatewayMetrics
from .on_demand import OnDemand
from .problems import error_middleware
from .registration import RegistrationRoutes
from .requestlog import REQUEST_LOG_KEY, RequestLog, note_middleware
from .settings import GatewaySettings
from .zones import Zone, close_zones, open_zones, probe_zones

log = logging.getLogger("kachery_resource.gateway")
OPENAPI_FILE = Path(__file__).with_name("openapi.yaml")

SETTINGS_KEY = web.AppKey("settings", GatewaySettings)
ZONES_KEY = web.AppKey("zones", dict[str, Zone])
SERVICE = "kachery-resource-gateway"


def capabilities(settings: GatewaySettings, zones: dict[str, Zone], api: GatewayApi) -> dict[str, object]:
    """The body of ``GET /api/info``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        package_version = version("kachery-resource")
    except PackageNotFoundError:
        package_version = "unknown"
    return {
        "service": SERVICE,
        "version": package_version,
        "requestTypes": sorted(api.handlers),
        "verifiedFinalize": True,
        "uploadHeaders": True,
        "timestampWindowSec": settings.timestamp_window_sec,
        "maxUploadSize": settings.max_upload_size,
        "maxBodyBytes": settings.max_body_bytes,
        "zones": [zone.info() for zone in zones.values()],
        "multipartUpload": multipart.capability(settings),
        "chunkUpload": chunks.capability(),
        "kachery2Api": ["findFile", "initiateFileUpload", "finalizeFileUpload"],
        "corsOrigins": settings.cors_origins,
        "announcementTtlSec": settings.announcement_ttl_sec,
    }


async def sweep_unfinished_uploads(settings: GatewaySettings, zones: dict[str, Zone],
                                   chunk_checks: ChunkChecks | None = None) -> int:
    """Delete staged uploads older than ``stagingMaxAgeSec`` in every zone, and (given
    ``chunk_checks``) chunk sets no longer needed (chunk_check.py); returns how many."""
    seen: set[tuple[int, str]] = set()
    removed = 0
    for zone in zones.values():
        if (id(zone.storage), zone.prefix) in seen:
            continue
        seen.add((id(zone.storage), zone.prefix))
        age = settings.staging_max_age_sec
        try:
            removed += await zone.storage.cleanup(keys.staging_root(zone.prefix), age)
            removed += await zone.storage.mp_cleanup(keys.multipart_root(zone.prefix), age)
            if chunk_checks is not None:
                removed += await chunk_checks.sweep(zone)
        except Exception as exc:  # one line, no traceback: the sweep runs again later
            log.warning("cleaning up unfinished uploads in zone %s failed (%s: %s); retrying in %g s",
                        zone.name, type(exc).__name__, exc, settings.cleanup_interval_sec)
    return removed


async def _cleanup_loop(settings: GatewaySettings, zones: dict[str, Zone],
                        chunk_checks: ChunkChecks) -> None:
    while True:
        removed = await sweep_unfinished_uploads(settings, zones, chunk_checks)
        if removed:
            log.info("deleted %d unfinished uploads", removed)
        await asyncio.sleep(settings.cleanup_interval_sec)


def build_app(settings: GatewaySettings, zones: dict[str, Zone] | None = None) -> web.Application:
    """The gateway app for ``settings`` (zones are opened here unless given)."""
    zones = open_zones(settings) if zones is None else zones
    app = web.Application(middlewares=[cors_middleware(settings.cors_origins), note_middleware,
                                       error_middleware],
                          client_max_size=settings.max_body_bytes)
    app[SETTINGS_KEY] = settings
    app[ZONES_KEY] = zones
    metrics = GatewayMetrics()
    on_demand = OnDemand(settings, metrics)
    access_log = AccessLog(settings.access_log)
    app[FETCHER_KEY] = on_demand
    chunk_checks = ChunkChecks(settings, ChunkStore())
    app[chunks.CHUNKS_KEY] = chunk_checks
    app[WHOLE_FILES_KEY] = chunk_checks
    app[REQUEST_LOG_KEY] = RequestLog(metrics, access_log)
    api = GatewayApi(settings, zones,
                     {**multipart.PAYLOAD_TYPES, **announcements.PAYLOAD_TYPES, **chunks.PAYLOAD_TYPES},
                     {**multipart.HANDLERS, **announcements.HANDLERS, **chunks.HANDLERS})
    info = capabilities(settings, zones, api)

    async def get_info(request: web.Request) -> web.Response:
        return web.json_response(info)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def get_metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})
    openapi_doc = yaml.safe_load(OPENAPI_FILE.read_text())

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(openapi_doc)

    files = FileRoutes(zones)
    registration = RegistrationRoutes(zones)
    app.router.add_post("/api/gateway", api.handle)
    app.router.add_routes(V2Api(settings, zones).routes())
    app.router.add_get("/api/info", get_info)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/registerClient/{client_id}", registration.register)
    app.router.add_get("/client/{client_id}", registration.show)
    app.router.add_get("/files/{zone}/{key:.+}", files.get)
    app.router.add_put("/files/{zone}/{key:.+}", files.put)

    async def background(app: web.Application) -> AsyncIterator[None]:
        await probe_zones(zones)
        chunk_checks.start()
        task = asyncio.create_task(_cleanup_loop(settings, zones, chunk_checks))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await chunk_checks.close()
        await on_demand.close()
        await close_zones(zones)
        access_log.close()

    app.cleanup_ctx.append(background)
    return app
