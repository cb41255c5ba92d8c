"""The daemon's link to the proxy: negotiate, connect, answer requests, reconnect forever.

Before each connection the daemon asks ``GET {proxy}/api/info``; only a proxy that lists
protocol 2 there gets ``"protocolVersion": 2`` in ``initialize`` (404 or anything else
means v1, and a v1 proxy gets exactly the v1 messages). WebSocket ping frames
(aiohttp's heartbeat) detect a dead link even when TCP never reports it; they work with
v1 peers too. After a close the daemon waits 1 s, 2 s, 4 s … up to 30 s (with jitter)
and tries again; a successful acknowledge resets the delay. While nothing listens at
the proxy's address (connection refused) the port is checked every 0.5 s during that
wait, so a restarted proxy has its daemons back within about a second.

A refusal that retrying cannot cure ends the daemon (:class:`ProxyRefusedError`, whose
message names the fix): a wrong secret (close code 4001), another zone (4003), the name
taken over by another daemon with its token (4009), and the name held by another
connection (4002) once that has lasted :data:`NAME_TAKEN_GRACE_SEC` (the proxy may still
hold this daemon's own previous connection until its heartbeat drops it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

from ..config import ResourceConfig
from ..env_proxy import proxy_for
from ..errors import InvalidUriError, ProtocolError, ProxyRefusedError
from ..messages import Initialize, UploadState, dumps
from ..uri import parse_sha1_uri
from .jobs import JobManager
from .logs import log_request
from .ranges import RangeJobs
from .reconnect import Backoff, describe_failure, is_refused, wait_for_listener
from .refusals import (
    CLOSE_NAME_TAKEN,
    CLOSE_REPLACED,
    CLOSE_UNAUTHORIZED,
    CLOSE_ZONE,
    REFUSAL_HINTS,
)
from .wire import FILE_RANGES, FILE_UPLOAD, FileRequest, read_request, response_json

log = logging.getLogger("kachery_resource.daemon")

HEARTBEAT_SEC = 20.0
ACK_TIMEOUT_SEC = 15.0
NAME_TAKEN_GRACE_SEC = 75.0  # > the proxy's heartbeat timeout (45 s by default)
REFUSED_RETRY_SEC = 60.0  # a refusal after this daemon was once accepted: retried this slowly


def websocket_url(proxy_url: str) -> str:
    """``http://`` → ``ws://``, ``https://`` → ``wss://``; same host and path, and ``/`` for
    no path (through an HTTP proxy the request names the whole URL, and an empty path
    there is not the proxy's root to every server)."""
    parts = urllib.parse.urlsplit(proxy_url)
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
    return urllib.parse.urlunsplit((scheme, parts.netloc, parts.path or "/", parts.query, ""))


class ProxyConnection:
    """Serves one resource through the proxy until cancelled."""

    def __init__(
        self,
        config: ResourceConfig,
        jobs: JobManager,
        session: aiohttp.ClientSession,
        *,
        heartbeat_sec: float = HEARTBEAT_SEC,
        name_taken_grace_sec: float = NAME_TAKEN_GRACE_SEC,
        on_state: Callable[[bool, str], None] | None = None,
        ranges: RangeJobs | None = None,
    ) -> None:
        self.config = config
        self.jobs = jobs
        self.ranges = ranges
        self._session = session
        self._heartbeat = heartbeat_sec
        self._announced = False
        self.protocol = 1
        self._tasks: set[asyncio.Task[None]] = set()
        self.backoff = Backoff()
        self.accepted_once = False  # the proxy has acknowledged this daemon at least once
        self.replaced = False  # another daemon holding this resource's token took the name
        self._name_taken_grace = name_taken_grace_sec
        self._name_taken_since: float | None = None
        self._on_state = on_state or (lambda connected, why: None)
        self.connected = asyncio.Event()  # set while the proxy has acknowledged this daemon

    @property
    def request_types(self) -> frozenset[str]:
        """The inner request types this daemon answers (declared to a protocol-2 proxy)."""
        return frozenset({FILE_UPLOAD} | ({FILE_RANGES} if self.ranges is not None else set()))

    async def run_forever(self) -> None:
        """Connect, serve, and reconnect after every failure that may heal; returns only when
        cancelled, raises ProxyRefusedError for a refusal that retrying cannot cure."""
        while True:
            refused = False
            try:
                why = await self._serve_once()
            except ProxyRefusedError as exc:
                self._on_state(False, str(exc))
                if not self.accepted_once or self.replaced:  # a setup mistake, or another
                    raise                                    # daemon with this token: stop
                # it worked before: a proxy restarted without its secret or tokens file
                # must not end every daemon for good
                log.error("proxy %s: %s; this daemon was accepted before, so it tries again "
                          "every %g s", self.config.proxyUrl, exc, REFUSED_RETRY_SEC)
                await asyncio.sleep(REFUSED_RETRY_SEC)
                continue
            except (aiohttp.ClientError, OSError, TimeoutError, ProtocolError) as exc:
                refused = is_refused(exc)
                why = describe_failure(exc)
            self._on_state(False, why)
            delay = self.backoff.next_delay()
            log.warning("proxy %s: %s; retrying in %.1f s", self.config.proxyUrl, why, delay)
            if refused:
                await wait_for_listener(self._session, self.config.proxyUrl, delay)
            else:
                await asyncio.sleep(delay)

    async def negotiate(self) -> int:
        """The protocol to speak: 2 if ``GET /api/info`` lists it, else 1."""
        try:
            # Connection: close, so that the WebSocket opens a connection of its own,
            # which the proxy serves on its lean path rather than as a reused HTTP one
            url = f"{self.config.proxyUrl}/api/info"
            async with self._session.get(
                url, timeout=aiohttp.ClientTimeout(total=10), headers={"Connection": "close"},
                proxy=proxy_for(url),
            ) as resp:
                if resp.status != 200:
                    return 1
                info = await resp.json(content_type=None)
        except (aiohttp.ClientResponseError, ValueError):
            return 1
        protocols = info.get("protocols") if isinstance(info, dict) else None
        return 2 if isinstance(protocols, list) and 2 in protocols else 1

    async def _serve_once(self) -> str:
        """Connect and serve until the connection ends; what ended it."""
        self.protocol = await self.negotiate()
        url = websocket_url(self.config.proxyUrl)
        log.debug("connecting to %s (protocol %d)", url, self.protocol)
        async with self._session.ws_connect(
            url, heartbeat=self._heartbeat, max_msg_size=4 * 1024 * 1024, proxy=proxy_for(url)
        ) as ws:
            init = Initialize(
                type="initialize",
                resourceName=self.config.resourceName,
                zone=self.config.zone,
                proxySecret=self.config.proxySecret or "",
                protocolVersion=2 if self.protocol >= 2 else None,
                requestTypes=sorted(self.request_types) if self.protocol >= 2 else None,
            )
            await ws.send_str(dumps(init))
            await self._wait_for_acknowledge(ws)
            self.backoff.reset()
            self._name_taken_since = None
            self.accepted_once = True
            self._announce()
            self._on_state(True, "")
            self.connected.set()
            try:
                await self._receive_loop(ws)
            finally:
                self.connected.clear()
                for task in list(self._tasks):
                    task.cancel()
            if ws.close_code == CLOSE_REPLACED:
                self.replaced = True
                raise ProxyRefusedError(
                    f"the proxy {self.config.proxyUrl} gave the name {self.config.resourceName!r} "
                    "to another daemon holding this resource's token (close code 4009); "
                    + REFUSAL_HINTS[CLOSE_REPLACED])
            return f"the proxy closed the connection (code {ws.close_code})"

    async def _wait_for_acknowledge(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        msg = await ws.receive(timeout=ACK_TIMEOUT_SEC)
        if msg.type != aiohttp.WSMsgType.TEXT:
            code = ws.close_code or 0
            reason = f" (code {code}{': ' + str(msg.extra) if msg.extra else ''})"
            text = (f"the proxy {self.config.proxyUrl} closed the connection instead of "
                    f"acknowledging{reason}; " + REFUSAL_HINTS.get(code, REFUSAL_HINTS[0]))
            if code in (CLOSE_UNAUTHORIZED, CLOSE_ZONE) or self._name_taken_too_long(code):
                raise ProxyRefusedError(text)
            raise ProtocolError(text)
        try:
            data = orjson.loads(msg.data)
        except ValueError:
            data = None
        if not (isinstance(data, dict) and data.get("type") == "acknowledge"):
            await ws.close()
            raise ProtocolError(f"the proxy sent {str(msg.data)[:200]!r} instead of acknowledge")
        log.info("connected to proxy %s as %r (protocol %d)", self.config.proxyUrl,
                 self.config.resourceName, self.protocol)

    def _name_taken_too_long(self, code: int) -> bool:
        """A 4002 refusal: true once it has lasted the grace period (before that, the name
        may be held by this daemon's own previous connection, not yet dropped)."""
        if code != CLOSE_NAME_TAKEN:
            return False
        now = time.monotonic()
        if self._name_taken_since is None:
            self._name_taken_since = now
        return now - self._name_taken_since >= self._name_taken_grace

    def _announce(self) -> None:
        if not self._announced:
            self._announced = True
            # one write, line and newline together: a log line on a shared stderr cannot
            # land inside it (print writes the newline separately)
            sys.stdout.write(f"KACHERY_RESOURCE_URL={self.config.resource_url}\n")
            sys.stdout.flush()

    async def _receive_loop(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                if msg.type == aiohttp.WSMsgType.ERROR:
                    log.warning("websocket error: %s", ws.exception())
                continue
            try:
                data = orjson.loads(msg.data)
            except ValueError:  # orjson.JSONDecodeError is a ValueError
                log.warning("ignored a message that is not JSON: %.200r", msg.data)
                continue
            kind = data.get("type") if isinstance(data, dict) else None
            if kind == "requestFromClient":
                await self._on_request(ws, data)
            elif kind == "ping" and self.protocol >= 2:
                await ws.send_str('{"type":"pong"}')
            elif kind not in ("pong", "ping", "acknowledge"):
                log.warning("ignored an unexpected message: %.200s", msg.data)

    async def _on_request(self, ws: aiohttp.ClientWebSocketResponse, data: dict[str, Any]) -> None:
        """Answer a request at once when its answer is known (not found, finished, no wait);
        otherwise wait for its upload job in a task of its own."""
        request_id = data.get("requestId")
        if not isinstance(request_id, str) or not request_id:
            log.warning("ignored a request without requestId")
            return
        t0 = time.monotonic()
        uri = "?"
        try:
            req = read_request(data, self.config.resourceName, self.request_types)
            uri = req.uri
            sha1 = parse_sha1_uri(uri)
        except ProtocolError as exc:
            await self._reply(ws, request_id, uri, None, str(exc), t0)
            return
        except InvalidUriError as exc:
            failed = {"status": UploadState.ERROR.value, "error": str(exc)}
            if isinstance(req, FileRequest):
                await self._reply(ws, request_id, uri, failed, None, t0)
            else:
                await self._reply_ranges(ws, request_id, uri, {"type": FILE_RANGES, **failed}, t0)
            return
        if not isinstance(req, FileRequest):
            ranges, ranges_req = self.ranges, req
            assert ranges is not None  # read_request accepts fileRanges only then

            async def ranged() -> None:
                got = await ranges.answer(sha1, ranges_req.ranges, ranges_req.wait_sec)
                await self._reply_ranges(ws, request_id, uri, got, t0)

            self._spawn(ranged())
            return
        now = self.jobs.poll(sha1, req.wait_sec)
        if isinstance(now, dict):
            await self._reply(ws, request_id, uri, now, None, t0)
            return
        job, wait = now, req.wait_sec

        async def later() -> None:
            await self._reply(ws, request_id, uri, await self.jobs.wait(job, wait), None, t0)

        self._spawn(later())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _reply_ranges(ws: aiohttp.ClientWebSocketResponse, request_id: str, uri: str,
                            response: dict[str, Any], t0: float) -> None:
        with contextlib.suppress(ConnectionError, aiohttp.ClientError, RuntimeError):
            await ws.send_str(response_json(request_id, response=response))
        chunks = response.get("chunks") or []
        log_request(request_id, uri, response.get("size", "-"),
                    f"ranges {response.get('status')} ({len(chunks)} chunks)",
                    time.monotonic() - t0)

    @staticmethod
    async def _reply(ws: aiohttp.ClientWebSocketResponse, request_id: str, uri: str,
                     status: dict[str, Any] | None, error: str | None, t0: float) -> None:
        with contextlib.suppress(ConnectionError, aiohttp.ClientError, RuntimeError):
            await ws.send_str(response_json(request_id, status, error))
        state = f"error: {error}" if error else status.get("status", "-") if status else "-"
        log_request(request_id, uri, status.get("size", "-") if status else "-", state,
                    time.monotonic() - t0)
