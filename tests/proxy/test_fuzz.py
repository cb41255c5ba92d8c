"""Issue #3 hardening: fuzz the proxy's own HTTP/1.1 front and RFC 6455 WebSocket.

A real ``kachery-resource proxy`` process with a connected v1 daemon gets, over raw
sockets, many malformed and random inputs (fixed seeds, bounded counts): truncated and
oversized request lines and headers, bad Content-Length, pipelined garbage, random and
mutated bytes, bad WebSocket handshakes, bad frames and close codes, and daemons sending
garbage and replies for ids that are not theirs. After every batch the proxy must still
be alive, answer ``GET /probe`` and relay ``POST /r/{name}`` (fast front and aiohttp
alike), its waiting/open counters must be back to 0 and its output must hold no
Traceback. Every answer it gives to garbage is a well-formed HTTP response or frame.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import re
import secrets
import struct
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from ..servers import ServerProcess, start_cli
from .conftest import client_body
from .rawwire import (
    ACK,
    RawDaemon,
    cframe,
    close_code,
    exchange,
    handshake,
    mutate,
    post_bytes,
    run_all,
    tracebacks,
    ws_exchange,
)
from .rawwire import init_text as _init_text
from .v1daemon import V1Daemon

pytestmark = pytest.mark.timeout(120)

SECRET = "fuzz-" + secrets.token_hex(8)
SHA = "c" * 40
MAX_BODY = 8192
MAX_FRAME = 65536
STATUS = re.compile(rb"HTTP/\d\.\d (\d{3}) ")
ALLOWED = {100, 200, 400, 404, 405, 408, 413, 414, 417, 426, 429, 431, 501, 505}


# -- fixtures -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def proxy() -> Iterator[ServerProcess]:
    server = start_cli(["proxy", "--port", "0", "--max-body-bytes", str(MAX_BODY),
                        "--max-frame-bytes", str(MAX_FRAME), "--max-wait-sec", "5"],
                       env={"PROXY_SECRET": SECRET})
    yield server
    server.stop()


@pytest.fixture
async def good(proxy: ServerProcess, request: pytest.FixtureRequest) -> AsyncIterator[V1Daemon]:
    """A well-behaved v1 daemon that must keep being served whatever the others send
    (its name is fixed per test, so every generated case is the same on every run)."""
    name = "good-" + hashlib.sha1(request.node.name.encode()).hexdigest()[:8]
    daemon = V1Daemon(proxy.url, name, SECRET,
                      statuses={SHA: {"status": "completed", "size": 7}})
    assert await daemon.connect()
    yield daemon
    assert daemon.violations == []
    await daemon.close()


def init_text(name: str, secret: str = SECRET) -> bytes:
    return _init_text(name, secret)


def check_answer(out: bytes, what: object) -> list[int]:
    """Whatever the proxy answered is HTTP responses with expected statuses (aiohttp
    answers a request it cannot parse as HTTP/1.0, and echoes e.g. HTTP/2.0)."""
    assert not out or STATUS.match(out), (what, out[:200])
    statuses = [int(m) for m in STATUS.findall(out)]
    for status in statuses:
        assert status in ALLOWED or (status == 500 and b"name-mismatch" in out), (what, out[:300])
    return statuses


async def fast_post(proxy: ServerProcess, name: str) -> dict[str, Any]:
    """POST /r/{name} on a fresh connection (served by the fast front)."""
    out = await exchange(proxy.url, post_bytes(name, json.dumps(client_body(name, SHA)).encode(),
                                           "Connection: close\r\n"), wait=5)
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), out[:300]
    reply: dict[str, Any] = json.loads(body)
    return reply


@dataclass
class Snapshot:
    lines: int  # of the proxy's output so far
    connected: int  # resources connected so far (the good daemon, and any leaked before)


async def snapshot(proxy: ServerProcess) -> Snapshot:
    async with aiohttp.ClientSession() as session, session.get(f"{proxy.url}/healthz") as r:
        return Snapshot(len(proxy.output), (await r.json())["connectedResources"])


async def assert_healthy(proxy: ServerProcess, good: V1Daemon, since: Snapshot,
                         connected: int = 0) -> None:
    """The proxy lives, probes, relays on both paths, and this test left no state behind
    (``connected``: daemons the test still holds); no traceback in its output since."""
    sockets = 1 + connected  # the good daemon's and the test's own
    connected += since.connected
    assert proxy.proc.poll() is None, proxy.text()
    reply = await fast_post(proxy, good.name)
    assert reply["response"]["status"] == {"status": "completed", "size": 7}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{proxy.url}/probe") as r:
            assert r.status == 200 and await r.text() == "running."
        async with session.post(f"{proxy.url}/r/{good.name}",
                                json=client_body(good.name, SHA)) as r:
            assert r.status == 200 and (await r.json())["response"]["status"]["size"] == 7
        counters: dict[str, Any] = {}
        for _ in range(100):
            async with session.get(f"{proxy.url}/healthz") as r:
                counters = await r.json()
            # openConnections: the live daemon sockets and this very request
            if counters == {**counters, "connectedResources": connected, "waitingRequests": 0,
                            "openClientRequests": 0, "openConnections": sockets + 1}:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"state left behind: {counters}")
        async with session.get(f"{proxy.url}/metrics") as r:
            metrics = await r.text()
    assert "kachery_proxy_waiting_requests 0.0" in metrics
    assert f"kachery_proxy_connected_resources {float(connected)}" in metrics
    assert tracebacks("\n".join(proxy.output[since.lines:]), unexpected_only=True) == []


# -- HTTP front fuzzing -----------------------------------------------------------------
def http_cases(name: str) -> list[bytes]:
    body = json.dumps(client_body(name, SHA)).encode()
    valid = post_bytes(name, body)
    cases = [valid[:n] for n in range(0, len(valid), 7)]  # truncated anywhere
    cases += [
        b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /r/" + b"n" * 9000 + b" HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
        b"GET /probe HTTP/1.1\r\nX: " + b"v" * 20000 + b"\r\n\r\n",
        b"GET /probe HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(500)) + b"\r\n",
        b"POST /r/" + name.encode() + b" HTTP/1.1\r\n" + b"A" * 9000,  # head never ends
        b"\r\n\r\n", b" \r\n\r\n", b"GET\r\n\r\n", b"GET / \r\n\r\n", b"GET  /probe  HTTP/1.1\r\n\r\n",
        b"get /probe HTTP/1.1\r\n\r\n", b"GET /probe HTTP/1.0\r\n\r\n", b"GET /probe HTTP/2.0\r\n\r\n",
        b"GET /probe HTTP/9.9\r\n\r\n", b"GET /probe http/1.1\r\n\r\n", b"GET /probe HTTP/1.1\n\n",
        b"GET /probe\tHTTP/1.1\r\n\r\n", b"\x00\x01\x02 / HTTP/1.1\r\n\r\n", b"PO ST /r/x HTTP/1.1\r\n\r\n",
        b"GET http://x/probe HTTP/1.1\r\nHost: x\r\n\r\n", b"GET * HTTP/1.1\r\n\r\n",
        b"GET /probe HTTP/1.1\r\nnocolon\r\n\r\n", b"GET /probe HTTP/1.1\r\n: empty\r\n\r\n",
        b"GET /probe HTTP/1.1\r\n folded: x\r\n\r\n", b"GET /probe HTTP/1.1\r\nA : b\r\n\r\n",
        b"GET /probe HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", b"GET /r/\xff\xfe HTTP/1.1\r\n\r\n",
        b"POST /r/%67ood HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", b"POST /r/ HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        b"POST /r/a/b HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", b"POST /r/a?x HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
        b"POST /r/a#x HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", b"POST /r/\xc3\xa9 HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
        b"DELETE /r/x HTTP/1.1\r\n\r\n", b"OPTIONS * HTTP/1.1\r\n\r\n", b"CONNECT x:1 HTTP/1.1\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64),
        b"GET /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ]
    for length in ["-1", "+5", "0x10", "5, 5", " 5", "5 ", "1e3", "", "99999999999999999999999",
                   "\xd9\xa3", "0005", str(MAX_BODY + 1), "4096000"]:
        head = f"POST /r/{name} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n"
        cases.append(head.encode("latin-1") + body)
    cases += [
        f"POST /r/{name} HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n".encode() + body,
        f"POST /r/{name} HTTP/1.1\r\nContent-Length: {len(body)}\r\nTransfer-Encoding: chunked"
        f"\r\n\r\n".encode() + body,
        f"POST /r/{name} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n".encode(),
        f"POST /r/{name} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nx\r\n0\r\n\r\n".encode(),
        f"POST /r/{name} HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n".encode(),
        f"POST /r/{name} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{len(body):x}\r\n".encode()
        + body + b"\r\n0\r\n\r\n",
        post_bytes(name, body, "Expect: 100-continue\r\n"), post_bytes(name, body, "Expect: bogus\r\n"),
        post_bytes(name, b"[" * 4000), post_bytes(name, b'{"a":' * 800 + b"1" + b"}" * 800),
        post_bytes(name, b"\xff\xfe\x00garbage"), post_bytes(name, b'{"type":"requestFromClient"}'),
        post_bytes(name, json.dumps({**client_body(name), "timeoutMsec": 1e999}).encode()),
        post_bytes(name, json.dumps(client_body(name)).replace("10000", "NaN").encode()),
        post_bytes(name, json.dumps(client_body(name)).replace("10000", "1" * 5000).encode()),
        post_bytes(name, json.dumps({**client_body(name), "resourceName": "\ud800"}).encode()),
        post_bytes(name, json.dumps({**client_body(name), "request": {"type": "x" * 3000}}).encode()),
        post_bytes("nobody", json.dumps(client_body("nobody")).encode()),
        post_bytes(name, json.dumps(client_body("other")).encode()),
    ]
    return cases


def bad_bodies(name: str) -> list[bytes]:
    """Complete, well-framed requests whose JSON body is wrong: each must get a 400."""
    good = client_body(name, SHA)
    return [b"[" * 3000, b'{"a":' * 800 + b"1" + b"}" * 800, b"\xff\xfe\x00garbage", b"",
            b'{"type":"requestFromClient"}', json.dumps({**good, "timeoutMsec": 1e999}).encode(),
            json.dumps(good).replace("10000", "NaN").encode(),
            json.dumps(good).replace("10000", "1" * 5000).encode(),
            json.dumps({**good, "request": {"type": "fileUpload", "uri": ["x"] * 10}}).encode(),
            json.dumps({**good, "zone": {"z": [[[[]]]]}}).encode()]


async def test_malformed_http_requests(proxy: ServerProcess, good: V1Daemon) -> None:
    since = await snapshot(proxy)
    cases = http_cases(good.name)

    async def one(case: bytes) -> None:
        check_answer(await exchange(proxy.url, case, wait=0.5), case[:120])

    await run_all(cases, one)
    await assert_healthy(proxy, good, since)


async def test_bad_json_bodies_get_400_on_both_paths(proxy: ServerProcess,
                                                     good: V1Daemon) -> None:
    """Deeply nested JSON, NaN, huge numbers, wrong types: a clear 400 JSON answer, from
    the fast front (Content-Length) and from aiohttp (chunked) alike, never silence."""
    since = await snapshot(proxy)
    cases = []
    for body in bad_bodies(good.name):
        cases.append(post_bytes(good.name, body, "Connection: close\r\n"))
        chunk = f"{len(body):x}\r\n".encode() + body + b"\r\n" if body else b""
        cases.append(f"POST /r/{good.name} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     f"Connection: close\r\n\r\n".encode() + chunk + b"0\r\n\r\n")

    async def one(case: bytes) -> None:
        out = await exchange(proxy.url, case, wait=5)
        assert check_answer(out, case[:100]) == [400], (case[:100], out[:300])
        reply = json.loads(out.partition(b"\r\n\r\n")[2])
        assert set(reply) == {"message", "code"} and reply["code"] == "bad-request", reply

    await run_all(cases, one)
    await assert_healthy(proxy, good, since)


async def test_the_same_requests_half_closed_and_dripped(proxy: ServerProcess,
                                                         good: V1Daemon) -> None:
    """The client shuts its side after sending; or sends one small piece at a time."""
    since = await snapshot(proxy)
    cases = http_cases(good.name)[::3]

    async def one(case: bytes) -> None:
        check_answer(await exchange(proxy.url, case, wait=0.5, eof=True), case[:120])
        pieces = [case[i:i + 5] for i in range(0, min(len(case), 400), 5)]
        check_answer(await exchange(proxy.url, *pieces, wait=0.3), case[:120])

    await run_all(cases, one)
    await assert_healthy(proxy, good, since)


async def test_pipelined_garbage_after_valid_requests(proxy: ServerProcess,
                                                      good: V1Daemon) -> None:
    since = await snapshot(proxy)
    rng = random.Random(6455)
    valid = post_bytes(good.name, json.dumps(client_body(good.name, SHA)).encode())
    tails = [bytes(rng.randrange(256) for _ in range(rng.randint(1, 300))) for _ in range(30)]
    tails += [b"\r\n", b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
              valid[:-3], valid.replace(b"Content-Length", b"Content-Lenxth"), b"\x00" * 9000]

    async def one(tail: bytes) -> None:
        out = await exchange(proxy.url, valid + valid + tail, wait=1.5)
        statuses = check_answer(out, tail[:80])
        assert statuses[:2] == [200, 200], (tail[:80], out[:400])  # in order, both answered
        assert out.count(b'"size":7') == 2

    await run_all(tails, one, width=12)
    await assert_healthy(proxy, good, since)


async def test_random_and_mutated_bytes(proxy: ServerProcess, good: V1Daemon) -> None:
    since = await snapshot(proxy)
    rng = random.Random(20261126)
    seeds = [*http_cases(good.name)[-20:],
             post_bytes(good.name, json.dumps(client_body(good.name, SHA)).encode()),
             b"GET /probe HTTP/1.1\r\nHost: x\r\n\r\n", b"GET /metrics HTTP/1.1\r\n\r\n"]
    cases = [bytes(rng.randrange(256) for _ in range(rng.randint(1, 2048))) for _ in range(60)]
    cases += [mutate(rng, rng.choice(seeds)) for _ in range(300)]

    async def one(case: bytes) -> None:
        check_answer(await exchange(proxy.url, case, wait=0.3), case[:120])

    await run_all(cases, one, width=30)
    await assert_healthy(proxy, good, since)


# -- WebSocket --------------------------------------------------------------------------
@pytest.mark.parametrize(("head", "why"), [
    (handshake(version="99"), "unsupported version"),
    (handshake(key="short"), "key too short"),
    (handshake(key="!!!!!!!!!!!!!!!!!!!!!!=="), "key is not base64"),
    (handshake(key=base64.b64encode(b"x" * 17).decode()[:24]), "key is not 16 bytes"),
    (handshake().replace(b"Upgrade: websocket\r\n", b""), "no Upgrade"),
    (handshake().replace(b"Upgrade: websocket", b"Upgrade: h2c"), "other protocol"),
    (handshake().replace(b"Connection: Upgrade", b"Connection: keep-alive"), "no Connection"),
    (handshake().replace(b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", b""), "no key"),
    (handshake().replace(b"GET /", b"POST /"), "POST"),
])
async def test_bad_websocket_handshakes_are_refused(proxy: ServerProcess, good: V1Daemon,
                                                    head: bytes, why: str) -> None:
    since = await snapshot(proxy)
    out = await exchange(proxy.url, head + cframe(0x1, init_text("hs-" + secrets.token_hex(3))),
                         wait=0.6)
    assert not out.startswith(b"HTTP/1.1 101"), (why, out[:300])
    check_answer(out, why)
    await assert_healthy(proxy, good, since)


def frame_cases(rng: random.Random) -> list[tuple[str, bytes, set[int | None]]]:
    """(what, frames sent after a valid initialize, acceptable close codes)."""
    big = MAX_FRAME + 1
    ping = cframe(0x9, b"p", rng=rng)
    cases: list[tuple[str, bytes, set[int | None]]] = [
        ("unmasked", cframe(0x1, b"{}", masked=False), {1002}),
        *[(f"rsv{r}", cframe(0x1, b"{}", rsv=r), {1002}) for r in (1, 2, 4, 7)],
        *[(f"opcode {op}", cframe(op, b"x"), {1002}) for op in (3, 4, 5, 6, 7, 0xB, 0xC, 0xF)],
        ("continuation first", cframe(0x0, b"x"), {1002}),
        ("text inside fragments", cframe(0x1, b"{", fin=False) + cframe(0x1, b"}"), {1002}),
        ("fragmented ping", cframe(0x9, b"x", fin=False), {1002}),
        ("long ping", cframe(0x9, b"x" * 126), {1002}),
        ("huge length", cframe(0x1, b"", length=(1 << 63) - 1), {1009}),
        ("length 2^64-1", cframe(0x2, b"", length=(1 << 64) - 1), {1002, 1009}),
        ("too big", cframe(0x1, b"x" * big), {1009}),
        ("too big in fragments", cframe(0x1, b"[" * (big // 2), fin=False)
         + cframe(0x0, b"1" * (big // 2 + 1)), {1009}),
        ("bad utf-8", cframe(0x1, b'{"type":"\xff"}'), {1007}),
        ("bad utf-8 fragments", cframe(0x1, b'{"a":"\xe2\x82', fin=False)
         + cframe(0x0, b'"}'), {1007}),
        ("surrogate utf-8", cframe(0x1, b'"\xed\xa0\x80"'), {1007}),
        ("ping then pong", ping + cframe(0xA, b"q") + cframe(0x8, b"\x03\xe8"), {1000}),
        ("close 1000 with reason", cframe(0x8, b"\x03\xe8bye"), {1000}),
        ("close empty", cframe(0x8, b""), {1000}),
        *[(f"close code {c}", cframe(0x8, struct.pack("!H", c)), {1002})
          for c in (0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535)],
        *[(f"close code {c}", cframe(0x8, struct.pack("!H", c)), {c})
          for c in (1001, 1002, 1003, 1007, 1011, 3000, 4999)],
        ("close 1 byte", cframe(0x8, b"\x03"), {1002}),
        ("close bad utf-8 reason", cframe(0x8, b"\x03\xe8\xff\xfe"), {1002, 1007}),
        ("binary after init", cframe(0x2, b"\x00\x01"), {None}),
        ("garbage json", cframe(0x1, b"{oops") + cframe(0x1, b"[" * 40000), {None}),
        ("deep object", cframe(0x1, b'{"a":' * 10000 + b"1" + b"}" * 10000), {None}),
        ("re-initialize", cframe(0x1, init_text("again")), {4004}),
    ]
    for i in range(40):  # random frame soup: only survival is asserted
        soup = bytes(rng.randrange(256) for _ in range(rng.randint(1, 200)))
        cases.append((f"soup {i}", soup, {None} | set(range(1000, 5000))))
    return cases


async def test_websocket_frames(proxy: ServerProcess, good: V1Daemon) -> None:
    since = await snapshot(proxy)
    rng = random.Random(1455)
    cases = frame_cases(rng)

    async def one(case: tuple[str, bytes, set[int | None]]) -> None:
        what, data, codes = case
        name = "ws-" + secrets.token_hex(4)
        if codes == {None}:
            data += cframe(0x9, b"still there?")
        frames = await ws_exchange(proxy.url, cframe(0x1, init_text(name), rng=rng), data)
        assert frames[0] == (0x1, b'{"type":"acknowledge"}'), (what, frames[:3])
        frames = frames[1:]
        assert close_code(frames) in codes, (what, frames)
        if codes == {None}:  # the socket stays usable
            assert frames == [(0xA, b"still there?")], (what, frames)
        if what == "ping then pong":
            assert (0xA, b"p") in frames

    await run_all(cases, one, width=16)
    await assert_healthy(proxy, good, since)


async def test_frames_before_initialize_and_dripped(proxy: ServerProcess, good: V1Daemon) -> None:
    since = await snapshot(proxy)
    rng = random.Random(99)
    init = cframe(0x1, init_text("drip-" + secrets.token_hex(3)), rng=rng)
    # one byte at a time, the handshake too: still acknowledged; then a ping in two
    # pieces, then a clean close
    frames = await ws_exchange(proxy.url, init, *[b[i:i + 1] for b in (
        cframe(0x9, b"drip", rng=rng), cframe(0x8, b"\x03\xe8", rng=rng)) for i in range(len(b))],
        drip=True)
    assert frames == [(0x1, ACK[2:]), (0xA, b"drip"), (0x8, b"\x03\xe8")]
    before_init = [(cframe(0x2, b"x"), 4004), (cframe(0x1, b"{no"), 4004),
                   (cframe(0x1, b"[" * 30000), 4004), (cframe(0x1, b"x", masked=False), 1002),
                   (cframe(0x1, init_text("x", "wrong-secret")), 4001),
                   (cframe(0x1, init_text(good.name)), 4002), (cframe(0x1, b"\xff"), 1007)]

    async def one(case: tuple[bytes, int]) -> None:
        frames = await ws_exchange(proxy.url, None, case[0])
        assert close_code(frames) == case[1], (case, frames)

    await run_all(before_init, one)
    await assert_healthy(proxy, good, since)


async def test_initialize_then_close_at_once_frees_the_name(proxy: ServerProcess,
                                                              good: V1Daemon) -> None:
    """A daemon that sends initialize and, in the same write, a close (or a bad frame):
    the proxy may refuse or accept it, but once the socket is gone the name must be free
    again and nothing may be left registered."""
    since = await snapshot(proxy)
    for i, tail in enumerate([cframe(0x8, b"\x03\xe8"), cframe(0x1, b"{}", masked=False),
                              cframe(0x3, b"")]):
        name = f"quick-{i}-" + secrets.token_hex(3)
        frames = await ws_exchange(proxy.url, None, cframe(0x1, init_text(name)) + tail)
        assert close_code(frames) is not None, frames
        daemon = V1Daemon(proxy.url, name, SECRET)
        try:
            assert await daemon.connect(), (name, daemon.close_code, daemon.close_reason)
        finally:
            await daemon.close()
    await assert_healthy(proxy, good, since)


# -- daemons that send garbage ----------------------------------------------------------
async def post_json(session: aiohttp.ClientSession, proxy: ServerProcess,
                    name: str) -> tuple[int, Any]:
    async with session.post(f"{proxy.url}/r/{name}", json=client_body(name, SHA)) as r:
        body = await r.json()
        return r.status, body["response"]["status"] if r.status == 200 else body


def metric(text: str, event: str) -> float:
    m = re.search(rf'kachery_proxy_daemon_events_total{{event="{event}"}} (\S+)', text)
    return float(m.group(1)) if m else 0.0


async def get_metrics(proxy: ServerProcess) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{proxy.url}/metrics") as r:
        return await r.text()


async def test_daemon_garbage_and_foreign_replies(proxy: ServerProcess, good: V1Daemon) -> None:
    since = await snapshot(proxy)
    rng = random.Random(42)
    a, b = (RawDaemon(proxy.url, f"raw-{x}-" + secrets.token_hex(3), SECRET)
            for x in "ab")
    await a.connect()
    await b.connect()
    m0 = await get_metrics(proxy)
    junk: list[str | bytes] = [
        "{oops", "[]", "null", "1e999", '"str"', '{"type":5}', '{"type":"weird"}',
        '{"type":"responseToClient","requestId":7}',
        '{"type":"responseToClient","requestId":"x","response":[]}',
        '{"type":"responseToClient","requestId":"x","response":{},"error":5}',
        '{"type":"ping","n":' + "9" * 5000 + "}", '{"type":"pong"}',
        json.dumps({"type": "responseToClient", "requestId": "\ud800", "response": {}}),
        *[bytes(rng.randrange(32, 127) for _ in range(rng.randint(1, 300))) for _ in range(30)],
    ]
    unknown = [json.dumps({"type": "responseToClient", "requestId": secrets.token_urlsafe(16),
                           "response": {}}) for _ in range(20)]
    for message in junk + unknown:
        a.text(message)
    await a.writer.drain()
    # a request for A: B (which never saw it) answers with A's id -> dropped; A's reply wins
    async with aiohttp.ClientSession() as session:
        pending = asyncio.create_task(post_json(session, proxy, a.name))
        request = await asyncio.wait_for(a.requests.get(), 5)
        assert request["type"] == "requestFromClient" and request["resourceName"] == a.name
        b.reply(request["requestId"], 666)
        await b.writer.drain()
        await asyncio.sleep(0.2)
        a.reply(request["requestId"], 11)
        a.reply(request["requestId"], 12)  # a duplicate: dropped
        assert await pending == (200, {"status": "completed", "size": 11})
        # both raw daemons still connected and served after all that
        for d, size in ((a, 21), (b, 22)):
            pending = asyncio.create_task(post_json(session, proxy, d.name))
            d.reply((await asyncio.wait_for(d.requests.get(), 5))["requestId"], size)
            assert await pending == (200, {"status": "completed", "size": size})
    m1 = await get_metrics(proxy)
    # the unknown ids, B's answer with A's id and A's duplicate are dropped replies
    assert metric(m1, "dropped-reply") - metric(m0, "dropped-reply") == len(unknown) + 2
    # every junk message is invalid (also the lone surrogate: escaped, but not Unicode)
    assert metric(m1, "invalid-message") - metric(m0, "invalid-message") == len(junk)
    await assert_healthy(proxy, good, since, connected=2)
    await a.close()
    await b.close()
    await assert_healthy(proxy, good, since)


def test_no_traceback_in_the_whole_run(proxy: ServerProcess) -> None:
    """Last: after every batch above, the proxy's output holds no traceback at all — also
    none of those aiohttp logs at ERROR for a request it cannot parse (a port scanner
    would fill the log with them)."""
    assert proxy.proc.poll() is None
    found = tracebacks(proxy.text())
    assert found == [], f"{len(found)} tracebacks, the first:\n{found[0] if found else ''}"
