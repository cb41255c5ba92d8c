"""One connected daemon: its socket, and the requests waiting for its replies.

Requests are routed back in O(1) through a dict keyed by an unguessable request id;
a reply whose id is unknown (late, duplicate, forged) is dropped.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any, Protocol

from aiohttp import web

from .errors import ProxyRefusal, timed_out
from .wire import (
    DEFAULT_REQUEST_TYPES,
    check_declared,
    client_envelope,
    request_message,
    v1_request,
)


class DaemonSocket(Protocol):
    """What a connection needs from the daemon's WebSocket (ours or aiohttp's)."""

    @property
    def closed(self) -> bool: ...

    def send_frames(self, data: bytes) -> None:
        """Write complete, encoded WebSocket frames; raise ConnectionResetError if closed."""

    def close(self, code: int, reason: str) -> None:
        """Send a close frame and drop the connection, without waiting."""


class AiohttpSocket:
    """An aiohttp WebSocketResponse seen as a DaemonSocket (frames go to its transport)."""

    __slots__ = ("transport", "ws")

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport) -> None:
        self.ws = ws
        self.transport = transport

    @property
    def closed(self) -> bool:
        return self.ws.closed or self.transport.is_closing()

    def send_frames(self, data: bytes) -> None:
        if self.closed:
            raise ConnectionResetError("daemon socket closed")
        self.transport.write(data)

    def close(self, code: int, reason: str) -> None:
        task = asyncio.ensure_future(self.ws.close(code=code, message=reason.encode()[:120]))
        _closing.add(task)
        task.add_done_callback(_closing.discard)


class DaemonConnection:
    """A daemon's WebSocket as held by this proxy instance."""

    __slots__ = ("_outbox", "closed", "instance_id", "max_inflight", "name", "pending",
                 "protocol", "remote", "request_types", "since", "sock", "via_token", "zone")

    def __init__(self, sock: DaemonSocket, name: str, zone: str, *, protocol: int,
                 via_token: bool, max_inflight: int, remote: str, instance_id: str,
                 request_types: frozenset[str] = DEFAULT_REQUEST_TYPES) -> None:
        self.sock = sock
        #: the inner request types the daemon declared (a v1 daemon: fileUpload only)
        self.request_types = request_types if protocol >= 2 else DEFAULT_REQUEST_TYPES
        self._outbox: list[bytes] | None = None  # frames written together once per loop turn
        self.name = name
        self.zone = zone
        self.protocol = protocol
        self.via_token = via_token
        self.max_inflight = max_inflight
        self.remote = remote
        self.instance_id = instance_id
        self.since = time.time()
        self.closed = False
        self.pending: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def relay(self, zone: str, request: dict[str, Any], wait_sec: float) -> dict[str, Any]:
        """Send one request and wait for the reply; return the client's envelope."""
        if zone != self.zone:
            raise ProxyRefusal(500, "zone-mismatch", f"Zone mismatch: {zone} <> {self.zone} "
                               f"(resource {self.name} is served in zone {self.zone})")
        if self.protocol >= 2:
            check_declared(request, self.request_types, self.name)
        if self.closed:
            raise ProxyRefusal(502, "resource-disconnected",
                               f"resource {self.name} disconnected; ask again shortly")
        if len(self.pending) >= self.max_inflight:
            raise ProxyRefusal(429, "too-many-requests",
                               f"resource {self.name} already has {self.max_inflight} requests "
                               "waiting; retry after a second", retry_after=1)
        if self.protocol == 1:
            request = v1_request(request)
        request_id = secrets.token_urlsafe(16)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[dict[str, Any]] = loop.create_future()
        self.pending[request_id] = fut
        timer = loop.call_later(wait_sec, _expire, fut)
        try:
            self.send(request_message(self.name, self.zone, request, int(wait_sec * 1000),
                                      request_id))
            reply = await fut
        except TimeoutError:
            raise timed_out(self.name, wait_sec) from None
        except ConnectionError:
            raise ProxyRefusal(502, "resource-disconnected",
                               f"resource {self.name} disconnected before answering; "
                               "ask again shortly") from None
        finally:
            timer.cancel()
            del self.pending[request_id]
        return client_envelope(reply)

    def send(self, message: bytes) -> None:
        """Queue one message (UTF-8 JSON) for the daemon; raise ConnectionResetError if closed.

        Every message queued in the same event-loop iteration goes out in one write (one
        system call), as complete, unmasked WebSocket text frames (RFC 6455 section 5.2), so
        they interleave safely with the socket's own frames (pings, close).
        """
        if self.closed or self.sock.closed:
            raise ConnectionResetError("daemon socket closed")
        if self._outbox is None:
            self._outbox = []
            asyncio.get_running_loop().call_soon(self._flush)
        self._outbox.append(text_frame(message))

    def _flush(self) -> None:
        frames, self._outbox = self._outbox, None
        if frames and not self.sock.closed:
            self.sock.send_frames(b"".join(frames))

    def deliver(self, request_id: str, reply: dict[str, Any]) -> bool:
        """Hand a daemon's reply to its waiting request; False if nobody waits for it."""
        fut = self.pending.get(request_id)
        if fut is None or fut.done():
            return False
        fut.set_result(reply)
        return True

    def fail_all(self) -> None:
        """The socket is gone: every waiting request fails now (502)."""
        self.closed = True
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(ConnectionResetError("daemon disconnected"))

    def close(self, code: int, reason: str) -> None:
        """Fail waiting requests now; close the socket without waiting (it may be stale)."""
        self.fail_all()
        self.sock.close(code, reason)


_closing: set[asyncio.Future[Any]] = set()


def text_frame(payload: bytes) -> bytes:
    """An unmasked, final WebSocket text frame (server to client) carrying ``payload``."""
    return frame(0x1, payload)


def frame(opcode: int, payload: bytes) -> bytes:
    """An unmasked, final WebSocket frame (server to client)."""
    n = len(payload)
    head = 0x80 | opcode
    if n < 126:
        return bytes((head, n)) + payload
    if n < 65536:
        return bytes((head, 126)) + n.to_bytes(2, "big") + payload
    return bytes((head, 127)) + n.to_bytes(8, "big") + payload


def _expire(fut: asyncio.Future[dict[str, Any]]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())
