"""On demand in-process: the gateway's findFile and a resource that answers like a daemon
behind a proxy (it uploads through the gateway's own API before answering completed)."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from kachery_resource.gateway.app import build_app
from kachery_resource.gateway.flight_slots import QUEUE_FACTOR
from kachery_resource.gateway.settings import load_settings
from kachery_resource.identity import ClientKeys

from .helpers import Client, call, file_payloads, register, upload

AiohttpClient = Callable[..., Awaitable[Client]]
AiohttpServer = Callable[..., Awaitable[TestServer]]


@dataclass
class FakeResource:
    """Answers ``POST /r/{name}`` with the v1 envelope; holds ``files`` (uploaded on request)."""

    files: dict[str, bytes] = field(default_factory=dict)
    delay: float = 0.0
    asked: list[str] = field(default_factory=list)
    gateway: Client | None = None
    keys: ClientKeys = field(default_factory=ClientKeys.generate)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        assert body["type"] == "requestFromClient" and body["resourceName"] == "lab"
        assert set(body) == {"type", "resourceName", "zone", "request", "timeoutMsec"}
        sha1 = body["request"]["uri"].removeprefix("sha1://")
        self.asked.append(sha1)
        await asyncio.sleep(self.delay)
        status: dict[str, Any] = {"status": "not-found"}
        if sha1 in self.files:
            assert self.gateway is not None
            done, answer = await upload(self.gateway, self.keys, self.files[sha1])
            assert done == 200, answer
            status = {"status": "completed", "size": len(self.files[sha1])}
        return web.json_response({"type": "responseToClient",
                                  "response": {"type": "fileUpload", "status": status}})


async def start(tmp_path: Path, aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer,
                resource: FakeResource, **zone: Any) -> Client:
    app = web.Application()
    app.router.add_post("/r/{name}", resource.handle)
    server = await aiohttp_server(app)
    zone.setdefault("resources", [str(server.make_url("/r/lab"))])
    settings = load_settings(storage=str(tmp_path / "storage"),
                             overrides={"zones": {"default": zone}, "negativeCacheSec": 30})
    client = await aiohttp_client(build_app(settings))
    await register(client, resource.keys)
    resource.gateway = client
    return client


def find(sha1: str) -> dict[str, Any]:
    return {"type": "findFile", "hashAlg": "sha1", "hash": sha1}


async def test_a_miss_is_fetched_once_for_many_callers(tmp_path: Path, aiohttp_client: AiohttpClient,
                                                       aiohttp_server: AiohttpServer) -> None:
    data = secrets.token_bytes(2000)
    sha1 = hashlib.sha1(data).hexdigest()
    resource = FakeResource({sha1: data}, delay=0.3)
    client = await start(tmp_path, aiohttp_client, aiohttp_server, resource)
    answers = await asyncio.gather(*(call(client, ClientKeys.generate(), find(sha1)) for _ in range(50)))
    assert all(status == 200 and body["found"] and body["size"] == len(data) for status, body in answers)
    assert resource.asked == [sha1]  # one request however many waited
    metrics = await (await client.get("/metrics")).text()
    assert 'kachery_gateway_on_demand_total{outcome="hit"} 50.0' in metrics
    assert 'kachery_gateway_on_demand_wait_seconds_count{outcome="hit"} 50.0' in metrics
    got = await (await client.session.get(answers[0][1]["url"])).read()
    assert got == data


async def test_not_found_everywhere_is_fast_and_remembered(
        tmp_path: Path, aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer) -> None:
    resource = FakeResource()
    client = await start(tmp_path, aiohttp_client, aiohttp_server, resource)
    sha1 = hashlib.sha1(b"nobody has it").hexdigest()
    t0 = time.monotonic()
    status, body = await call(client, ClientKeys.generate(), find(sha1))
    assert status == 200 and body == {"type": "findFile", "found": False}
    assert time.monotonic() - t0 < 1.0
    await call(client, ClientKeys.generate(), find(sha1))
    assert resource.asked == [sha1]  # the second miss came from the negative cache
    metrics = await (await client.get("/metrics")).text()
    for outcome in ("miss", "negative-cache"):
        assert f'kachery_gateway_on_demand_total{{outcome="{outcome}"}} 1.0' in metrics
    assert 'kachery_gateway_on_demand_resource_requests_total{answer="not-found"} 1.0' in metrics


async def test_the_wait_is_bounded(tmp_path: Path, aiohttp_client: AiohttpClient,
                                   aiohttp_server: AiohttpServer) -> None:
    data = secrets.token_bytes(100)
    sha1 = hashlib.sha1(data).hexdigest()
    resource = FakeResource({sha1: data}, delay=30)
    client = await start(tmp_path, aiohttp_client, aiohttp_server, resource, onDemandWaitSec=0.5)
    t0 = time.monotonic()
    status, body = await call(client, ClientKeys.generate(), find(sha1))
    assert status == 200 and body["found"] is False
    assert 0.4 < time.monotonic() - t0 < 3


async def test_misses_beyond_the_cap_wait_their_turn(tmp_path: Path, aiohttp_client: AiohttpClient,
                                                     aiohttp_server: AiohttpServer) -> None:
    """A miss that finds every flight busy waits for one, rather than being told "not
    found" for a file a resource has."""
    data = secrets.token_bytes(200)
    sha1 = hashlib.sha1(data).hexdigest()
    resource = FakeResource({sha1: data}, delay=1)
    client = await start(tmp_path, aiohttp_client, aiohttp_server, resource, onDemandMaxInFlight=1)
    first = asyncio.ensure_future(call(client, ClientKeys.generate(), find("1" * 40)))
    await asyncio.sleep(0.3)
    t0 = time.monotonic()
    status, body = await call(client, ClientKeys.generate(), find(sha1))
    assert status == 200 and body["found"] is True
    assert time.monotonic() - t0 > 1.4  # the rest of the first flight, then its own
    assert (await first)[1]["found"] is False
    assert resource.asked == ["1" * 40, sha1]
    metrics = await (await client.get("/metrics")).text()
    assert 'kachery_gateway_on_demand_total{outcome="hit"} 1.0' in metrics
    assert 'outcome="overloaded"} 0.0' in metrics
    assert "kachery_gateway_on_demand_queued 0.0" in metrics


