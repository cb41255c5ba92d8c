"""Start real servers on loopback for tests: our CLI servers, SeaweedFS (S3) and NATS.

Every server binds 127.0.0.1 on free ports and is stopped (and waited for) at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import requests
from aiohttp import web

from kachery_resource.servers import free_ports

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    """A running ``kachery-resource …`` (or other) process and the URL it printed."""

    proc: subprocess.Popen[str]
    url: str
    output: list[str] = field(default_factory=list)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def text(self) -> str:
        return "\n".join(self.output)


def _pump(stream: object, sink: list[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        sink.append(line.rstrip("\n"))


def start_cli(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
              timeout: float = 20, ready: str = r"(http://\S+)") -> ServerProcess:
    r"""Start ``kachery-resource ARGS`` and wait for a line matching ``ready``.

    Servers print their URL first (the default); the daemon prints
    ``KACHERY_RESOURCE_URL=<url>`` once the proxy acknowledged it
    (``ready=r"KACHERY_RESOURCE_URL=(\S+)"``). ``.url`` is the regex's first group.
    """
    full_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [str(BIN / "kachery-resource"), *args], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, env=full_env, cwd=cwd,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    first = ""
    output: list[str] = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        output.append(line.rstrip("\n"))
        match = re.search(ready, line)
        if match:
            first = match.group(1)
            break
    if not first:
        proc.kill()
        rest = proc.stdout.read()
        raise RuntimeError(f"kachery-resource {' '.join(args)} did not print a line matching {ready!r}:\n"
                           + "\n".join(output) + rest)
    threading.Thread(target=_pump, args=(proc.stdout, output), daemon=True).start()
    return ServerProcess(proc, first, output)


@contextmanager
def cli_server(args: list[str], env: dict[str, str] | None = None,
               cwd: Path | None = None, ready: str = r"(http://\S+)") -> Iterator[ServerProcess]:
    server = start_cli(args, env, cwd, ready=ready)
    try:
        yield server
    finally:
        server.stop()


def wait_until(predicate: object, timeout: float = 10, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except Exception:
            pass
        time.sleep(interval)
    raise TimeoutError(f"condition not met within {timeout} s")


@dataclass
class S3Server:
    """A SeaweedFS S3 endpoint with per-run credentials and one bucket."""

    endpoint: str
    access_key: str
    secret_key: str
    bucket: str

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_DEFAULT_REGION": "us-east-1"}

    def client(self):  # type: ignore[no-untyped-def]
        import boto3
        from botocore.config import Config
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name="us-east-1",
                            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))


@contextmanager
def seaweedfs(workdir: Path) -> Iterator[S3Server]:
    """Run ``weed mini`` (a real S3 that checks signatures and expiry) on free ports."""
    access, secret = "test" + secrets.token_hex(6), secrets.token_hex(16)
    bucket = "kachery"
    data = workdir / "s3data"
    data.mkdir(parents=True, exist_ok=True)
    config = workdir / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "admin", "credentials": [{"accessKey": access, "secretKey": secret}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    p = free_ports(14)
    args = [str(BIN / "weed"), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-admin.ui=false", "-webdav=false", "-master.telemetry=false", f"-s3.config={config}",
            f"-master.port={p[0]}", f"-master.port.grpc={p[1]}", f"-volume.port={p[2]}",
            f"-volume.port.grpc={p[3]}", f"-filer.port={p[4]}", f"-filer.port.grpc={p[5]}",
            f"-s3.port={p[6]}", f"-s3.port.grpc={p[7]}", f"-s3.port.iceberg={p[8]}",
            f"-s3.port.lance={p[9]}", f"-admin.port={p[10]}", f"-admin.port.grpc={p[11]}"]
    log = open(workdir / "weed.log", "w")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "AWS_ACCESS_KEY_ID": access,
                                 "AWS_SECRET_ACCESS_KEY": secret})
    server = S3Server(f"http://127.0.0.1:{p[6]}", access, secret, bucket)
    try:
        def ready() -> bool:
            client = server.client()
            try:
                client.head_bucket(Bucket=bucket)
            except Exception:
                client.create_bucket(Bucket=bucket)
            return True
        wait_until(ready, timeout=60, interval=0.3)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(data, ignore_errors=True)


@contextmanager
def nats_server(workdir: Path) -> Iterator[str]:
    """Run ``nats-server`` on a free loopback port; yields ``nats://127.0.0.1:PORT``."""
    port, mport = free_ports(2)
    log = open(workdir / "nats.log", "w")
    proc = subprocess.Popen([str(BIN / "nats-server"), "-a", "127.0.0.1", "-p", str(port),
                             "-m", str(mport)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: requests.get(f"http://127.0.0.1:{mport}/healthz", timeout=1).ok,
                   timeout=20)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


class BackgroundApp:
    """One catch-all aiohttp handler served on 127.0.0.1 from its own thread and loop,
    with a client session on that loop for forwarding (the test relays use it)."""

    def __init__(self, handler: Any) -> None:
        self._handler = handler
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self.session: aiohttp.ClientSession | None = None
        self.url = ""

    def start(self) -> str:
        async def main() -> None:
            self.session = aiohttp.ClientSession(auto_decompress=False,
                                                 timeout=aiohttp.ClientTimeout(total=None))
            app = web.Application(client_max_size=1 << 40)
            app.router.add_route("*", "/{tail:.*}", self._handler)
            # at stop, requests still in flight (a relayed upload the test cancelled) are cut
            # at once rather than waited for
            self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(main(), self._loop).result(10)
        return self.url

    def stop(self) -> None:
        async def close() -> None:
            if self.session is not None:  # first: forwards still running fail now
                await self.session.close()
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
