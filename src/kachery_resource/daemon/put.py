"""One streaming PUT of a local file to a signed URL, reading, hashing and sending in one pass.

It runs in a worker thread with ``http.client``: a reader thread reads and hashes blocks
of ``BLOCK_SIZE`` a few blocks ahead, the sender hands them to ``socket.sendall`` (which,
like hashing, releases the GIL), so the event loop stays free and memory stays at a few
blocks whatever the file size. The block that completes the
file is only sent once the whole file's sha1 has been checked: a file whose bytes changed
never reaches its last byte at the server, so nothing is stored. Setting ``abort`` (Ctrl-C)
stops the upload within one block, or at once by shutting the socket down.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import queue
import socket
import ssl
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import BinaryIO

from ..errors import FileChangedError, IntegrityError, UploadFailedError
from ..store import LocalFile

BLOCK_SIZE = 1024 * 1024
READ_AHEAD = 4  # blocks read and hashed ahead of the sender
TIMEOUT_SEC = 300.0


class UploadAborted(UploadFailedError):
    """Raised inside the upload thread when the daemon stops during an upload."""


class PutResult:
    def __init__(self, status: int, body: str) -> None:
        self.status = status
        self.body = body


class HashingBody:
    """A file-like body for http.client: exactly ``size`` bytes, hashed as they are read.

    A reader thread reads and hashes up to ``READ_AHEAD`` blocks ahead of the sender, so
    hashing overlaps sending. The block that completes the file is queued only after the
    whole file's sha1 matched; on a mismatch the error is queued instead, and the sender
    raises it before the server has the last byte.
    """

    def __init__(self, f: BinaryIO, local: LocalFile, progress: Callable[[int], None],
                 abort: threading.Event) -> None:
        self._f = f
        self._local = local
        self._progress = progress
        self._abort = abort
        self._digest = hashlib.sha1()
        self._remaining = local.size  # not yet read (reader thread)
        self._undelivered = local.size  # not yet handed to the sender
        self._last = 0  # bytes of the previous block: sent once we are asked for more
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(READ_AHEAD)
        self._closed = threading.Event()
        self._reader: threading.Thread | None = None
        self._first: bytes | None = None

    def prime(self) -> None:
        """Start reading; wait for the first block before any request is sent, so a
        small file whose bytes changed is caught before the server sees anything."""
        if self._local.size == 0:
            self.check_digest()
            return
        self._reader = threading.Thread(target=self._read_ahead, name="upload-reader",
                                        daemon=True)
        self._reader.start()
        first = self._queue.get()
        if isinstance(first, BaseException):
            raise first
        self._first = first

    def _read_ahead(self) -> None:
        try:
            while self._remaining > 0 and not self._closed.is_set():
                self._offer(self._next(BLOCK_SIZE))
        except BaseException as exc:
            self._offer(exc)

    def _offer(self, item: bytes | BaseException) -> None:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        """Stop the reader thread (the request ended, one way or another)."""
        self._closed.set()
        if self._reader is not None:
            self._reader.join()

    def read(self, n: int = -1) -> bytes:
        if self._last:
            self._progress(self._last)
            self._last = 0
        if self._abort.is_set():
            raise UploadAborted("the resource daemon stopped during the upload")
        if self._undelivered == 0:
            return b""
        if self._first is not None:
            item: bytes | BaseException = self._first
            self._first = None
        else:
            item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        self._undelivered -= len(item)
        self._last = len(item)
        return item

    def _next(self, n: int) -> bytes:
        chunk = self._f.read(min(n, self._remaining))
        if not chunk:
            raise FileChangedError(
                f"{self._local.path} became shorter while being uploaded; link it again"
            )
        self._digest.update(chunk)
        self._remaining -= len(chunk)
        if self._remaining == 0:
            self.check_digest()
        return chunk

    def finish(self) -> None:
        """Count the last block once the server has answered."""
        if self._last:
            self._progress(self._last)
            self._last = 0

    def check_digest(self) -> None:
        actual = self._digest.hexdigest()
        if actual != self._local.sha1:
            raise IntegrityError(
                f"file changed: {self._local.path} no longer hashes to {self._local.sha1} "
                f"(its bytes hash to {actual}); nothing was stored — link or store it again"
            )


def _open_connection(url: str) -> tuple[http.client.HTTPConnection, str]:
    """A connection for ``url`` (through HTTP(S)_PROXY when the environment sets one)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UploadFailedError(f"the gateway gave an upload URL that is not http(s): {url[:100]}")
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and urllib.request.proxy_bypass(host):
        proxy = None
    context = ssl.create_default_context()
    if proxy:
        p = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(p.hostname or "", p.port or 8080, timeout=TIMEOUT_SEC,
                                               context=context, blocksize=BLOCK_SIZE)
            conn.set_tunnel(host, port)
            return conn, target
        conn = http.client.HTTPConnection(p.hostname or "", p.port or 8080, timeout=TIMEOUT_SEC,
                                          blocksize=BLOCK_SIZE)
        return conn, url
    if parts.scheme == "https":
        return http.client.HTTPSConnection(host, port, timeout=TIMEOUT_SEC, context=context,
                                           blocksize=BLOCK_SIZE), target
    return http.client.HTTPConnection(host, port, timeout=TIMEOUT_SEC, blocksize=BLOCK_SIZE), target


class Put:
    """One PUT, run with :meth:`run` in a worker thread; :meth:`abort` from any thread."""

    def __init__(self, url: str, local: LocalFile, progress: Callable[[int], None]) -> None:
        self.url = url
        self.local = local
        self.progress = progress
        self._abort = threading.Event()
        self._conn: http.client.HTTPConnection | None = None

    def abort(self) -> None:
        self._abort.set()
        conn = self._conn
        if conn is not None and conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)

    def run(self) -> PutResult:
        """Send the file; returns the status and (start of the) body of the answer."""
        conn, target = _open_connection(self.url)
        self._conn = conn
        try:
            with open(self.local.path, "rb") as f:
                body = HashingBody(f, self.local, self.progress, self._abort)
                try:
                    body.prime()  # for an empty file: checks the digest of b""
                    headers = {"Content-Length": str(self.local.size)}
                    conn.request("PUT", target, body=body if self.local.size else b"",
                                 headers=headers)
                    resp = conn.getresponse()
                    text = resp.read(64 * 1024).decode("utf-8", "replace")
                finally:
                    body.close()
                if 200 <= resp.status < 300:
                    body.finish()
                return PutResult(resp.status, text)
        except (http.client.HTTPException, OSError) as exc:
            if self._abort.is_set():
                raise UploadAborted("the resource daemon stopped during the upload") from exc
            raise
        finally:
            conn.close()
