"""The daemon side: a WebSocket at the proxy root, speaking protocol v1 (or 2 if asked).

Sequence: the daemon sends ``initialize`` (within ``init_timeout_sec``); the proxy
authorizes it, claims the name in the registry and answers ``{"type":"acknowledge"}``
(exactly that to a v1 daemon). Then the daemon answers ``requestFromClient`` messages
with ``responseToClient``. ``ping`` messages are accepted (a v2 daemon gets ``pong``);
proxy-side WebSocket heartbeats drop a daemon that stops answering.

The message logic here is shared by the lean socket of :mod:`.ws_front` (used in
production) and the aiohttp handler :func:`root` (used when the app runs on plain aiohttp).

Close codes: 4001 not authorized, 4002 name taken/held elsewhere, 4003 zone mismatch,
4004 protocol error, 4008 no initialize in time, 4009 replaced by a takeover.
"""

from __future__ import annotations

import asyncio
from typing import cast

from aiohttp import WSMsgType, web

from ..errors import ProtocolError
from ..messages import Acknowledge, Initialize, Pong, dumps, parse
from .connection import AiohttpSocket, DaemonConnection, DaemonSocket, text_frame
from .errors import ProxyRefusal
from .state import STATE, ProxyState
from .wire import declared_types, is_valid_reply, parse_daemon_message

CLOSE_UNAUTHORIZED = 4001
CLOSE_NAME_TAKEN = 4002
CLOSE_ZONE = 4003
CLOSE_PROTOCOL = 4004
CLOSE_INIT_TIMEOUT = 4008
_CLOSE_FOR_STATUS = {401: CLOSE_UNAUTHORIZED, 403: CLOSE_ZONE, 409: CLOSE_NAME_TAKEN}
_PONG = text_frame(dumps(Pong()).encode())


class InitRefused(Exception):
    """An initialize that is refused: close the socket with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


async def initialize(st: ProxyState, sock: DaemonSocket, text: str,
                     remote: str) -> DaemonConnection:
    """Authorize, claim the name, acknowledge; return the connection or raise InitRefused."""
    name = None
    try:
        try:
            init: Initialize = parse(Initialize, text)
        except ProtocolError as exc:
            raise InitRefused(CLOSE_PROTOCOL, str(exc)) from None
        name = init.resourceName
        try:
            grant = st.authorizer.authorize(name, init.proxySecret, init.zone)
            protocol = 2 if (init.protocolVersion or 1) >= 2 else 1
            conn = DaemonConnection(sock, name, grant.zone, protocol=protocol,
                                    via_token=grant.via_token,
                                    max_inflight=st.settings.max_inflight_per_resource,
                                    remote=remote, instance_id=st.settings.instance_id,
                                    request_types=declared_types(init.requestTypes))
            replacing = name in st.registry.conns
            await st.registry.claim(conn)
        except ProxyRefusal as refusal:
            code = _CLOSE_FOR_STATUS.get(refusal.status, CLOSE_PROTOCOL)
            raise InitRefused(code, refusal.message) from None
    except InitRefused as refused:
        st.metrics.event("refused")
        st.access_log.write(event="daemon-refused", resource=name, remote=remote,
                            closeCode=refused.code, reason=refused.reason,
                            instance=st.settings.instance_id)
        raise
    ack = Acknowledge() if protocol == 1 else Acknowledge(protocolVersion=2,
                                                          heartbeatSec=st.settings.heartbeat_sec)
    try:
        sock.send_frames(text_frame(dumps(ack).encode()))
    except ConnectionError:  # the socket closed while the name was being claimed
        await st.registry.release(conn)
        raise InitRefused(CLOSE_PROTOCOL, "the socket closed before the acknowledge") from None
    st.metrics.event("replaced" if replacing else "connected")
    st.access_log.write(event="daemon-connected", resource=conn.name, zone=conn.zone,
                        protocol=protocol, requestTypes=sorted(conn.request_types),
                        viaToken=grant.via_token, remote=remote,
                        instance=st.settings.instance_id)
    return conn


def on_text(st: ProxyState, conn: DaemonConnection, text: str) -> None:
    """One text message from an initialized daemon."""
    data = parse_daemon_message(text)
    if data is None:
        st.metrics.event("invalid-message")
        return
    kind = data["type"]
    if kind == "responseToClient":
        if not is_valid_reply(data):
            st.metrics.event("invalid-message")
        elif not conn.deliver(data["requestId"], data):
            st.metrics.event("dropped-reply")
    elif kind == "ping":
        if conn.protocol >= 2:
            conn.sock.send_frames(_PONG)
    elif kind == "initialize":
        conn.close(CLOSE_PROTOCOL, "already initialized")
    else:
        st.metrics.event("invalid-message")


async def closed(st: ProxyState, conn: DaemonConnection, close_code: int | None) -> None:
    """The daemon's socket is gone: free its name and account for it."""
    await st.registry.release(conn)
    st.metrics.event("closed")
    st.access_log.write(event="daemon-closed", resource=conn.name, zone=conn.zone,
                        remote=conn.remote, instance=st.settings.instance_id,
                        closeCode=close_code)


async def root(request: web.Request) -> web.StreamResponse:
    """``/`` on plain aiohttp: a WebSocket upgrade is a daemon; a plain GET gets a note."""
    st = request.app[STATE]
    s = st.settings
    ws = web.WebSocketResponse(heartbeat=s.heartbeat_sec, max_msg_size=s.max_frame_bytes,
                               compress=False, timeout=5.0)
    if not ws.can_prepare(request).ok:
        return web.json_response({"service": "kachery-resource-proxy",
                                  "message": "daemons connect here by WebSocket; clients "
                                             "POST /r/{resource}; see /openapi.json"})
    await ws.prepare(request)
    transport = cast(asyncio.Transport, request.transport)  # uvloop's is not a subclass
    sock = AiohttpSocket(ws, transport)
    remote = st.limiter.client_ip(request)
    conn = None
    try:
        msg = await ws.receive(timeout=s.init_timeout_sec)
        if msg.type == WSMsgType.TEXT:
            conn = await initialize(st, sock, msg.data, remote)
        elif msg.type == WSMsgType.BINARY:
            raise InitRefused(CLOSE_PROTOCOL, "expected a JSON text initialize message")
        if conn is not None:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    on_text(st, conn, msg.data)
                else:
                    st.metrics.event("invalid-message")
    except TimeoutError:
        await ws.close(code=CLOSE_INIT_TIMEOUT, message=b"no initialize message in time")
    except InitRefused as refused:
        await ws.close(code=refused.code, message=refused.reason.encode()[:120])
    finally:
        if conn is not None:
            await closed(st, conn, ws.close_code)
        if not ws.closed:
            await ws.close()
    return ws
