"""A lean HTTP/1.1 front for the hot path, ``POST /r/{resource}``, with aiohttp for the rest.

aiohttp's full request machinery costs several times more CPU per request than the relay
itself, so each TCP connection starts in :class:`FrontProtocol`. It serves the common,
simple case itself: ``POST /r/<name>`` with a ``Content-Length`` body (one request at a
time, in order; keep-alive as HTTP/1.1 has it by default and HTTP/1.0 asks for it, as
``ab -k`` does). At the first request that is anything else
(another path or method, chunked body, ``Expect``, a percent-encoded name, an
oversized body or head), and with no response pending, it hands the connection, with the
bytes it has buffered, to aiohttp's own protocol, which serves it with the same handlers
as every other route. The semantics are the app's: same validation, relay, limits,
metrics and access log (:func:`.http_api.relay_request`).
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, cast

from .errors import ProxyRefusal
from .http_api import relay_request
from .state import ProxyState
from .wire import compact_json
from .ws_front import DaemonWebSocket, handshake_response

_MAX_HEAD = 8192
IDLE_SEC = 75.0  # a keep-alive connection with no request this long is closed (see sweep)
_REASONS = {s.value: s.phrase for s in HTTPStatus}
_VERSIONS = ("HTTP/1.1", "HTTP/1.0")


def _is_simple_target(target: str) -> bool:
    """``/r/<name>`` with a plain ASCII name that needs no decoding."""
    name = target[3:]
    return (target.startswith("/r/") and bool(name) and name.isascii()
            and not any(c in name for c in "/?%#"))


def _headers(lines: list[str]) -> dict[str, str] | None:
    """Header fields by lower-case name; None if malformed or repeated where it matters."""
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name[-1] in " \t" or name[0] in " \t":
            return None
        key = name.lower()
        if key in headers and key in ("content-length", "sec-websocket-key", "host"):
            return None
        headers[key] = value.strip()
    return headers


def _is_simple_body(headers: dict[str, str], max_bytes: int) -> bool:
    """A Content-Length body within the limit, nothing the fast path does not handle."""
    length = headers.get("content-length", "")
    return (length.isdigit() and int(length) <= max_bytes and "transfer-encoding" not in headers
            and "expect" not in headers and "upgrade" not in headers)


def _is_websocket_key(key: str) -> bool:
    """RFC 6455 4.2.1: base64 of 16 bytes (anything else goes to aiohttp, which says 400)."""
    try:
        return len(key) == 24 and len(base64.b64decode(key, validate=True)) == 16
    except ValueError:
        return False


def _is_websocket(headers: dict[str, str]) -> bool:
    return (headers.get("upgrade", "").lower() == "websocket"
            and "upgrade" in headers.get("connection", "").lower()
            and headers.get("sec-websocket-version") == "13"
            and _is_websocket_key(headers.get("sec-websocket-key", ""))
            and "content-length" not in headers and "transfer-encoding" not in headers)


class FrontProtocol(asyncio.Protocol):
    """One client connection, until (maybe) handed to aiohttp."""

    __slots__ = ("__weakref__", "_buf", "_busy", "_close_after", "_fallback", "_idle_since",
                 "_ip", "_say_keep_alive", "_state", "_task", "_transport")

    def __init__(self, state: ProxyState, fallback: Callable[[], asyncio.Protocol]) -> None:
        self._state = state
        self._fallback = fallback
        self._buf = b""
        self._busy = False
        self._close_after = False
        self._say_keep_alive = False
        self._task: asyncio.Task[None] | None = None
        self._transport: asyncio.Transport | None = None
        self._idle_since: float | None = None  # None: busy, or no longer ours
        self._ip = "?"

    # -- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport is not an asyncio.Transport subclass, but has its methods
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._ip = peer[0] if isinstance(peer, tuple) else "?"
        self._idle_since = time.monotonic()

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if not self._busy:
            self._next()
        elif len(self._buf) > 4 * self._state.settings.max_body_bytes and self._transport:
            self._transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()  # the client left while waiting: free its slot now
        self._idle_since = None
        self._transport = None

    # -- parsing ------------------------------------------------------------------------
    def _next(self) -> None:
        """Start the next buffered request, or hand the connection to aiohttp."""
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > _MAX_HEAD:
                self._hand_off()
            return
        lines = buf[:end].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        headers = _headers(lines)
        if len(parts) != 3 or parts[2] not in _VERSIONS or headers is None:
            self._hand_off()
        elif parts[0] == "GET" and parts[1] == "/" and _is_websocket(headers):
            self._upgrade(headers, buf[end + 4:])
        elif parts[0] != "POST" or not _is_simple_target(parts[1]) \
                or not _is_simple_body(headers, self._state.settings.max_body_bytes):
            self._hand_off()
        else:
            self._start_post(parts[1][3:], parts[2], headers, buf, end + 4)

    def _start_post(self, name: str, version: str, headers: dict[str, str], buf: bytes,
                    start: int) -> None:
        length = int(headers["content-length"])
        if len(buf) < start + length:
            return  # wait for the rest of the body
        body = buf[start:start + length]
        self._buf = buf[start + length:]
        connection = headers.get("connection", "").lower()
        if version == "HTTP/1.1":
            self._close_after = "close" in connection
            self._say_keep_alive = False
        else:  # HTTP/1.0 keeps the connection only when asked to, and says so in the answer
            self._close_after = "keep-alive" not in connection
            self._say_keep_alive = not self._close_after
        self._busy = True
        self._idle_since = None
        self._task = asyncio.ensure_future(self._serve(name, body, self._client_ip(headers)))

    def _client_ip(self, headers: dict[str, str]) -> str:
        forwarded = headers.get("x-forwarded-for")
        if forwarded and self._state.settings.trust_forwarded_for:
            return forwarded.split(",")[0].strip()
        return self._ip

    def _upgrade(self, headers: dict[str, str], rest: bytes) -> None:
        """Accept a daemon's WebSocket here (lean socket, see :mod:`.ws_front`)."""
        transport = self._transport
        assert transport is not None
        st = self._state
        ip = self._client_ip(headers)
        try:
            st.limiter.acquire(ip)
        except ProxyRefusal as refusal:
            self._close_after = True
            self._respond(refusal.status, refusal.body(), refusal.retry_after)
            return
        self._idle_since = None
        self._transport = None
        self._buf = b""
        transport.write(handshake_response(headers["sec-websocket-key"]))
        ws = DaemonWebSocket(st, transport, ip, lambda: st.limiter.release(ip))
        transport.set_protocol(ws)
        transport.resume_reading()
        if rest:
            ws.data_received(rest)

    async def _serve(self, name: str, body: bytes, ip: str) -> None:
        st = self._state
        try:
            st.limiter.acquire(ip)
        except ProxyRefusal as refusal:
            st.metrics.observe(refusal.code, 0.0)
            self._respond(refusal.status, refusal.body(), refusal.retry_after)
            return
        try:
            status, payload, retry_after = await relay_request(st, name, body, ip, "POST",
                                                               "/r/" + name)
        finally:
            st.limiter.release(ip)
        self._respond(status, payload, retry_after)

    def _respond(self, status: int, payload: dict[str, Any], retry_after: int | None) -> None:
        transport = self._transport
        if transport is None:
            return
        body = compact_json(payload)
        extra = f"Retry-After: {retry_after}\r\n" if retry_after is not None else ""
        if self._close_after:
            extra += "Connection: close\r\n"
        elif self._say_keep_alive:
            extra += "Connection: keep-alive\r\n"
        head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
                "Content-Type: application/json; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\n{extra}\r\n")
        transport.write(head.encode("latin-1") + body)
        self._busy = False
        self._task = None
        if self._close_after:
            transport.close()
            return
        transport.resume_reading()
        if self._buf:
            self._next()
        if not self._busy and self._transport is not None:
            self._idle_since = time.monotonic()

    def close(self) -> None:
        """Close the client connection (proxy shutting down)."""
        if self._transport is not None:
            self._transport.close()

    def close_if_idle(self, now: float, idle_sec: float) -> None:
        """Close the connection if it has waited for a request longer than ``idle_sec``."""
        since = self._idle_since
        if since is not None and now - since > idle_sec and self._transport is not None:
            self._transport.close()

    # -- helpers ------------------------------------------------------------------------
    def _hand_off(self) -> None:
        """Give this connection (and what it has buffered) to aiohttp."""
        transport = self._transport
        if transport is None:
            return
        self._idle_since = None
        self._transport = None
        protocol = self._fallback()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        transport.resume_reading()
        data, self._buf = self._buf, b""
        if data:
            protocol.data_received(data)
