"""The gateway's one HTTP error type and the JSON shape every error is rendered as.

Every failure answers with a non-200 status and the body::

    {"error": "<code>", "message": "<what went wrong and what to do>", "status": <int>}

kachery-cloud prints the body text of a failed call, so the message is what a user reads.
"""

from __future__ import annotations

import errno
import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from ..errors import GatewayError
from .requestlog import note


class ApiError(GatewayError):
    """Raised by gateway handlers to refuse a request; carries the HTTP status and a code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message, status)
        self.code = code

    @property
    def http_status(self) -> int:
        """The HTTP status this error is answered with."""
        return self.status if self.status is not None else 500


def bad_request(code: str, message: str) -> ApiError:
    """A 400: the request itself is malformed."""
    return ApiError(400, code, message)


def forbidden(code: str, message: str) -> ApiError:
    """A 403: the signer is not allowed to do this."""
    return ApiError(403, code, message)


def error_body(status: int, code: str, message: str) -> dict[str, object]:
    """The JSON body of an error response."""
    return {"error": code, "message": message, "status": status}


def error_response(status: int, code: str, message: str) -> web.Response:
    """An error answered in the gateway's one JSON shape."""
    return web.Response(
        status=status,
        text=json.dumps(error_body(status, code, message)),
        content_type="application/json",
    )


_HTTP_CODES = {
    400: "bad_request",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render ApiError, aiohttp HTTP errors and unexpected failures as the one JSON shape."""
    try:
        return await handler(request)
    except ApiError as exc:
        note(error=exc.code)
        return error_response(exc.http_status, exc.code, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        return error_response(exc.status, code, exc.reason)
    except ConnectionError as exc:  # the client went away mid-transfer: expected, one line
        received = getattr(request.content, "total_bytes", 0)
        logging.getLogger("kachery_resource.gateway").warning(
            "client %s went away during %s %s after %d bytes (%s)", request.remote,
            request.method, request.path[:200], received, exc)
        note(error="client_gone")
        return error_response(499, "client_gone", "the client closed the connection")
    except Exception as exc:  # the last line of defence: never leak a traceback
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            logging.getLogger("kachery_resource.gateway").error(
                "the storage is full: %s %s failed (%s)", request.method, request.path[:200], exc)
            note(error="storage_full")
            return error_response(507, "storage_full", "the gateway's storage is full (no "
                                  "space left on its device); try again once the zone "
                                  "operator has freed space")
        request.app.logger.exception("unexpected error in %s %s", request.method, request.path)
        return error_response(500, "internal_error", f"internal error: {type(exc).__name__}")
