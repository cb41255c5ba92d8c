"""One streaming PUT of a local file to a signed URL, reading, hashing and sending in one pass.

It runs in a worker thread with ``http.client``: a reader thread reads blocks of
``BLOCK_SIZE`` into a small ring of reused buffers and hashes them a few blocks ahead;
the sending thread writes each buffer to the socket once it is hashed (``readinto``,
sha1 and ``sendall`` all release the GIL, so reading, hashing and sending overlap, and
nothing is allocated per block). The bytes sent are exactly the bytes hashed. The block
that completes the file is only sent once the whole file's sha1 has been checked: a file
whose bytes changed never reaches its last byte at the server, so nothing is stored.
Setting ``abort`` (Ctrl-C) stops the upload within one block, or at once by shutting the
socket down.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import queue
import re
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Mapping

import aiohttp

from ...env_proxy import proxy_for
from ...errors import FileChangedError, IntegrityError, UploadFailedError
from ...store import LocalFile
from .retry import TransientError

BLOCK_SIZE = 1024 * 1024
READ_AHEAD = 4  # blocks read and hashed ahead of the sender
TIMEOUT_SEC = 300.0
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})  # of a PUT to the store
_S3_CODE = re.compile(r"<Code>([^<]{1,100})</Code>")
_S3_MESSAGE = re.compile(r"<Message>([^<]{1,300})</Message>")


class UploadAborted(UploadFailedError):
    """Raised inside the upload thread when the daemon stops during an upload."""


class PutResult:
    def __init__(self, status: int, body: str) -> None:
        self.status = status
        self.body = body


class HashedBlocks:
    """The blocks of a file, read and hashed by a reader thread ahead of their consumer.

    Iterating yields views of reused buffers; a view is valid until the next one is
    asked for. The block that completes the file is yielded only after the whole file's
    sha1 matched; otherwise the iteration raises IntegrityError (FileChangedError if the
    file became shorter) before it.
    """

    def __init__(self, path: str, local: LocalFile, abort: threading.Event) -> None:
        self._path = path
        self._local = local
        self._abort = abort
        self._free: queue.Queue[int] = queue.Queue()
        self._ready: queue.Queue[tuple[int, int] | BaseException] = queue.Queue()
        self._buffers = [bytearray(BLOCK_SIZE) for _ in range(min(
            READ_AHEAD + 1, max(1, -(-local.size // BLOCK_SIZE))))]
        for i in range(len(self._buffers)):
            self._free.put(i)
        self._closed = threading.Event()
        self._reader: threading.Thread | None = None
        self._first: tuple[int, int] | BaseException | None = None

    def start(self) -> None:
        """Start reading; wait until the first block is hashed (for an empty file: check the
        digest), so that a small file whose bytes changed is caught before any request."""
        if self._local.size == 0:
            check_digest(hashlib.sha1(), self._local)
            return
        self._reader = threading.Thread(target=self._read_ahead, name="upload-reader",
                                        daemon=True)
        self._reader.start()
        first = self._ready.get()
        if isinstance(first, BaseException):
            try:  # not kept by self or this frame: its traceback holds the frames that hold
                raise first  # self and the buffers, and a reference back would make a cycle
            finally:  # that only the cyclic collector frees (refused uploads' buffers
                del first  # stayed in memory for minutes)
        self._first = first

    def _read_ahead(self) -> None:
        digest = hashlib.sha1()
        remaining = self._local.size
        try:
            with open(self._path, "rb", buffering=0) as f:
                while remaining > 0:
                    index = self._take_free()
                    if index < 0:
                        return
                    view = memoryview(self._buffers[index])[:min(BLOCK_SIZE, remaining)]
                    n = f.readinto(view)
                    if not n:
                        raise FileChangedError(f"{self._local.path} became shorter while being "
                                               "uploaded; link it again")
                    digest.update(view[:n])
                    remaining -= n
                    if remaining == 0:
                        check_digest(digest, self._local)
                    self._ready.put((index, n))
        except BaseException as exc:
            self._ready.put(exc)

    def _take_free(self) -> int:
        while not self._closed.is_set():
            try:
                return self._free.get(timeout=0.2)
            except queue.Empty:
                continue
        return -1

    def __iter__(self) -> Iterator[memoryview]:
        delivered = 0
        previous = -1
        while delivered < self._local.size:
            if self._abort.is_set():
                raise UploadAborted("the resource daemon stopped during the upload")
            item = self._first or self._ready.get()
            self._first = None
            if previous >= 0:
                self._free.put(previous)
            if isinstance(item, BaseException):
                try:  # not kept by this frame (see start)
                    raise item
                finally:
                    del item
            previous, n = item
            delivered += n
            yield memoryview(self._buffers[previous])[:n]

    def close(self) -> None:
        """Stop the reader thread (the request ended, one way or another)."""
        self._closed.set()
        if self._reader is not None:
            self._reader.join()


def check_digest(digest: hashlib._Hash, local: LocalFile) -> None:
    actual = digest.hexdigest()
    if actual != local.sha1:
        raise IntegrityError(
            f"file changed: {local.path} no longer hashes to {local.sha1} "
            f"(its bytes hash to {actual}); nothing was stored — link or store it again"
        )


def open_connection(url: str) -> tuple[http.client.HTTPConnection, str]:
    """A connection for ``url`` (through HTTP(S)_PROXY when the environment sets one)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UploadFailedError(f"the gateway gave an upload URL that is not http(s): {url[:100]}")
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    proxy = proxy_for(url)
    context = ssl.create_default_context()
    if proxy:
        p = urllib.parse.urlsplit(proxy)
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

    def __init__(self, url: str, local: LocalFile, progress: Callable[[int], None],
                 headers: Mapping[str, str] | None = None) -> None:
        self.url = url
        self.local = local
        self.progress = progress
        self.headers = dict(headers or {})
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
        conn, target = open_connection(self.url)
        self._conn = conn
        blocks = HashedBlocks(str(self.local.path), self.local, self._abort)
        try:
            try:
                blocks.start()
                conn.putrequest("PUT", target, skip_accept_encoding=True)
                conn.putheader("Content-Length", str(self.local.size))
                for name, value in self.headers.items():
                    conn.putheader(name, value)
                conn.endheaders()
                last = 0
                for block in blocks:
                    if last:
                        self.progress(last)
                    assert conn.sock is not None
                    conn.sock.sendall(block)
                    last = len(block)
                resp = conn.getresponse()
                text = resp.read(64 * 1024).decode("utf-8", "replace")
            finally:
                blocks.close()
            if last and 200 <= resp.status < 300:
                self.progress(last)  # the last block counts once the server has it all
            return PutResult(resp.status, text)
        except (http.client.HTTPException, OSError) as exc:
            if self._abort.is_set():
                raise UploadAborted("the resource daemon stopped during the upload") from exc
            raise
        finally:
            conn.close()


def check_put_status(status: int, body: str) -> None:
    """Nothing for a 2xx answer to a PUT; TransientError when retrying may cure it;
    otherwise UploadFailedError (an S3 error document shown by its code and message)."""
    if not 200 <= status < 300:
        code, said = _S3_CODE.search(body), _S3_MESSAGE.search(body)
        if code:  # an S3 error document: its code and message, not the XML
            body = code.group(1) + (f": {said.group(1)}" if said else "")
        message = f"upload PUT answered {status}: {body[:300]}"
        if status in TRANSIENT_STATUSES:
            raise TransientError(message)
        raise UploadFailedError(message, status)


async def put_bytes(session: aiohttp.ClientSession, url: str, data: bytes,
                    headers: Mapping[str, str] | None = None) -> None:
    """One PUT of ``data`` (already checked) on the event loop: keep-alive, no thread.
    TransientError / UploadFailedError as :func:`check_put_status` says."""
    try:
        async with session.put(url, data=data, headers=dict(headers or {}),
                               timeout=aiohttp.ClientTimeout(total=120),
                               proxy=proxy_for(url)) as resp:
            text = await resp.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise TransientError(f"upload PUT failed: {exc!r}") from exc
    check_put_status(resp.status, text)
