"""Raw-socket tools for fuzzing the proxy: HTTP exchanges, client WebSocket frames built
by hand (any bit may be wrong), a parser that checks the proxy's own frames, a daemon
over a raw socket, and a scan of the proxy's output for tracebacks."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import struct
from typing import Any

from kachery_resource.proxy.ws_front import accept_key


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def read_into(reader: asyncio.StreamReader, out: bytearray, seconds: float,
                    done: Any = lambda: False) -> None:
    """Append what ``reader`` gives to ``out`` until ``done()``, EOF or ``seconds`` pass."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not done() and (left := deadline - loop.time()) > 0:
        try:
            data = await asyncio.wait_for(reader.read(65536), left)
        except TimeoutError:
            return
        if not data:
            return
        out += data


# -- raw HTTP ---------------------------------------------------------------------------
async def exchange(url: str, *chunks: bytes, wait: float = 0.4, eof: bool = False) -> bytes:
    """Send ``chunks`` on a fresh connection; return what comes back within ``wait``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(url))
    out = bytearray()
    try:
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
        if eof:
            writer.write_eof()
        await read_into(reader, out, wait)
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
    return bytes(out)


def post_bytes(name: str, body: bytes, extra: str = "") -> bytes:
    """A raw ``POST /r/{name}`` with a Content-Length body (``extra``: more header lines)."""
    return (f"POST /r/{name} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body


CHAINED = ("During handling of the above exception", "The above exception was the direct cause")


def tracebacks(text: str, *, unexpected_only: bool = False) -> list[str]:
    """The tracebacks in the proxy's output; ``unexpected_only`` leaves out the ones aiohttp
    logs for a request it could not parse (``Error handling request from …`` followed by an
    ``aiohttp.http_exceptions`` error)."""
    parts = text.split("Traceback (most recent call last):")
    found: list[str] = []
    expected = False
    for before, block in itertools.pairwise(parts):
        lead = before.rstrip().rsplit("\n", 1)[-1]
        if not lead.startswith(CHAINED):
            expected = lead.startswith("Error handling request from")
        if not (unexpected_only and expected and "aiohttp.http_exceptions." in block):
            found.append(lead + "\n" + block[:2000])
    for marker in ("Exception in callback", "exception was never retrieved", "Fatal error"):
        if marker in text:
            found.append(text[text.index(marker):][:2000])
    return found


async def run_all(cases: list[Any], one: Any, width: int = 24) -> None:
    """Run ``one(case)`` for every case, ``width`` at a time; fail listing every failure."""
    failures: list[str] = []
    for i in range(0, len(cases), width):
        results = await asyncio.gather(*(one(c) for c in cases[i:i + width]),
                                       return_exceptions=True)
        failures += [f"{type(r).__name__}: {str(r)[:600]}" for r in results
                     if isinstance(r, BaseException)]
    assert not failures, f"{len(failures)} of {len(cases)} cases failed:\n" + "\n".join(failures)


# -- fuzzing -------------------------------------------------------------------------
def mutate(rng: random.Random, data: bytes) -> bytes:
    """``data`` with a few random byte flips, insertions, deletions and HTTP delimiters."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op, i = rng.randrange(4), rng.randrange(len(b) + 1)
        if op == 0 and i < len(b):
            b[i] = rng.randrange(256)
        elif op == 1:
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 2:
            del b[i:i + rng.randint(1, 16)]
        else:
            b[i:i] = rng.choice([b"\r\n", b"\r\n\r\n", b":", b" ", b"\x00", b"%", b"/"])
    return bytes(b)


def cframe(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True, rsv: int = 0,
           length: int | None = None, rng: random.Random | None = None) -> bytes:
    """A client frame; ``length`` may lie about the payload's size."""
    n = len(payload) if length is None else length
    mask_bit = 0x80 if masked else 0
    if n < 126:
        size = bytes([mask_bit | n])
    elif n < 65536:
        size = bytes([mask_bit | 126]) + n.to_bytes(2, "big")
    else:
        size = bytes([mask_bit | 127]) + n.to_bytes(8, "big")
    key = (rng or random.Random(n)).randbytes(4)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload)) if masked else payload
    return bytes([(0x80 if fin else 0) | rsv << 4 | opcode]) + size + (key if masked else b"") + body


