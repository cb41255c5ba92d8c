"""Where the reader's bytes come from: a *range source* answers "bytes [start, end)".

Every source has a ``size`` and ``read_range``; the reader (``RemoteFile``) knows nothing
else about it. Today there are two: the zone's bucket through a signed URL (HTTP Range
requests, the URL re-asked from the gateway when it expires) and a file in the local
store. A source that asks the resource daemon for the chunks covering a range (a file
not yet in the bucket) plugs in here without changing the reader.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Protocol

import requests

from ..client._http import error_text
from ..client.gateway import FoundFile, GatewayClient
from ..errors import FileNotFoundOnResource, GatewayError, connection_problem
from .sessions import ThreadSessions

#: statuses a bucket answers for an expired or otherwise refused signed URL
_REFUSED = (400, 401, 403)
#: pauses before retrying a range whose connection failed
_RETRY_DELAYS = (0.2, 1.0)


class RangeSource(Protocol):
    """Bytes of one file by range; ``read_range`` may be called from several threads."""

    size: int
    #: what to call the file in messages
    name: str
    #: where its bytes come from and what to do if they are corrupt, for messages
    origin: str

    def read_range(self, start: int, end: int) -> bytes:
        """Exactly the bytes ``[start, end)``, ``0 <= start < end <= size``."""
        ...

    def close(self) -> None: ...


class LocalSource:
    """A file in the local store (a stored copy or a linked file)."""

    def __init__(self, path: Path, name: str) -> None:
        self.name = name
        self.origin = (f"the local file {path}, which changed since it was stored or linked; "
                       "store or link it again, or remove it from the local store")
        self._fd = os.open(path, os.O_RDONLY)
        self.size = os.fstat(self._fd).st_size

    def read_range(self, start: int, end: int) -> bytes:
        return os.pread(self._fd, end - start, start)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class BucketSource:
    """Range GETs on the bucket's signed download URL of ``sha1``.

    A refused URL (expired: 403 from S3 and from the local backend) is replaced by asking
    the gateway's ``findFile`` again, once per failing URL however many threads saw it
    fail, and the range is retried once with the new URL.
    """

    def __init__(self, gateway: GatewayClient, sha1: str, found: FoundFile,
                 timeout: float = 60, gateway_session: requests.Session | None = None) -> None:
        self.name = f"sha1://{sha1}"
        self.origin = (f"zone {gateway.zone!r} at {gateway.url}, whose copy is corrupt; tell the "
                       "zone admin")
        self._gateway = gateway
        self._sha1 = sha1
        self._timeout = timeout
        self._url = found.url
        self._url_lock = threading.Lock()
        #: sessions to close with the source (the gateway's, one per reading thread)
        self._sessions = ThreadSessions(*([gateway_session] if gateway_session else []))
        #: how many times the signed URL was replaced (for tests and diagnostics)
        self.refreshes = 0
        self.size = found.size if found.size is not None else self._probe_size()

    @property
    def url(self) -> str:
        """The signed URL in use."""
        return self._url

    def read_range(self, start: int, end: int) -> bytes:
        url = self._url
        refreshed = False
        attempt = 0
        while True:
            try:
                resp = self._session().get(url, headers={"Range": f"bytes={start}-{end - 1}"},
                                           stream=True, timeout=(10, self._timeout))
                with resp:
                    if resp.status_code in _REFUSED and not refreshed:
                        url, refreshed = self._refresh(url), True
                        continue
                    return self._body(resp, start, end)
            except requests.RequestException as exc:
                if attempt >= len(_RETRY_DELAYS):
                    raise GatewayError(
                        f"cannot read bytes {start}-{end - 1} of {self.name} from the bucket: "
                        f"{connection_problem(exc)}") from exc
                time.sleep(_RETRY_DELAYS[attempt])
                attempt += 1

    def _body(self, resp: requests.Response, start: int, end: int) -> bytes:
        if resp.status_code == 206 and not resp.headers.get("Content-Range", "").startswith(
                f"bytes {start}-{end - 1}/"):
            raise GatewayError(
                f"the bucket answered bytes {start}-{end - 1} of {self.name} with another range "
                f"({resp.headers.get('Content-Range', 'none')[:100]}); try again")
        if resp.status_code == 206 or (resp.status_code == 200 and start == 0 and end == self.size):
            data = resp.raw.read(end - start + 1, decode_content=True)  # one read, no 10 KB pieces
            if len(data) != end - start:
                raise GatewayError(
                    f"the bucket sent {len(data)} bytes for bytes {start}-{end - 1} of {self.name} "
                    f"({end - start} asked); the object may have changed, try again")
            return data
        if resp.status_code == 200:
            raise GatewayError(
                f"the bucket ignored the Range request for {self.name} (HTTP 200); lazy reading "
                "needs a bucket that answers Range requests, use kachery_resource.load_file instead")
        raise GatewayError(
            f"the bucket answered HTTP {resp.status_code} for bytes {start}-{end - 1} of "
            f"{self.name}: {error_text(resp)}", status=resp.status_code)

    def _refresh(self, failed: str) -> str:
        with self._url_lock:
            if self._url != failed:  # another thread already replaced it
                return self._url
            found = self._gateway.find_file(self._sha1)
            if found is None:
                raise FileNotFoundOnResource(
                    f"{self.name} is no longer in zone {self._gateway.zone!r}; it was deleted "
                    "from the bucket while being read")
            self._url = found.url
            self.refreshes += 1
            return self._url

    def _probe_size(self) -> int:
        with self._session().get(self._url, headers={"Range": "bytes=0-0"}, stream=True,
                                 timeout=(10, self._timeout)) as resp:
            total = resp.headers.get("Content-Range", "").rpartition("/")[2]
            if resp.status_code != 206 or not total.isdigit():
                raise GatewayError(f"cannot learn the size of {self.name}: the gateway gave none "
                                   f"and the bucket answered HTTP {resp.status_code}")
            return int(total)

    def _session(self) -> requests.Session:
        return self._sessions.get()

    def close(self) -> None:
        self._sessions.close()