async def test_a_full_queue_turns_misses_away_at_once(tmp_path: Path, aiohttp_client: AiohttpClient,
                                                      aiohttp_server: AiohttpServer) -> None:
    resource = FakeResource(delay=0.5)
    client = await start(tmp_path, aiohttp_client, aiohttp_server, resource, onDemandMaxInFlight=1)
    hashes = [str(i) * 40 for i in range(1, 1 + 1 + QUEUE_FACTOR)]  # one flies, the rest wait
    waiting = []
    for sha1 in hashes:
        waiting.append(asyncio.ensure_future(call(client, ClientKeys.generate(), find(sha1))))
        await asyncio.sleep(0.02)
    t0 = time.monotonic()
    status, body = await call(client, ClientKeys.generate(), find("f" * 40))
    assert status == 200 and body["found"] is False and time.monotonic() - t0 < 0.4
    assert all(b["found"] is False for _, b in await asyncio.gather(*waiting))
    assert resource.asked == hashes  # every waiter in turn, first come first served
    metrics = await (await client.get("/metrics")).text()
    assert 'kachery_gateway_on_demand_total{outcome="overloaded"} 1.0' in metrics
    assert f'kachery_gateway_on_demand_total{{outcome="miss"}} {float(len(hashes))}' in metrics


async def test_no_free_flight_within_the_wait_is_not_found(tmp_path: Path, aiohttp_client: AiohttpClient,
                                                          aiohttp_server: AiohttpServer) -> None:
    resource = FakeResource(delay=30)  # never answers in time
    client = await start(tmp_path, aiohttp_client, aiohttp_server, resource, onDemandMaxInFlight=1,
                         onDemandWaitSec=0.6)
    first = asyncio.ensure_future(call(client, ClientKeys.generate(), find("1" * 40)))
    await asyncio.sleep(0.05)
    second = asyncio.ensure_future(call(client, ClientKeys.generate(), find("2" * 40)))
    await asyncio.sleep(0.05)
    t0 = time.monotonic()
    status, body = await call(client, ClientKeys.generate(), find("3" * 40))
    # the second took the slot the first freed at 0.6 s; the third's own wait ran out
    assert status == 200 and body["found"] is False and 0.4 < time.monotonic() - t0 < 1.5
    assert [b["found"] for _, b in await asyncio.gather(first, second)] == [False, False]
    assert resource.asked == ["1" * 40, "2" * 40]
    metrics = await (await client.get("/metrics")).text()
    assert 'kachery_gateway_on_demand_total{outcome="overloaded"} 1.0' in metrics
    assert 'kachery_gateway_on_demand_total{outcome="timeout"} 2.0' in metrics


