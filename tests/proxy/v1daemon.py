"""A faithful stand-in for the old TypeScript resource daemon (protocol v1), for tests.

It speaks exactly the v1 messages and validates what it receives as strictly as the old
daemon: an unknown or missing field, or a wrong type, fails validation; the message is
logged in ``violations`` and ignored (the old daemon logs and ignores it). Before the
proxy's ``acknowledge`` it accepts nothing else (the old daemon closes).
It answers fileUpload requests from ``statuses`` (sha1 -> status object), else
``not-found``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp

REQUEST_KEYS = {"type", "resourceName", "zone", "request", "timeoutMsec", "requestId"}
FILE_UPLOAD_KEYS = {"type", "uri", "timeoutMsec"}


def _is_num(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_request_from_client(msg: dict[str, Any]) -> str | None:
    """The old daemon's validation of requestFromClient; returns the problem or None."""
    if set(msg) != REQUEST_KEYS:
        return f"fields {sorted(set(msg) ^ REQUEST_KEYS)} unexpected or missing"
    if not (isinstance(msg["resourceName"], str) and isinstance(msg["zone"], str)
            and isinstance(msg["requestId"], str) and _is_num(msg["timeoutMsec"])):
        return "wrong field types"
    req = msg["request"]
    if not isinstance(req, dict) or set(req) != FILE_UPLOAD_KEYS or req.get("type") != "fileUpload":
        return f"inner request is not a strict fileUpload: {req}"
    if not isinstance(req["uri"], str) or not _is_num(req["timeoutMsec"]):
        return "inner request has wrong types"
    return None


@dataclass
class V1Daemon:
    url: str  # proxy URL (http://…); the daemon connects to ws://… at the same path
    name: str
    secret: str
    zone: str = "default"
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering
    silent: bool = False  # never answer requests
    send_ping: bool = False  # send {"type":"ping"} like the reference (every ping_every s)
    ping_every: float = 0.2
    received: list[dict[str, Any]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    answered: int = 0
    answering: set[asyncio.Task[None]] = field(default_factory=set)
    ws: aiohttp.ClientWebSocketResponse | None = None
    session: aiohttp.ClientSession | None = None
    task: asyncio.Task[None] | None = None
    close_code: int | None = None
    close_reason: str = ""

    async def connect(self, *, autoping: bool = True) -> bool:
        """Open the socket and initialize; True if acknowledged, False if refused."""
        self.session = aiohttp.ClientSession()
        ws_url = "ws" + self.url[4:] if self.url.startswith("http") else self.url
        self.ws = await self.session.ws_connect(ws_url, autoping=autoping, autoclose=True)
        await self.ws.send_str(json.dumps({"type": "initialize", "resourceName": self.name,
                                           "zone": self.zone, "proxySecret": self.secret}))
        msg = await self.ws.receive(timeout=5)
        if msg.type != aiohttp.WSMsgType.TEXT:
            self.close_code = self.ws.close_code
            self.close_reason = str(msg.extra or "")
            await self.close()
            return False
        ack = json.loads(msg.data)
        if ack != {"type": "acknowledge"}:
            self.violations.append(f"bad acknowledge: {ack}")
            await self.close()
            return False
        if not autoping:
            return True  # a "silent" daemon: nobody reads, nobody answers pings
        self.task = asyncio.create_task(self._run())
        return True

    async def _run(self) -> None:
        assert self.ws is not None
        pinger = asyncio.create_task(self._ping()) if self.send_ping else None
        try:
            async for msg in self.ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                self.received.append(data)
                if data.get("type") != "requestFromClient":
                    self.violations.append(f"unexpected message: {data}")
                    continue
                problem = check_request_from_client(data)
                if problem:
                    self.violations.append(problem)
                    continue
                if not self.silent:
                    task = asyncio.create_task(self._answer(data))
                    self.answering.add(task)
                    task.add_done_callback(self.answering.discard)
        finally:
            if pinger:
                pinger.cancel()
            self.close_code = self.ws.close_code

    async def _ping(self) -> None:
        assert self.ws is not None
        while not self.ws.closed:
            await asyncio.sleep(self.ping_every)
            await self.ws.send_str('{"type":"ping"}')

    async def _answer(self, data: dict[str, Any]) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        sha1 = data["request"]["uri"].removeprefix("sha1://")
        status = self.statuses.get(sha1, {"status": "not-found"})
        assert self.ws is not None
        if self.ws.closed:
            return
        await self.ws.send_str(json.dumps({
            "type": "responseToClient", "requestId": data["requestId"],
            "response": {"type": "fileUpload", "status": status}}))
        self.answered += 1

    async def send_raw(self, text: str) -> None:
        assert self.ws is not None
        await self.ws.send_str(text)

    async def wait_closed(self, timeout: float = 5) -> None:
        if self.task is not None:
            await asyncio.wait_for(asyncio.shield(self.task), timeout)

    async def close(self) -> None:
        if self.ws is not None and not self.ws.closed:
            await self.ws.close()
        if self.task is not None:
            self.task.cancel()
        if self.session is not None:
            await self.session.close()
