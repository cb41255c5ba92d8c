"""The two kinds of worker thread of a multipart upload.

:class:`PartPut` sends one byte range of a file as the raw body of one PUT to a part URL
(``http.client`` for the request line and headers, then the body in 1 MiB steps with
``sendfile`` — page cache to socket, no copy through Python; over TLS 1 MiB blocks read
with ``os.pread``, so memory stays at one block per part in flight). It records when it last
moved a byte, so a watchdog can call :meth:`PartPut.abort` on a stalled part; the socket
timeout is the same stall limit. A shared :class:`threading.Semaphore` (``bodies``) bounds
how many part bodies stream at once: the other parts in flight have either sent their
body and wait for the store's answer, or wait for their turn (not yet connected) — so a
crash loses at most the unsent rest of that many parts.

:class:`SequentialHasher` reads the whole file once, in order, and computes its sha1 —
the parts go out in parallel and out of order, so they cannot be hashed where they are
read. It runs at most a few parts ahead of the oldest part not yet acknowledged (so the
senders find those bytes still in the page cache); a part is only sent once the hasher
has read past it. On a resumed upload it also hashes the parts already in the store.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ...errors import FileChangedError, UploadFailedError
from .put import open_connection

BLOCK_SIZE = 1024 * 1024
HASH_BLOCK = 8 * 1024 * 1024


class PartAborted(UploadFailedError):
    """Raised in a part's thread when it was aborted (stall, or the daemon stopping)."""


@dataclass(frozen=True)
class PartResult:
    status: int
    etag: str
    body: str


class _RangeBody:
    """``length`` bytes of ``fd`` from ``offset``, handed to http.client block by block."""

    def __init__(self, put: PartPut, fd: int) -> None:
        self._put = put
        self._fd = fd
        self._pos = put.offset
        self._end = put.offset + put.length

    def read(self, n: int = -1) -> bytes:
        put = self._put
        if put.aborted:
            raise PartAborted(f"part {put.number} was aborted")
        want = min(BLOCK_SIZE if n is None or n < 0 else n, self._end - self._pos)
        if want <= 0:
            return b""
        chunk = os.pread(self._fd, want, self._pos)
        if not chunk:
            raise FileChangedError(f"{put.path} became shorter while being uploaded; link it again")
        self._pos += len(chunk)
        put.touch()
        put.sent += len(chunk)
        put.progress(len(chunk))
        return chunk


class PartPut:
    """One PUT of bytes ``[offset, offset+length)`` of ``path``; :meth:`run` in a thread."""

    def __init__(self, url: str, path: Path, number: int, offset: int, length: int,
                 progress: Callable[[int], object], stall_sec: float,
                 bodies: threading.Semaphore | None = None) -> None:
        self.url = url
        self.path = path
        self.number = number
        self.offset = offset
        self.length = length
        self.progress = progress
        self.stall_sec = stall_sec
        self.aborted = False
        self.sent = 0
        self._bodies = bodies
        self.last_activity = time.monotonic()
        self._conn: http.client.HTTPConnection | None = None

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def stalled(self) -> bool:
        return time.monotonic() - self.last_activity > self.stall_sec

    def abort(self) -> None:
        """Stop the PUT from any thread (the socket is shut down at once)."""
        self.aborted = True
        conn = self._conn
        if conn is not None and conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)

    def run(self) -> PartResult:
        conn, target = open_connection(self.url)
        conn.timeout = self.stall_sec
        self._conn = conn
        try:
            self._take_turn()
            try:
                with open(self.path, "rb") as f:
                    conn.putrequest("PUT", target)
                    conn.putheader("Content-Length", str(self.length))
                    conn.endheaders()
                    if isinstance(conn.sock, ssl.SSLSocket):
                        conn.send(_RangeBody(self, f.fileno()))
                    else:
                        self._sendfile(conn.sock, f)
            finally:
                if self._bodies is not None:
                    self._bodies.release()
            resp = conn.getresponse()
            self.touch()
            text = resp.read(64 * 1024).decode("utf-8", "replace")
            etag = (resp.getheader("ETag") or "").strip().strip('"')
            return PartResult(resp.status, etag, text)
        except (http.client.HTTPException, OSError) as exc:
            if self.aborted:
                raise PartAborted(f"part {self.number} was aborted") from exc
            raise
        finally:
            conn.close()

    def _take_turn(self) -> None:
        """Wait until this body may stream (before connecting: no idle connection to time out)."""
        if self._bodies is None:
            return
        while not self._bodies.acquire(timeout=0.5):
            if self.aborted:
                raise PartAborted(f"part {self.number} was aborted")
            self.touch()  # waiting for a turn is not a stall
        self.touch()

    def _sendfile(self, sock: socket.socket, f: BinaryIO) -> None:
        """The body, straight from the page cache to the socket (no copy through Python)."""
        done = 0
        while done < self.length:
            if self.aborted:
                raise PartAborted(f"part {self.number} was aborted")
            want = min(BLOCK_SIZE, self.length - done)
            n = sock.sendfile(f, self.offset + done, want)
            if n < want:
                raise FileChangedError(f"{self.path} became shorter while being uploaded; link it again")
            done += n
            self.touch()
            self.sent += n
            self.progress(n)


class HashingStopped(Exception):
    """Raised in the hasher thread when the upload no longer needs it."""


class SequentialHasher:
    """The sha1 of the whole file, read in order, at most ``window`` parts past ``allow()``."""

    def __init__(self, path: Path, size: int, part_size: int, num_parts: int,
                 on_part: Callable[[int], object]) -> None:
        self.path = path
        self.size = size
        self.part_size = part_size
        self.num_parts = num_parts
        self._on_part = on_part
        self._cond = threading.Condition()
        self._limit = 0
        self._stopped = False

    def allow(self, up_to_part: int) -> None:
        """Let the hasher read up to (and including) part ``up_to_part``."""
        with self._cond:
            if up_to_part > self._limit:
                self._limit = up_to_part
                self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def _wait_for_turn(self, number: int) -> None:
        with self._cond:
            while number > self._limit and not self._stopped:
                self._cond.wait()
            if self._stopped:
                raise HashingStopped()

    def run(self) -> str:
        """Hash the file part by part (calling ``on_part(n)`` after each); return the hex sha1."""
        digest = hashlib.sha1()
        buf = bytearray(min(HASH_BLOCK, max(self.size, 1)))
        view = memoryview(buf)
        try:
            with open(self.path, "rb", buffering=0) as f:
                for number in range(1, self.num_parts + 1):
                    self._wait_for_turn(number)
                    remaining = min(self.part_size, self.size - (number - 1) * self.part_size)
                    while remaining > 0:
                        if self._stopped:
                            raise HashingStopped()
                        n = f.readinto(view[:min(len(buf), remaining)])
                        if not n:
                            raise FileChangedError(
                                f"{self.path} became shorter while being uploaded; link it again")
                        digest.update(view[:n])
                        remaining -= n
                    self._on_part(number)
                if f.read(1):
                    raise FileChangedError(f"{self.path} grew while being uploaded; link it again")
            return digest.hexdigest()
        finally:  # the buffer goes now: an error's traceback holds this frame, and a cycle
            view.release()  # through it (the future that holds the error) would keep it
            buf.clear()  # until the cyclic collector ran
