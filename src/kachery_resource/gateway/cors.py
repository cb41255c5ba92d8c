"""CORS for browsers: the client-facing API (both generations) and the signed ``/files/…`` URLs.

A web page on another origin may call ``/api/…`` and download (and upload) through the
local backend's signed URLs. Preflights (``OPTIONS`` with ``Access-Control-Request-Method``)
are answered here with 204; every other answer on these paths, errors included, carries
``Access-Control-Allow-Origin`` for an allowed origin, so a page can read a 401's message.
``Authorization``, ``Content-Type`` and ``Range`` may be sent; ``Content-Range``,
``Content-Length``, ``Accept-Ranges`` and ``ETag`` may be read. Origins come from the
``corsOrigins`` setting (default ``["*"]``: any page; keys travel in a header, never in
cookies, so no page gains a visitor's rights).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

PATHS = ("/api/", "/files/")
ALLOW_METHODS = "GET, HEAD, PUT, POST, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type, Range"
EXPOSE_HEADERS = "Content-Range, Content-Length, Accept-Ranges, ETag"
MAX_AGE_SEC = 600

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def cors_middleware(origins: list[str]) -> Middleware:
    """The middleware for ``origins`` (``"*"`` among them: every origin)."""
    any_origin = "*" in origins
    allowed = set(origins)

    def allow_origin(origin: str | None) -> str | None:
        if origin is None:
            return None
        if any_origin:
            return "*"
        return origin if origin in allowed else None

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(PATHS):
            return await handler(request)
        origin = allow_origin(request.headers.get("Origin"))
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            if origin is None:
                return web.json_response(
                    {"error": "origin not allowed: the gateway's corsOrigins setting does not "
                              "list this page's origin", "code": "cors_origin_not_allowed"},
                    status=403)
            return web.Response(status=204, headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": ALLOW_METHODS,
                "Access-Control-Allow-Headers": ALLOW_HEADERS,
                "Access-Control-Max-Age": str(MAX_AGE_SEC),
                "Vary": "Origin"})
        response = await handler(request)
        if response.prepared:
            return response
        if origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        if not any_origin:  # the answer depends on Origin: shared caches must key on it
            response.headers.add("Vary", "Origin")
        return response

    return middleware
