"""Processes the soak starts, kills, pauses and restarts on fixed ports, and a TCP relay
that can black-hole a daemon's connection (stop forwarding without closing)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} was not ready within {timeout:.0f} s")


Sample = tuple[float, int, float]  # (monotonic time, open fds, resident MiB)


@dataclass
class Lifetime:
    """One run of a process, from its start to its kill or the end of the soak."""

    started_at: float
    samples: list[Sample] = field(default_factory=list)


@dataclass
class Service:
    """One server process: same argv, env and ports on every (re)start."""

    name: str
    kind: str  # proxy, gateway, daemon, nats, s3
    argv: list[str]
    env: dict[str, str]
    log: Path
    ready: Callable[[Service], bool]
    cwd: Path | None = None
    ready_timeout: float = 60.0
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    lifetimes: list[Lifetime] = field(default_factory=list)  # one per start, samples each
    log_offset: int = 0  # where this start's output begins in the log

    def start(self) -> None:
        self.log_offset = self.log.stat().st_size if self.log.exists() else 0
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                     env={**os.environ, **self.env, "PYTHONUNBUFFERED": "1"},
                                     cwd=self.cwd, start_new_session=True)
        out.close()
        self.starts += 1
        self.lifetimes.append(Lifetime(time.monotonic()))
        wait_for(lambda: self.alive() and self.ready(self), self.ready_timeout, self.name)

    @property
    def samples(self) -> list[Sample]:
        """The samples of the current (last) lifetime."""
        return self.lifetimes[-1].samples if self.lifetimes else []

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(30)

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_text(self, since_start: bool = False) -> str:
        try:
            data = self.log.read_bytes()
            return data[self.log_offset if since_start else 0:].decode(errors="replace")
        except OSError:
            return ""

    def log_has(self, pattern: str) -> bool:
        return re.search(pattern, self.log_text(since_start=True)) is not None

    def fds(self) -> int:
        """How many descriptors the process holds now (-1 when it is not running)."""
        if not self.alive():
            return -1
        assert self.proc is not None
        try:
            return len(os.listdir(f"/proc/{self.proc.pid}/fd"))
        except OSError:
            return -1

    def sample(self, now: float) -> None:
        """Record this process's open fds and resident memory, in its current lifetime."""
        if not self.alive() or not self.lifetimes:
            return
        assert self.proc is not None
        lifetime = self.lifetimes[-1]
        try:
            fds = len(os.listdir(f"/proc/{self.proc.pid}/fd"))
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return
        rss = next((int(line.split()[1]) / 1024 for line in status.splitlines()
                    if line.startswith("VmRSS:")), 0.0)
        if now >= lifetime.started_at:  # not a sample of the process this start replaced
            lifetime.samples.append((now, fds, rss))


class BlackHoleRelay:
    """Forwards TCP from a local port to ``upstream``; ``hole(True)`` stops forwarding in
    both directions without closing anything, ``hole(False)`` cuts the stalled
    connections (as a network that comes back would reset them) and forwards again."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self._open = threading.Event()
        self._open.set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()

    def start(self) -> int:
        ready = threading.Event()

        async def main() -> None:
            server = await asyncio.start_server(self._client, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            ready.set()

        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(main(), self._loop)
        ready.wait(10)
        return self.port

    def hole(self, on: bool) -> None:
        if on:
            self._open.clear()
            return

        def cut() -> None:
            for w in list(self._writers):
                w.transport.abort()
            self._writers.clear()
            self._open.set()
        self._loop.call_soon_threadsafe(cut)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_w))
        pumps = [asyncio.ensure_future(self._pump(reader, up_w)),
                 asyncio.ensure_future(self._pump(up_r, writer))]
        # either side ending (EOF, or a reset as from a killed server) ends both at once:
        # waiting for the other side would leave the daemon on a dead connection until its
        # next heartbeat
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for w in (writer, up_w):
            self._writers.discard(w)
            w.transport.abort()
        for pump in pumps:
            pump.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                writer.transport.abort()
                return
            while not self._open.is_set():  # black hole: hold everything, close nothing
                await asyncio.sleep(0.1)
                if writer.transport.is_closing():
                    return
            writer.write(data)
            await writer.drain()
