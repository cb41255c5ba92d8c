"""A small HTTP relay for multipart tests, put in front of a bucket or a gateway.

It forwards every request unchanged (the Host header kept, so presigned SigV4 URLs and
the local gateway's signed URLs stay valid, and URLs the gateway builds from the Host
point back at the relay). It counts the body bytes of every PUT it forwards, can fail
every k-th PUT (503 after reading the body), stall chosen PUTs (read nothing, then drop
the connection) and throttle PUT bodies to a byte rate. It runs on its own event loop
in a thread, so it serves sync tests and async tests alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from ..servers import BackgroundApp

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-authorization", "proxy-authenticate", "host"}


def is_client_put(request: web.Request) -> bool:
    """A PUT to a presigned S3 URL or a local gateway's signed URL (not the gateway's own
    boto3 calls, which are signed in a header)."""
    return request.method == "PUT" and (
        "X-Amz-Signature" in request.query or request.path.startswith("/files/"))


@dataclass
class FaultRelay:
    upstream: str
    fail_every: int = 0  # every k-th PUT answers 503 (0: never)
    stall_puts: set[int] = field(default_factory=set)  # these PUT ordinals (1-based) stall
    stall_sec: float = 30.0
    rate: float = 0.0  # PUT body bytes per second across all PUTs (0: unlimited)
    puts: int = 0
    failed: int = 0
    stalled: int = 0
    put_bytes: int = 0  # body bytes received of every PUT (also failed ones)
    ok_put_bytes: int = 0  # body bytes of PUTs the upstream answered 2xx
    url: str = ""
    _app: BackgroundApp | None = None

    def reset(self) -> None:
        self.fail_every, self.stall_puts, self.rate = 0, set(), 0.0
        self.puts = self.failed = self.stalled = self.put_bytes = self.ok_put_bytes = 0

    async def _counted(self, content: aiohttp.StreamReader, sink: list[int],
                       length: int | None) -> AsyncIterator[bytes]:
        """The PUT body on its way upstream, counted (and throttled to ``rate``)."""
        chunks = content.iter_chunked(256 * 1024)
        while sink[0] != length:  # at the length, no wait for an end of body (see below)
            try:
                chunk = await anext(chunks, b"")
            except ConnectionError:
                # The client is gone (killed). aiohttp then refuses to hand out the bytes it
                # already holds; a store would have them, and with a throttled relay they
                # can end a body the client sent in full. Pass them on (private API).
                chunk = content._read_nowait(-1)
                if not chunk:
                    raise
            if not chunk:
                return
            self.put_bytes += len(chunk)
            sink[0] += len(chunk)
            if self.rate:
                await asyncio.sleep(len(chunk) / self.rate)
            yield chunk

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Host"] = request.host
        data: Any = None
        sink = [0]
        if is_client_put(request):
            self.puts += 1
            number = self.puts
            if number in self.stall_puts:
                self.stalled += 1
                await asyncio.sleep(self.stall_sec)
                assert request.transport is not None
                request.transport.close()
                return web.Response(status=500)
            if self.fail_every and number % self.fail_every == 0:
                self.failed += 1
                async for chunk in request.content.iter_chunked(256 * 1024):
                    self.put_bytes += len(chunk)
                return web.json_response({"error": "injected"}, status=503)
            data = self._counted(request.content, sink, request.content_length)
        elif request.body_exists:
            data = await request.read()
        # shielded: a client that vanishes (kill -9) does not cut the exchange with the
        # upstream short, so what the store acknowledged is always counted
        try:
            return await asyncio.shield(self._forward(request, headers, data, sink))
        except (aiohttp.ClientError, ConnectionError) as exc:  # e.g. the client was killed
            return web.Response(status=502, text=f"relay: {exc!r}")

    async def _forward(self, request: web.Request, headers: dict[str, str], data: Any,
                       sink: list[int]) -> web.StreamResponse:
        assert self._app is not None and self._app.session is not None
        async with self._app.session.request(request.method, self.upstream + request.path_qs,
                                         headers=headers, data=data, allow_redirects=False,
                                         auto_decompress=False) as resp:
            if data is not None and not isinstance(data, bytes) and 200 <= resp.status < 300:
                self.ok_put_bytes += sink[0]
            out = web.StreamResponse(status=resp.status, headers={
                k: v for k, v in resp.headers.items() if k.lower() not in HOP_BY_HOP})
            await out.prepare(request)
            if request.method != "HEAD":  # streamed: a 6 GiB download must not sit in memory
                async for chunk in resp.content.iter_chunked(1 << 20):
                    await out.write(chunk)
            await out.write_eof()
            return out

    def start(self) -> FaultRelay:
        self._app = BackgroundApp(self._handle)
        self.url = self._app.start()
        return self

    def stop(self) -> None:
        assert self._app is not None
        self._app.stop()
