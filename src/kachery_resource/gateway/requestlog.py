"""Per request, once its response was sent: metrics, and one access-log line.

aiohttp calls :class:`GatewayAccessLogger` after the last byte went out (or the client
went away), so the line has the real status, bytes and duration. Handlers add fields to
the line of the request they serve with :func:`note` (who signed, which call, which
resource served an on-demand find); :func:`note_middleware` gives each request its own.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler

from ..accesslog import AccessLog
from .metrics import GatewayMetrics

_NOTE: ContextVar[dict[str, Any] | None] = ContextVar("gateway_request_note", default=None)
NOTE_KEY = web.RequestKey("kachery_note", dict[str, Any])


class RequestLog:
    """Where finished requests go: the metrics and the access log."""

    def __init__(self, metrics: GatewayMetrics, access_log: AccessLog) -> None:
        self.metrics = metrics
        self.access_log = access_log

    def record(self, request: web.BaseRequest, response: web.StreamResponse, seconds: float) -> None:
        fields: dict[str, Any] = request.get(NOTE_KEY) or {}
        endpoint = str(fields.pop("endpoint", "") or _route(request))
        status = response.status
        # a file sent with sendfile is not counted by aiohttp: its declared length then
        sent = response.body_length or (response.content_length or 0 if status < 300 else 0)
        received = getattr(request.content, "total_bytes", 0)
        m = self.metrics
        m.requests.labels(endpoint, str(status)).inc()
        m.duration.labels(endpoint).observe(seconds)
        m.bytes.labels("sent").inc(sent)
        m.bytes.labels("received").inc(received)
        if fields.get("error") == "content_mismatch":
            m.verification_failures.inc()
        if self.access_log.enabled:
            self.access_log.write(method=request.method, path=request.path[:300],
                                  endpoint=endpoint, status=status, bytes=sent, received=received,
                                  durationMs=round(seconds * 1000, 2), remote=request.remote,
                                  **fields)


def _route(request: web.BaseRequest) -> str:
    """The route's pattern (``/files/{zone}/{key}``), bounded for metrics labels."""
    match = getattr(request, "match_info", None)
    route = getattr(match, "route", None)
    resource = getattr(route, "resource", None)
    return resource.canonical if resource is not None else "other"


REQUEST_LOG_KEY = web.AppKey("request_log", RequestLog)


class GatewayAccessLogger(AbstractAccessLogger):
    """Hands each finished request to the app's :class:`RequestLog`."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        app = getattr(request, "app", None)
        sink = app.get(REQUEST_LOG_KEY) if app is not None else None
        if sink is not None:
            sink.record(request, response, time)

    @property
    def enabled(self) -> bool:
        return True


def note(**fields: Any) -> None:
    """Add ``fields`` to the access-log line of the request being served (if any)."""
    current = _NOTE.get()
    if current is not None:
        current.update(fields)


@web.middleware
async def note_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give the request a fresh set of log fields that :func:`note` fills."""
    fields: dict[str, Any] = {}
    request[NOTE_KEY] = fields
    token = _NOTE.set(fields)
    try:
        return await handler(request)
    finally:
        _NOTE.reset(token)
