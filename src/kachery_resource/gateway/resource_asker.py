"""Asking one resource for a file, as the gateway's on-demand path does: the v1
``fileUpload`` request kachery-cloud sends to ``KACHERY_RESOURCE_URL``, long-polled through
the resource's proxy until it answers or the flight's deadline. A resource whose proxy
does not accept a connection is skipped for a while, so that a down proxy does not cost
every miss a connect timeout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import aiohttp

from ..env_proxy import proxy_for
from .metrics import GatewayMetrics

log = logging.getLogger("kachery_resource.gateway")

MAX_POLL_SEC = 20.0  # one long-poll request: below the proxy's 25 s clamp
MAX_ANSWER_BYTES = 65536
CONNECT_TIMEOUT_SEC = 3.0  # a resource's proxy that does not accept a connection by then is down
UNREACHABLE_SKIP_SEC = 10.0  # ... and is not asked again for this long


class ResourceAsker:
    """One HTTP session for every resource a gateway instance asks."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self.metrics = metrics
        self._session: aiohttp.ClientSession | None = None
        self._unreachable: dict[str, float] = {}  # resource URL -> skip it until (monotonic)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
        return self._session

    def reachable(self, url: str, now: float) -> bool:
        """False while ``url`` is skipped after a failed connection (``now``: monotonic)."""
        return self._unreachable.get(url, 0) <= now

    async def ask(self, url: str, zone: str, sha1: str, deadline: float) -> str:
        """Long-poll one resource for ``sha1`` until ``deadline`` (loop time): uploaded,
        not-found, error, unavailable or timeout."""
        answer = await self._poll(url, zone, sha1, deadline)
        self.metrics.on_demand_requests.labels(answer).inc()
        return answer

    async def _poll(self, url: str, zone: str, sha1: str, deadline: float) -> str:
        loop = asyncio.get_running_loop()
        name = url.rstrip("/").rsplit("/", 1)[-1]
        while (left := deadline - loop.time()) > 0.05:
            wait = min(left, MAX_POLL_SEC)
            body = {"type": "requestFromClient", "resourceName": name, "zone": zone,
                    "request": {"type": "fileUpload", "uri": f"sha1://{sha1}",
                                "timeoutMsec": max(1, int(wait * 1000))},
                    "timeoutMsec": int(wait * 1000) + 5000}
            t0 = loop.time()
            try:
                status = await self._post(url, body, wait + 10)
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                # nothing answers there (a proxy down, a firewall dropping packets): skip it
                # for a while rather than make every miss wait for the connect timeout
                if len(self._unreachable) > 1000:
                    self._unreachable.clear()
                self._unreachable[url] = time.monotonic() + UNREACHABLE_SKIP_SEC
                log.info("on demand: cannot connect to resource %s (%s); skipping it for %g s",
                         url, str(exc)[:200] or type(exc).__name__, UNREACHABLE_SKIP_SEC)
                return "unavailable"
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.info("on demand: resource %s unavailable: %s", url, str(exc)[:200] or type(exc).__name__)
                return "unavailable"
            if status in ("completed", "not-found", "error"):
                return {"completed": "uploaded"}.get(status, status)
            if loop.time() - t0 < 0.05:  # answered at once without a result: do not spin
                await asyncio.sleep(0.2)
        return "timeout"

    async def _post(self, url: str, body: dict[str, object], timeout: float) -> str:
        """POST one request; the upload status it answered (ValueError on a bad answer)."""
        limits = aiohttp.ClientTimeout(total=timeout, sock_connect=CONNECT_TIMEOUT_SEC)
        # no redirects: an announced URL must not steer the gateway's requests elsewhere
        async with self._http().post(url, json=body, timeout=limits, allow_redirects=False,
                                     proxy=proxy_for(url)) as resp:
            text = await read_capped(resp, MAX_ANSWER_BYTES)
            if resp.status != 200:
                raise ValueError(f"HTTP {resp.status}: {text[:200]!r}")
        try:
            data = json.loads(text)
            status = None if data.get("error") else data["response"]["status"]["status"]
        except (KeyError, TypeError, AttributeError, UnicodeDecodeError):
            status = None
        if not isinstance(status, str):
            raise ValueError(f"unexpected answer {text[:200]!r}")
        return status


async def read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body of ``resp`` (however it was split on the wire), or ValueError past
    ``limit`` bytes."""
    body = bytearray()
    async for piece in resp.content.iter_chunked(65536):
        body += piece
        if len(body) > limit:
            raise ValueError(f"an answer larger than {limit} bytes")
    return bytes(body)
