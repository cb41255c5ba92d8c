"""A proxy restarted behind a relay (a TCP forwarder or load balancer whose port stays open
and drops each connection while the proxy is away) gets its daemon back within about a
second, as a proxy restarted on a refused port does (test_connection.py)."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp

from kachery_resource.config import ResourceConfig
from kachery_resource.daemon.connection import ProxyConnection
from kachery_resource.daemon.jobs import JobManager
from kachery_resource.daemon.reconnect import is_refused

from ..servers import free_port
from .test_connection import NoUploads, StandInProxy, resolve


class TcpRelay:
    """Forwards each connection to ``target``; one the target refuses is closed at once."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.dropped = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            self.dropped += 1
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


async def test_restarted_proxy_behind_a_relay_is_found_before_the_backoff_runs_out() -> None:
    port = free_port()
    proxy = StandInProxy(None)

    runner = await proxy.serve(port)
    relay = TcpRelay(port)
    server = await asyncio.start_server(relay.handle, "127.0.0.1", 0)
    relay_port = server.sockets[0].getsockname()[1]
    config = ResourceConfig(resourceName="res1", proxyUrl=f"http://127.0.0.1:{relay_port}",
                            proxySecret="sec")
    async with aiohttp.ClientSession() as session:
        conn = ProxyConnection(config, JobManager(resolve, NoUploads(), 2), session)
        conn.backoff.first = 3.0  # without the probe: tries at ≈ 2.3–3 s, then ≈ 6.8–9 s
        conn.backoff.reset()
        task = asyncio.create_task(conn.run_forever())
        for _ in range(500):
            if proxy.initialized:
                break
            await asyncio.sleep(0.01)
        for ws in proxy.sockets:
            await ws.close()
        await runner.cleanup()  # the proxy goes away, the relay stays …
        await asyncio.sleep(3.5)
        assert relay.dropped >= 1  # the daemon tried and was dropped
        runner = await proxy.serve(port)  # … and the proxy comes back on the same port
        back = asyncio.get_running_loop().time()
        for _ in range(500):
            if len(proxy.initialized) == 2:
                break
            await asyncio.sleep(0.01)
        took = asyncio.get_running_loop().time() - back
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await runner.cleanup()
    server.close()
    assert len(proxy.initialized) == 2 and took < 2.5, took


def test_what_counts_as_nobody_listening() -> None:
    assert is_refused(ConnectionRefusedError())
    assert is_refused(aiohttp.ServerDisconnectedError())  # dropped before any answer
    assert is_refused(aiohttp.ClientOSError(104, "Connection reset by peer"))
    assert not is_refused(aiohttp.WSServerHandshakeError(None, (), status=403))  # type: ignore[arg-type]
    assert not is_refused(TimeoutError())  # a proxy too slow to answer: the full backoff
