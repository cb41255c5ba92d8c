"""The daemon behind an outgoing HTTP proxy (``HTTP_PROXY``): its proxy connection, gateway
calls and upload PUTs all go through it, and ``NO_PROXY`` hosts do not."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from kachery_resource.identity import ClientKeys, signed_envelope
from kachery_resource.store import LocalStore

from ..servers import start_cli
from .stack import add_client, random_file, request_file, start_daemon

SECRET = "proxy-" + secrets.token_hex(8)


class ForwardProxy:
    """A plain HTTP forward proxy on 127.0.0.1: takes the first request of a connection
    (absolute-form, or CONNECT), connects to its host, then pipes bytes both ways.
    Records the ``host:port`` of every connection it carried."""

    def __init__(self) -> None:
        self.targets: list[str] = []
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None

    def start(self) -> ForwardProxy:
        async def main() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(main(), self._loop).result(10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
            else:
                parts = urllib.parse.urlsplit(target)
                host, port = parts.hostname or "", str(parts.port or 80)
            self.targets.append(f"{host}:{port}")
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            if method == "CONNECT":
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                up_writer.write(head)  # servers accept the absolute form (RFC 9112 3.2.2)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


@pytest.fixture
def forward_proxy() -> Iterator[ForwardProxy]:
    fp = ForwardProxy().start()
    try:
        yield fp
    finally:
        fp.stop()


def test_daemon_goes_through_http_proxy_and_not_for_no_proxy_hosts(
        tmp_path: Path, forward_proxy: ForwardProxy) -> None:
    storage = tmp_path / "bucket"
    keys = ClientKeys.generate()
    add_client(str(storage), keys.client_id, {})
    gateway = start_cli(["gateway", "--port", "0", "--storage", str(storage)])
    proxy = start_cli(["proxy", "--port", "0"], env={"PROXY_SECRET": SECRET})
    gateway_port = urllib.parse.urlsplit(gateway.url).port
    proxy_port = urllib.parse.urlsplit(proxy.url).port
    through = {name: forward_proxy.url for name in ("HTTP_PROXY", "http_proxy")}
    daemons = []
    try:
        # everything through the forward proxy: the WebSocket, gateway calls, the PUT
        proc, store_dir = start_daemon(tmp_path / "d1", "fwd-" + secrets.token_hex(3), proxy.url,
                                       SECRET, gateway.url, keys,
                                       extra={**through, "NO_PROXY": "", "no_proxy": ""})
        daemons.append(proc)
        for size in (1000, 300_000):  # one piece on the loop; the streaming PUT in a thread
            random_file(tmp_path / f"f{size}", size)
            sha1 = LocalStore(store_dir).store_copy(tmp_path / f"f{size}")
            assert request_file(proc.url, sha1)["status"] == "completed", proc.text()
            found = requests.post(f"{gateway.url}/api/gateway", json=signed_envelope(keys, {
                "type": "findFile", "hashAlg": "sha1", "hash": sha1, "zone": "default"})).json()
            assert hashlib.sha1(requests.get(found["url"]).content).hexdigest() == sha1
        assert f"127.0.0.1:{proxy_port}" in forward_proxy.targets
        assert f"127.0.0.1:{gateway_port}" in forward_proxy.targets
        # NO_PROXY names the host: nothing more goes through the forward proxy
        seen = len(forward_proxy.targets)
        proc, store_dir = start_daemon(tmp_path / "d2", "direct-" + secrets.token_hex(3),
                                       proxy.url, SECRET, gateway.url, keys,
                                       extra={**through, "NO_PROXY": "127.0.0.1",
                                              "no_proxy": "127.0.0.1"})
        daemons.append(proc)
        random_file(tmp_path / "g", 2000)
        sha1 = LocalStore(store_dir).store_copy(tmp_path / "g")
        assert request_file(proc.url, sha1)["status"] == "completed", proc.text()
        assert len(forward_proxy.targets) == seen
    finally:
        for d in daemons:
            d.stop()
        proxy.stop()
        gateway.stop()
