"""HTTP endpoints: POST /r/{resource} (the relay), probe, health, info, metrics, OpenAPI."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .errors import ProxyRefusal
from .state import STATE, ProxyState
from .wire import ROUTED_REQUEST_TYPES, clamp_waits, compact_json, parse_client_body

try:
    from importlib.metadata import version as _version

    VERSION = _version("kachery-resource")
except Exception:  # pragma: no cover - only when not installed
    VERSION = "0"

JSON = "application/json"


def json_response(body: object, status: int = 200) -> web.Response:
    return web.Response(body=compact_json(body), status=status, content_type=JSON,
                        charset="utf-8")


async def post_resource(request: web.Request) -> web.Response:
    """Relay a client's requestFromClient to the resource's daemon; answer the envelope."""
    st = request.app[STATE]
    name = request.match_info["resource"]
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        st.metrics.observe("body-too-large", 0.0)
        raise
    status, payload, retry_after = await relay_request(
        st, name, raw, st.limiter.client_ip(request), request.method, request.path)
    response = json_response(payload, status)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


async def relay_request(st: ProxyState, name: str, raw: bytes, ip: str, method: str,
                        path: str) -> tuple[int, dict[str, Any], int | None]:
    """Validate, relay and account for one client request: (status, JSON body, Retry-After).

    Used by the aiohttp route and by the fast front (:mod:`.fastpath`) alike.
    """
    t0 = time.perf_counter()
    outcome, status, req = "error", 500, None
    st.open_http += 1
    try:
        req = parse_client_body(raw, name)
        wait_sec = clamp_waits(req, st.settings.max_wait_sec, st.settings.inner_margin_sec)
        body = await st.registry.relay(name, req.zone, req.request, wait_sec)
        outcome, status = ("daemon-error" if "error" in body else "ok"), 200
        return 200, body, None
    except ProxyRefusal as refusal:
        outcome, status = refusal.code, refusal.status
        return refusal.status, refusal.body(), refusal.retry_after
    except asyncio.CancelledError:
        outcome, status = "client-gone", 499
        raise
    finally:
        st.open_http -= 1
        elapsed = time.perf_counter() - t0
        st.metrics.observe(outcome, elapsed)
        if st.access_log.enabled:
            st.access_log.write(
                event="request", method=method, path=path, resource=name,
                zone=req.zone if req else None, sha1=req.sha1 if req else None,
                requestType=req.request.get("type") if req else None, outcome=outcome,
                status=status, durationMs=round(elapsed * 1000, 2), remote=ip,
                instance=st.settings.instance_id)


async def probe(request: web.Request) -> web.Response:
    return web.Response(text="running.")


async def healthz(request: web.Request) -> web.Response:
    st = request.app[STATE]
    healthy = st.registry.healthy
    body = {"status": "ok" if healthy else "degraded",
            "nats": ("disabled" if st.settings.nats_url is None
                     else "connected" if healthy else "disconnected"),
            **st.counters()}
    return json_response(body, 200 if healthy else 503)


async def info(request: web.Request) -> web.Response:
    s = request.app[STATE].settings
    return json_response({
        "service": "kachery-resource-proxy", "version": VERSION,
        "protocols": [1, 2], "resourceRequestTypes": list(ROUTED_REQUEST_TYPES),
        "instance": s.instance_id, "multiInstance": s.nats_url is not None,
        "limits": {"maxWaitSec": s.max_wait_sec, "innerMarginSec": s.inner_margin_sec,
                   "maxBodyBytes": s.max_body_bytes, "maxFrameBytes": s.max_frame_bytes,
                   "maxInflightPerResource": s.max_inflight_per_resource,
                   "maxConnectionsPerIp": s.max_connections_per_ip,
                   "heartbeatSec": s.heartbeat_sec},
    })


async def metrics(request: web.Request) -> web.Response:
    data = generate_latest(request.app[STATE].metrics.registry)
    return web.Response(body=data, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    return json_response(request.app[STATE].openapi)


def error_response(refusal: ProxyRefusal) -> web.Response:
    response = json_response(refusal.body(), refusal.status)
    if refusal.retry_after is not None:
        response.headers["Retry-After"] = str(refusal.retry_after)
    return response


async def expect(request: web.Request) -> web.StreamResponse | None:
    """``Expect: 100-continue`` goes on; any other Expect is a 417 in our JSON shape
    (aiohttp's default handler answers 500 when the value is not ASCII)."""
    if request.version >= (1, 1) and request.headers.get("Expect", "").lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0
        return None
    return error_response(ProxyRefusal(417, "expectation-failed",
                                       "unsupported Expect header: only 100-continue is known"))


_HTTP_CODES = {404: "not-found", 405: "method-not-allowed", 413: "body-too-large"}


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Per-IP limit, and every error as ``{"message", "code"}`` JSON."""
    st = request.app[STATE]
    ip = st.limiter.client_ip(request)
    try:
        st.limiter.acquire(ip)
    except ProxyRefusal as refusal:
        st.metrics.observe(refusal.code, 0.0)
        return error_response(refusal)
    try:
        return await handler(request)
    except ProxyRefusal as refusal:
        return error_response(refusal)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 413:
            message = (f"request body too large: at most {st.settings.max_body_bytes} bytes "
                       "are accepted")
        else:
            message = f"{exc.reason}: {request.method} {request.path}"
        code = _HTTP_CODES.get(exc.status, "http-error")
        return error_response(ProxyRefusal(exc.status, code, message))
    finally:
        st.limiter.release(ip)
