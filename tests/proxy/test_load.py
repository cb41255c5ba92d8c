"""Load: 1,000 concurrent client requests across 100 connected daemons, all correct."""

from __future__ import annotations

import asyncio

import aiohttp

from .conftest import MakeProxy, client_body


async def test_thousand_concurrent_requests_across_hundred_resources(
        make_proxy: MakeProxy) -> None:
    proxy = await make_proxy(max_connections_per_ip=0)
    sha = [f"{i:040x}" for i in range(100)]
    daemons = await asyncio.gather(*(
        proxy.daemon(f"res{i}", statuses={sha[i]: {"status": "completed", "size": i}},
                     delay=0.05) for i in range(100)))
    connector = aiohttp.TCPConnector(limit=1000)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def one(k: int) -> tuple[int, int]:
            i = k % 100
            status, body, _ = await proxy.post(session, f"res{i}", client_body(f"res{i}", sha[i]))
            assert status == 200, body
            assert body["response"]["status"] == {"status": "completed", "size": i}
            return i, status

        results = await asyncio.wait_for(asyncio.gather(*(one(k) for k in range(1000))), 60)
    assert len(results) == 1000
    assert sum(d.answered for d in daemons) == 1000
    assert all(d.answered == 10 and d.violations == [] for d in daemons)
    assert proxy.counters()["waitingRequests"] == 0
    assert proxy.counters()["openClientRequests"] == 0
