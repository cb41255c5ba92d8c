"""Property-based fuzzing of every message a daemon can get from its proxy.

The real ``ProxyConnection`` is connected to an in-process stand-in proxy, which sends
generated messages of every type (``requestFromClient`` with every field drawn from
valid and wrong values, ``acknowledge``, ``ping``, ``pong``, ``initialize``, unknown
types, JSON that is not an object, text that is not JSON, binary frames). Properties:
a ``requestFromClient`` with a non-empty string ``requestId`` gets exactly one
``responseToClient`` with that id (a status, or an error saying why), a ``ping``\ngets a ``pong`` (protocol 2), anything else gets no answer, the daemon never reconnects (garbage does not kill its link), and a
valid request is still answered afterwards. ``KACHERY_FUZZ_SCALE`` raises the count.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from kachery_resource.config import ResourceConfig
from kachery_resource.daemon.connection import ProxyConnection
from kachery_resource.daemon.jobs import JobManager

from ..daemon.test_connection import HAVE, NoUploads, StandInProxy, resolve
from .harness import budget

pytestmark = pytest.mark.timeout(300)

ID = "<id>"  # replaced by a fresh unique request id
JUNK = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(),
                 st.text(max_size=30), st.lists(st.integers(), max_size=3),
                 st.dictionaries(st.text(max_size=5), st.integers(), max_size=3))


def field(*valid: Any) -> st.SearchStrategy[Any]:
    return st.one_of(st.sampled_from(valid), JUNK) if valid else JUNK


def uris() -> st.SearchStrategy[Any]:
    return field(f"sha1://{HAVE}", "sha1://" + "b" * 40, f"sha1://{HAVE}/x.dat?label=y",
                 "sha1://XYZ", "sha1://", "ipfs://x", "sha1://" + "a" * 5000)


REQUEST = st.fixed_dictionaries(
    {"type": st.just("requestFromClient"),
     "requestId": st.integers(0, 3).flatmap(lambda k: st.just(ID) if k else JUNK)},
    optional={"resourceName": field("res1", "other", ""), "zone": field("z1", "z2"),
              "timeoutMsec": field(10000, 1, 0, -5, 1e300),
              "request": st.one_of(JUNK, st.fixed_dictionaries({}, optional={
                  "type": field("fileUpload", "probe", "findFile"), "uri": uris(),
                  "timeoutMsec": field(0, 50, 3000, -1, float("nan"))}))})
OTHER = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["ping", "pong", "acknowledge", "initialize",
                                                    "responseToClient", "weird", ""])},
                          optional={"requestId": st.just(ID), "x": JUNK}),
    st.recursive(JUNK, lambda c: st.lists(c, max_size=3), max_leaves=5))
NO_ID = REQUEST.map(lambda m: {k: v for k, v in m.items() if k != "requestId"})
KINDS = [REQUEST] * 6 + [NO_ID, OTHER, st.text(max_size=40).map(lambda t: ("text", t)),
                        st.binary(max_size=40).map(lambda b: ("binary", b))]
MESSAGE = st.integers(0, len(KINDS) - 1).flatmap(lambda k: KINDS[k])


def expects_answer(message: Any) -> bool:
    """A request with an id, or (protocol 2) a ping."""
    return isinstance(message, dict) and (message.get("type") == "ping" or (
        message.get("type") == "requestFromClient" and isinstance(message.get("requestId"), str)
        and message["requestId"] != ""))


@pytest.fixture
async def linked(capsys: pytest.CaptureFixture[str]
                 ) -> AsyncIterator[tuple[StandInProxy, ProxyConnection]]:
    proxy = StandInProxy([1, 2])
    app = web.Application()
    app.router.add_get("/api/info", proxy.info)
    app.router.add_get("/", proxy.ws)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    config = ResourceConfig(resourceName="res1", proxyUrl=str(server.make_url("")).rstrip("/"),
                            proxySecret="sec", kacheryZone="z1")
    async with aiohttp.ClientSession() as session:
        conn = ProxyConnection(config, JobManager(resolve, NoUploads(), 2), session)
        task = asyncio.create_task(conn.run_forever())
        for _ in range(500):
            if proxy.initialized:
                break
            await asyncio.sleep(0.01)
        yield proxy, conn
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await server.close()


async def test_every_message_type(linked: tuple[StandInProxy, ProxyConnection]) -> None:
    proxy, _ = linked
    loop = asyncio.get_running_loop()
    counter = iter(range(10**9))
    sent: dict[str, Any] = {}
    expected = [0]
    answers: list[dict[str, Any]] = []
    cases = [0]

    async def exchange(message: Any) -> dict[str, Any] | None:
        ws = proxy.sockets[-1]
        if isinstance(message, tuple):
            await (ws.send_str(message[1]) if message[0] == "text" else ws.send_bytes(message[1]))
            return None
        if isinstance(message, dict) and message.get("requestId") == ID:
            message = {**message, "requestId": f"fz-{next(counter)}"}
        text = json.dumps(message, allow_nan=True)
        await ws.send_str(text)
        try:
            orjson.loads(text)  # NaN, a lone surrogate: not JSON to the daemon, no answer
        except ValueError:
            return None
        if not expects_answer(message):
            return None
        if message["type"] == "requestFromClient":
            sent[message["requestId"]] = message
            expected[0] += 1
        answer = await asyncio.wait_for(proxy.responses.get(), 10)
        if message.get("type") == "ping":
            assert answer == {"type": "pong"}, answer
            return None
        answers.append(answer)
        return answer

    @settings(max_examples=budget(1000), deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate])
    @given(message=MESSAGE)
    def one(message: Any) -> None:
        cases[0] += 1
        answer = asyncio.run_coroutine_threadsafe(exchange(message), loop).result(15)
        if answer is not None:
            assert answer["type"] == "responseToClient", answer
            assert answer["requestId"] in sent, answer
            request = sent[answer["requestId"]]
            if "error" in answer:
                assert isinstance(answer["error"], str) and answer["error"], answer
            else:
                assert request["resourceName"] == "res1", (request, answer)
                assert answer["response"]["status"]["status"] in (
                    "completed", "not-found", "error", "queued", "running"), answer

    await asyncio.to_thread(one)
    # a valid request after all that: still answered, on the same socket, no reply left over
    ws = proxy.sockets[-1]
    await ws.send_json({"type": "requestFromClient", "resourceName": "res1", "zone": "z1",
                        "request": {"type": "fileUpload", "uri": f"sha1://{HAVE}",
                                    "timeoutMsec": 3000},
                        "timeoutMsec": 10000, "requestId": "last"})
    last = await asyncio.wait_for(proxy.responses.get(), 10)
    assert last["requestId"] == "last" and last["response"]["status"]["status"] == "completed"
    assert proxy.responses.empty(), "an answer to a message that needs none"
    assert len(proxy.sockets) == 1 and len(proxy.initialized) == 1, "the daemon reconnected"
    assert cases[0] >= budget(1000) * 0.9 and len(answers) == expected[0] > budget(250), (
        cases, len(answers), expected)