@pytest.mark.parametrize("zone", [{"onDemand": False}, {}])
async def test_off_or_upload_calls_never_ask(tmp_path: Path, aiohttp_client: AiohttpClient,
                                             aiohttp_server: AiohttpServer, zone: dict[str, Any]) -> None:
    """``onDemand: false`` turns it off; initiateFileUpload never asks (the uploader has it)."""
    data = secrets.token_bytes(100)
    sha1, initiate = file_payloads(data)
    resource = FakeResource({sha1: data})
    client = await start(tmp_path, aiohttp_client, aiohttp_server, resource, **zone)
    uploader = ClientKeys.generate()
    await register(client, uploader)
    status, body = await call(client, uploader, initiate)
    assert status == 200 and body["alreadyExists"] is False
    if zone:
        status, body = await call(client, ClientKeys.generate(), find(sha1))
        assert status == 200 and body["found"] is False
    assert resource.asked == []


async def test_an_announcement_reaches_every_instance(tmp_path: Path, aiohttp_client: AiohttpClient,
                                                      aiohttp_server: AiohttpServer) -> None:
    """Two gateway instances over one storage: a daemon announces to one, the other asks it."""
    data = secrets.token_bytes(300)
    sha1 = hashlib.sha1(data).hexdigest()
    resource = FakeResource({sha1: data})
    app = web.Application()
    app.router.add_post("/r/{name}", resource.handle)
    url = str((await aiohttp_server(app)).make_url("/r/lab"))
    settings = load_settings(storage=str(tmp_path / "storage"))
    first, second = [await aiohttp_client(build_app(settings)) for _ in range(2)]
    await register(first, resource.keys)
    resource.gateway = first
    status, body = await call(first, resource.keys, {"type": "announceResource", "resourceUrl": url})
    assert status == 200, body
    status, body = await call(second, ClientKeys.generate(), find(sha1))
    assert status == 200 and body["found"] is True
    assert resource.asked == [sha1]
    # the daemon's own findFile (its client id announced the resource) never asks anyone
    other = hashlib.sha1(b"the daemon checks the bucket").hexdigest()
    status, body = await call(second, resource.keys, find(other))
    assert status == 200 and body["found"] is False and resource.asked == [sha1]


async def test_an_unreachable_resource_is_skipped_for_a_while(
        tmp_path: Path, aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer) -> None:
    """A resource whose proxy does not accept connections costs one refused connect, then
    is left out for a while; the other resource still serves."""
    from ..servers import free_port

    data = secrets.token_bytes(200)
    sha1 = hashlib.sha1(data).hexdigest()
    resource = FakeResource({sha1: data})
    app = web.Application()
    app.router.add_post("/r/{name}", resource.handle)
    good = str((await aiohttp_server(app)).make_url("/r/lab"))
    dead = f"http://127.0.0.1:{free_port()}/r/lab"
    client = await start(tmp_path, aiohttp_client, aiohttp_server, resource, resources=[dead, good])
    for n in range(3):
        t0 = time.monotonic()
        status, body = await call(client, ClientKeys.generate(), find(f"{n}" * 40))
        assert status == 200 and body["found"] is False and time.monotonic() - t0 < 1
    status, body = await call(client, ClientKeys.generate(), find(sha1))
    assert status == 200 and body["found"] is True
    metrics = await (await client.get("/metrics")).text()
    assert 'kachery_gateway_on_demand_resource_requests_total{answer="unavailable"} 1.0' in metrics
    assert len(resource.asked) == 4


async def test_find_with_on_demand_false_never_asks(tmp_path: Path, aiohttp_client: AiohttpClient,
                                                    aiohttp_server: AiohttpServer) -> None:
    """A daemon checking the bucket before its own upload says ``onDemand: false``: else a
    zones-file resource (no client id to match) would be asked to wait on itself."""
    data = secrets.token_bytes(100)
    sha1 = hashlib.sha1(data).hexdigest()
    resource = FakeResource({sha1: data})
    client = await start(tmp_path, aiohttp_client, aiohttp_server, resource)
    status, body = await call(client, ClientKeys.generate(), {**find(sha1), "onDemand": False})
    assert status == 200 and body["found"] is False and resource.asked == []
    status, body = await call(client, ClientKeys.generate(), find(sha1))
    assert status == 200 and body["found"] is True and resource.asked == [sha1]


async def test_announcements_belong_to_their_client(tmp_path: Path, aiohttp_client: AiohttpClient
                                                    ) -> None:
    settings = load_settings(storage=str(tmp_path / "storage"))
    client = await aiohttp_client(build_app(settings))
    owner, other = ClientKeys.generate(), ClientKeys.generate()
    for keys in (owner, other):
        await register(client, keys)
    url = "http://proxy.example/r/lab"
    announce = {"type": "announceResource", "resourceUrl": url}
    status, _ = await call(client, owner, announce)
    assert status == 200
    status, body = await call(client, other, announce)
    assert status == 409 and body["error"] == "resource_announced_by_another_client", body
    status, _ = await call(client, owner, announce)  # the owner renews
    assert status == 200