def handshake(key: str = "dGhlIHNhbXBsZSBub25jZQ==", extra: str = "", version: str = "13") -> bytes:
    return (f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: {version}\r\n{extra}\r\n").encode()


def init_text(name: str, secret: str) -> bytes:
    return json.dumps({"type": "initialize", "resourceName": name, "zone": "default",
                       "proxySecret": secret}).encode()


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Parse the proxy's frames (after the 101 head); they must be unmasked and well formed."""
    frames = []
    pos = 0
    while pos < len(data):
        assert len(data) - pos >= 2, data[pos:]
        b0, b1 = data[pos], data[pos + 1]
        assert not b1 & 0x80 and not b0 & 0x70, "server frames are unmasked, no RSV bits"
        n, pos = b1 & 0x7F, pos + 2
        if n == 126:
            n, pos = int.from_bytes(data[pos:pos + 2], "big"), pos + 2
        elif n == 127:
            n, pos = int.from_bytes(data[pos:pos + 8], "big"), pos + 8
        assert pos + n <= len(data), "truncated server frame"
        frames.append((b0 & 0x0F, data[pos:pos + n]))
        pos += n
    return frames


ACK = b'\x81\x16{"type":"acknowledge"}'


async def ws_exchange(url: str, init: bytes | None, *chunks: bytes,
                      wait: float = 0.6, drip: bool = False) -> list[tuple[int, bytes]]:
    """Handshake; if ``init`` is given send it and wait for the acknowledge; then send
    ``chunks``; return every frame the proxy sent (checked to be well formed).
    ``drip``: the handshake and ``init`` go one byte per write."""
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(url))
    out = bytearray()
    try:
        first = handshake() + (init or b"")
        for piece in ([first[i:i + 1] for i in range(len(first))] if drip else [first]):
            writer.write(piece)
            await writer.drain()
        if init is not None:
            await read_into(reader, out, 5, lambda: ACK in out)
            assert ACK in out, out[:300]
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
        await read_into(reader, out, wait)
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
    status, _, rest = bytes(out).partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 101 "), out[:300]
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==").encode() in status
    return server_frames(rest)


def close_code(frames: list[tuple[int, bytes]]) -> int | None:
    """The code of the proxy's close frame (None if it sent none); nothing may follow it."""
    closes = [p for op, p in frames if op == 0x8]
    assert len(closes) <= 1, frames
    if not closes:
        return None
    assert len(closes[0]) >= 2 and frames[-1][0] == 0x8, frames  # nothing after the close
    code: int = struct.unpack("!H", closes[0][:2])[0]
    closes[0][2:].decode("utf-8")  # the reason is valid UTF-8
    return code


class RawDaemon:
    """A daemon over a raw socket: sends any frames, answers requests when told to."""

    def __init__(self, url: str, name: str, secret: str) -> None:
        self.url, self.name, self.secret = url, name, secret
        self.requests: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.rng = random.Random(name)

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", _port(self.url))
        self.writer.write(handshake() + cframe(0x1, init_text(self.name, self.secret),
                                               rng=self.rng))
        head = await self.reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        assert await self.frame() == (0x1, b'{"type":"acknowledge"}')
        self.task = asyncio.create_task(self._read())

    async def frame(self) -> tuple[int, bytes]:
        b0, b1 = await self.reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(await self.reader.readexactly(2), "big")
        return b0 & 0x0F, await self.reader.readexactly(n)

    async def _read(self) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                op, data = await self.frame()
                if op == 0x9:
                    self.send(cframe(0xA, data, rng=self.rng))
                elif op == 0x1:
                    await self.requests.put(json.loads(data))

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    def text(self, message: str | bytes) -> None:
        raw = message.encode() if isinstance(message, str) else message
        self.send(cframe(0x1, raw, rng=self.rng))

    def reply(self, request_id: str, size: int) -> None:
        self.text(json.dumps({"type": "responseToClient", "requestId": request_id,
                              "response": {"type": "fileUpload",
                                           "status": {"status": "completed", "size": size}}}))

    async def close(self) -> None:
        self.task.cancel()
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()
