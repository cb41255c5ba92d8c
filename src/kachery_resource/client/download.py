"""Download a bucket object into the local store: resumable, streamed, sha1-checked.

The bytes go to ``<store>/tmp/downloads/<sha1>`` first. A download cut short leaves that
partial file behind; the next attempt (in this call, or a later run) asks only for the
rest with an HTTP ``Range`` and hashes the whole file at the end, so a broken connection
costs only what had not arrived. The file enters the store only when its sha1 matches.
A ``sink`` sees every byte in order as it arrives (``cat`` writes them to stdout).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import requests

from ..errors import GatewayError, IntegrityError, StoreError
from ..store import LocalStore
from .progress import Progress, format_bytes

CHUNK_SIZE = 1024 * 1024
#: bytes read from the network at a time: small enough that a streamed body flows
#: steadily and that a broken connection loses little of what was in flight
NET_CHUNK_SIZE = 64 * 1024
#: attempts in one call when the connection drops while bytes are still arriving
MAX_ATTEMPTS = 4

Sink = Callable[[bytes], None]


class _Interrupted(Exception):
    """The body stopped before its end; what arrived is kept."""


def partial_path(store: LocalStore, sha1: str) -> Path:
    """Where the bytes of ``sha1`` collect until they are verified."""
    return store.root / "tmp" / "downloads" / sha1


def download_verified(
    session: requests.Session,
    url: str,
    sha1: str,
    store: LocalStore,
    progress: Progress,
    size: int | None = None,
    timeout: float = 60,
    sink: Sink | None = None,
) -> Path:
    """GET ``url`` into ``store`` under ``sha1``, resuming a partial file left before.

    Raises IntegrityError if the whole file does not hash to ``sha1`` (nothing is cached
    and the partial file is removed), GatewayError if the bucket refuses or the
    connection breaks ``MAX_ATTEMPTS`` times (the partial file stays for the next run).
    """
    job: _Download | None = None
    try:
        with _claim(store, sha1) as (path, f):
            job = _Download(session, url, sha1, f, sink, progress, timeout)
            _run(job, size)
            return _commit(job, store, path)
    except OSError as exc:
        if job is not None and job.sink_failed:
            raise  # the sink's own failure (a closed pipe): the caller's to handle
        raise StoreError(
            f"cannot write the download of sha1://{sha1} under {store.root}: {exc.strerror or exc}"
        ) from exc


def _run(job: _Download, size: int | None) -> None:
    """Replay what is kept, then fetch the rest, riding out broken connections."""
    job.replay(size)
    if size is not None and job.f.tell() == size:
        return  # all there already: only the hash is left to check
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            job.fetch()
            return
        except _Interrupted as exc:
            if attempt == MAX_ATTEMPTS:
                raise GatewayError(
                    f"the download of sha1://{job.sha1} broke off {attempt} times ({exc}); "
                    f"{format_bytes(job.f.tell())} are kept, run the command again to resume"
                ) from exc


def _commit(job: _Download, store: LocalStore, path: Path) -> Path:
    """Move the verified file into the store; IntegrityError (and drop it) if it is wrong."""
    job.f.flush()
    actual = job.digest.hexdigest()
    if actual != job.sha1:
        path.unlink(missing_ok=True)
        raise IntegrityError(f"downloaded bytes hash to {actual}, not {job.sha1}; nothing was cached")
    dest = store.copy_path(job.sha1)
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, dest)
    if job.sink is not None and job.passed_on.hexdigest() != job.sha1:
        raise IntegrityError(
            f"the bytes passed on for sha1://{job.sha1} were wrong (a stale partial download); "
            "the file is now cached correctly, run the command again"
        )
    return dest


@contextlib.contextmanager
def _claim(store: LocalStore, sha1: str) -> Iterator[tuple[Path, BinaryIO]]:
    """The partial file, locked; a private one if another process is downloading it."""
    path = partial_path(store, sha1)
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "ab+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        path = path.with_name(f"{sha1}.{secrets.token_hex(4)}")
        f = open(path, "ab+")
    try:
        yield path, f
    finally:
        f.close()
        if path.name != sha1:
            path.unlink(missing_ok=True)


class _Download:
    """One file's bytes: the partial file, its running sha1, and what the sink has seen."""

    def __init__(self, session: requests.Session, url: str, sha1: str, f: BinaryIO,
                 sink: Sink | None, progress: Progress, timeout: float) -> None:
        self.session, self.url, self.sha1, self.f = session, url, sha1, f
        self.sink, self.progress, self.timeout = sink, progress, timeout
        self.digest = hashlib.sha1()
        #: bytes already passed to the sink and counted by the progress, and their sha1
        self.sent = 0
        self.passed_on = hashlib.sha1()
        #: whether an exception came from the sink (not from our own files)
        self.sink_failed = False

    def replay(self, size: int | None) -> None:
        """Hash (and pass on) the bytes an earlier attempt left."""
        self.progress.download_started(size)
        self.f.seek(0, os.SEEK_END)
        if size is not None and self.f.tell() > size:
            self.f.truncate(0)
        self.f.seek(0)
        while chunk := self.f.read(CHUNK_SIZE):
            self.digest.update(chunk)
            self._emit(chunk)

    def fetch(self) -> None:
        """GET the rest of the file (a Range from what is there) and append it."""
        have = self.f.tell()
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            resp = self.session.get(self.url, stream=True, timeout=(10, self.timeout),
                                    headers=headers)
        except requests.RequestException as exc:
            if have:
                raise _Interrupted(str(exc)) from exc
            raise GatewayError(f"cannot download sha1://{self.sha1} from the bucket: {exc}") from exc
        with resp:
            code = resp.status_code
            if code == 200 and have:
                self._restart()  # a bucket that ignores ranges: the whole body follows
            elif code == 416 or (code == 206 and not _continues_at(resp, have)):
                self._restart()  # the kept bytes do not fit this object
                raise _Interrupted(f"the bucket answered HTTP {code} to a range; starting over")
            elif code not in (200, 206):
                raise GatewayError(
                    f"the bucket answered HTTP {code} for sha1://{self.sha1} "
                    "although the gateway listed it; try again, or tell the zone admin",
                    status=code,
                )
            self._append(resp)

    def _restart(self) -> None:
        self.f.seek(0)
        self.f.truncate()
        self.digest = hashlib.sha1()

    def _append(self, resp: requests.Response) -> None:
        try:
            for chunk in resp.iter_content(chunk_size=NET_CHUNK_SIZE):
                self.f.write(chunk)
                self.digest.update(chunk)
                self._emit(chunk)
        except requests.RequestException as exc:
            self.f.flush()
            raise _Interrupted(str(exc)) from exc

    def _emit(self, chunk: bytes) -> None:
        """Pass on the part of ``chunk`` (just written at the end) not passed on before."""
        end = self.f.tell()
        new = end - max(self.sent, end - len(chunk))
        if new <= 0:
            return
        if self.sink is not None:
            part = chunk[len(chunk) - new:]
            self.passed_on.update(part)
            try:
                self.sink(part)
            except BaseException:
                self.sink_failed = True
                raise
        self.progress.downloaded(new)
        self.sent = end


def _continues_at(resp: requests.Response, offset: int) -> bool:
    """Whether the 206 ``resp`` has a body that starts at ``offset``."""
    value = resp.headers.get("Content-Range", "")
    return value.startswith(f"bytes {offset}-")
