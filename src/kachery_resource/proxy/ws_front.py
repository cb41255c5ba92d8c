"""A lean server-side WebSocket (RFC 6455) for daemon connections.

aiohttp keeps a request, a response, a reader, a writer and a suspended handler task per
WebSocket (about 15 KB per idle daemon here); this protocol keeps one small object and a
timer, parses frames in callbacks, and shares the message logic of
:mod:`.daemon_socket`. No extensions (no compression), no subprotocols.

Heartbeat: every ``heartbeat_sec`` the proxy sends a ping; a daemon that sends nothing
at all (no pong, no message) within half that time is dropped.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
from collections.abc import Callable

from .connection import DaemonConnection, frame
from .daemon_socket import (
    CLOSE_INIT_TIMEOUT,
    CLOSE_PROTOCOL,
    InitRefused,
    closed,
    initialize,
    on_text,
)
from .state import ProxyState

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
CLOSE_NORMAL, CLOSE_GOING_AWAY, CLOSE_PROTOCOL_ERROR = 1000, 1001, 1002
CLOSE_BAD_DATA, CLOSE_TOO_BIG, CLOSE_NO_PONG = 1007, 1009, 1006
_PING = frame(OP_PING, b"")


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept answer for a client's Sec-WebSocket-Key."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _GUID).digest()).decode()


def handshake_response(key: str) -> bytes:
    return ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n").encode("latin-1")


def unmask(data: bytes, mask: bytes) -> bytes:
    n = len(data)
    if not n:
        return b""
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


class DaemonWebSocket(asyncio.Protocol):
    """One daemon's socket after the upgrade; also the connection's DaemonSocket."""

    __slots__ = ("_buf", "_closing", "_conn", "_fragments", "_heard", "_init", "_ip",
                 "_queued", "_release", "_st", "_timer", "_transport", "close_code")

    def __init__(self, st: ProxyState, transport: asyncio.Transport, ip: str,
                 release: Callable[[], None]) -> None:
        self._st = st
        self._transport: asyncio.Transport | None = transport
        self._ip = ip
        self._release = release  # frees the per-IP slot when the socket ends
        self._buf = b""
        self._fragments: list[bytes] | None = None
        self._conn: DaemonConnection | None = None
        self._init: asyncio.Task[None] | None = None
        self._queued: list[str] | None = None
        self._closing = False
        self._heard = True
        self.close_code: int | None = None
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(st.settings.init_timeout_sec, self._init_expired)

    # -- DaemonSocket -------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closing or self._transport is None

    def send_frames(self, data: bytes) -> None:
        if self.closed:
            raise ConnectionResetError("daemon socket closed")
        assert self._transport is not None
        self._transport.write(data)

    def close(self, code: int, reason: str, *, abort: bool = False) -> None:
        """Send a close frame and close; ``abort`` drops what cannot be sent (dead peer)."""
        transport = self._transport
        if self._closing or transport is None:
            return
        self._closing = True
        self.close_code = code
        transport.write(frame(OP_CLOSE, struct.pack("!H", code) + reason.encode()[:120]))
        if abort:
            transport.abort()
        else:
            transport.close()

    # -- asyncio.Protocol ---------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        self._heard = True
        pos = 0
        while not self._closing:
            end = self._parse_one(buf, pos)
            if end < 0:
                break
            pos = end
        self._buf = buf[pos:] if pos else buf  # one copy per read, not one per frame

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._timer.cancel()
        if self.close_code is None:
            self.close_code = CLOSE_NO_PONG
        self._release()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.fail_all()
            task = asyncio.ensure_future(closed(self._st, conn, self.close_code))
            _background.add(task)
            task.add_done_callback(_background.discard)
        elif self._init is not None and not self._init.done():
            self._init.cancel()

    # -- frames -------------------------------------------------------------------------
    def _parse_one(self, buf: bytes, start: int) -> int:
        """Handle the complete frame at ``buf[start:]``; return where it ends, or -1."""
        have = len(buf) - start
        if have < 2:
            return -1
        b0, b1 = buf[start], buf[start + 1]
        opcode, fin, n = b0 & 0x0F, b0 & 0x80, b1 & 0x7F
        if b0 & 0x70 or not b1 & 0x80:
            self.close(CLOSE_PROTOCOL_ERROR, "client frames must be masked, without extensions")
            return -1
        pos = start + 2
        if n == 126:
            if have < 4:
                return -1
            n, pos = int.from_bytes(buf[pos:pos + 2], "big"), pos + 2
        elif n == 127:
            if have < 10:
                return -1
            n, pos = int.from_bytes(buf[pos:pos + 8], "big"), pos + 8
        limit = self._st.settings.max_frame_bytes
        pending = sum(map(len, self._fragments)) if self._fragments else 0
        if n + pending > limit:
            self.close(CLOSE_TOO_BIG, f"message too big (limit {limit} bytes)")
            return -1
        end = pos + 4 + n
        if len(buf) < end:
            return -1
        payload = unmask(buf[pos + 4:end], buf[pos:pos + 4])
        if opcode >= 0x8:
            self._control(opcode, fin, payload)
        elif opcode == OP_CONT:
            if self._fragments is None:
                self.close(CLOSE_PROTOCOL_ERROR, "continuation without a first fragment")
                return end
            self._fragments.append(payload)
            if fin:
                message, self._fragments = b"".join(self._fragments), None
                self._message(message)
        elif self._fragments is not None:
            self.close(CLOSE_PROTOCOL_ERROR, "new message inside a fragmented one")
        elif opcode == OP_BINARY:
            self._binary()
        elif opcode == OP_TEXT:
            if fin:
                self._message(payload)
            else:
                self._fragments = [payload]
        else:
            self.close(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode}")
        return end

    def _control(self, opcode: int, fin: int, payload: bytes) -> None:
        if not fin or len(payload) > 125:
            self.close(CLOSE_PROTOCOL_ERROR, "invalid control frame")
        elif opcode == OP_PING:
            self.send_frames(frame(OP_PONG, payload))
        elif opcode == OP_CLOSE:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else CLOSE_NORMAL
            if len(payload) == 1 or not _valid_close_code(code):
                self.close(CLOSE_PROTOCOL_ERROR, "invalid close frame")
                return
            try:
                payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                self.close(CLOSE_BAD_DATA, "close reason is not valid UTF-8")
                return
            self.close(code, "")
        elif opcode != OP_PONG:
            self.close(CLOSE_PROTOCOL_ERROR, f"unknown control opcode {opcode}")

    def _binary(self) -> None:
        if self._conn is None and self._init is None:
            self._refuse(InitRefused(CLOSE_PROTOCOL, "expected a JSON text initialize message"))
        else:
            self._st.metrics.event("invalid-message")

    def _message(self, payload: bytes) -> None:
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            self.close(CLOSE_BAD_DATA, "text message is not valid UTF-8")
            return
        if self._conn is not None:
            on_text(self._st, self._conn, text)
        elif self._init is None:
            self._init = asyncio.ensure_future(self._initialize(text))
        elif self._queued is None:
            self._queued = [text]  # sent before the acknowledge: handle right after it
        else:
            self._queued.append(text)

    # -- initialize and heartbeat -------------------------------------------------------
    async def _initialize(self, text: str) -> None:
        try:
            conn = await initialize(self._st, self, text, self._ip)
        except InitRefused as refused:
            self._refuse(refused)
            return
        if self._transport is None:  # gone while we were claiming
            await closed(self._st, conn, self.close_code)
            return
        self._conn = conn
        self._timer.cancel()
        self._arm_heartbeat()
        queued, self._queued = self._queued, None
        for message in queued or ():
            on_text(self._st, conn, message)

    def _refuse(self, refused: InitRefused) -> None:
        self.close(refused.code, refused.reason)

    def _init_expired(self) -> None:
        if self._conn is None:
            self._st.metrics.event("refused")
            self.close(CLOSE_INIT_TIMEOUT, "no initialize message in time")

    def _arm_heartbeat(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._st.settings.heartbeat_sec, self._ping)

    def _ping(self) -> None:
        if self.closed:
            return
        self._heard = False
        self.send_frames(_PING)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._st.settings.heartbeat_sec / 2, self._check_heard)

    def _check_heard(self) -> None:
        if self.closed:
            return
        if not self._heard:
            self._st.metrics.event("heartbeat-timeout")
            self.close(CLOSE_GOING_AWAY, "no answer to heartbeat ping", abort=True)
            return
        self._arm_heartbeat()


def _valid_close_code(code: int) -> bool:
    """A code a peer may send in a close frame (RFC 6455 section 7.4, IANA registry)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


_background: set[asyncio.Future[None]] = set()
