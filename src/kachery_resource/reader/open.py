"""``open(uri)``: find the file's bytes (local store, bucket, resource) and read them lazily.

Where the bytes come from is chosen here, once, as a range source:

1. the local store ($KACHERY_CLOUD_DIR): read in place;
2. the zone's bucket (``findFile``): range requests on the signed URL;
3. the resource ($KACHERY_RESOURCE_URL): when its proxy routes ``fileRanges``, the daemon
   uploads just the chunks each read needs (:class:`.chunk_source.ChunkSource`,
   docs/design-chunks.md); otherwise (an older proxy or daemon, a gateway without
   chunks, remembered per resource for the session) the daemon is asked to upload the
   whole file (as ``load_file`` does), then the bucket is read as in 2.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import requests

from ..client import ClientSettings
from ..client.gateway import FoundFile, GatewayClient
from ..client.progress import NullProgress
from ..client.resource import ResourceClient
from ..client.wait import Deadline, wait_until_uploaded
from ..errors import (
    FileChangedError,
    FileNotFoundOnResource,
    GatewayError,
)
from ..store import LocalStore
from ..uri import parse_uri
from .chunk_source import ChunkSource
from .fetcher import BlockFetcher
from .offers import RangesUnavailable, ranges_offered
from .remote_file import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_CACHE_SIZE,
    DEFAULT_MAX_READAHEAD,
    DEFAULT_MAX_REQUEST,
    DEFAULT_WORKERS,
    RemoteFile,
)
from .source import BucketSource, LocalSource, RangeSource

#: chunks read ahead in a sequential run: each is one the daemon must send
CHUNK_READAHEAD = 16
#: the daemon may hold each upload request this long (the proxy clamps at 25 s)
_UPLOAD_WAIT_SEC = 20.0
#: pauses before re-asking the gateway after the daemon reported the upload complete
_FIND_RETRY_DELAYS = (0.0, 0.05, 0.2, 0.5, 1.0)


def open(
    uri: str,
    *,
    settings: ClientSettings | None = None,
    timeout: float | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    cache_size: int = DEFAULT_CACHE_SIZE,
    max_request: int = DEFAULT_MAX_REQUEST,
    max_readahead: int = DEFAULT_MAX_READAHEAD,
    workers: int = DEFAULT_WORKERS,
) -> RemoteFile:
    """A seekable, read-only binary file of ``uri`` (``sha1://<40 hex>``), read lazily.

    Nothing is downloaded up front: each read fetches the blocks (``block_size`` bytes,
    aligned) it covers with HTTP Range requests, keeps up to ``cache_size`` bytes of them
    in memory, reads ahead on sequential runs once they span a block (up to
    ``max_readahead``, and never more than half the run so far) and fetches large reads
    as several ranges (``max_request`` bytes each, ``workers`` at a time). A file the
    daemon sends in chunks reads ahead at most ``CHUNK_READAHEAD`` chunks with two
    workers (the chunk source downloads in parallel itself). Reading
    the whole file checks its sha1. ``timeout`` bounds the wait for a resource that must
    first upload the file. Use it as a context manager, or close it.

    Raises InvalidUriError, FileNotFoundOnResource, GatewayError, ResourceOfflineError,
    UploadFailedError, TimeoutError_; reads raise GatewayError or IntegrityError.
    """
    for name, value in (("block_size", block_size), ("workers", workers)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, not {value}")
    sha1, zone = _parse(uri)
    settings = settings or ClientSettings.from_env()
    if zone is not None and zone != settings.zone:
        settings = dataclasses.replace(settings, zone=zone)
    source = _source(uri, sha1, settings, timeout)
    if isinstance(source, ChunkSource):  # each chunk read ahead is one the daemon must send
        max_readahead = min(max_readahead, CHUNK_READAHEAD * source.chunk_size)
        workers = 2  # a read and its read-ahead at once; each downloads in parallel
    fetcher = BlockFetcher(source, sha1, block_size=block_size,
                           cache_size=max(cache_size, max_readahead + max_request, block_size),
                           max_request=max(max_request, block_size), workers=workers)
    return RemoteFile(fetcher, f"sha1://{sha1}", max_readahead)


def _parse(uri: str) -> tuple[str, str | None]:
    """The sha1 and zone (None: the settings' zone) a URI names; the one place it is parsed."""
    parsed = parse_uri(uri)
    return parsed.sha1, parsed.zone


def _source(uri: str, sha1: str, settings: ClientSettings, timeout: float | None) -> RangeSource:
    name = f"sha1://{sha1}"
    try:
        local = LocalStore(settings.store_dir).resolve(sha1)
    except FileChangedError:
        local = None  # a stale link: read it from the zone instead
    if local is not None:
        return LocalSource(local.path, name)
    session = requests.Session()
    try:
        return _bucket_source(uri, sha1, settings, timeout, session)
    except BaseException:
        session.close()
        raise


def _bucket_source(uri: str, sha1: str, settings: ClientSettings, timeout: float | None,
                   session: requests.Session) -> RangeSource:
    name = f"sha1://{sha1}"
    gateway = GatewayClient(session, settings.gateway_url, settings.zone, settings.keys,
                            api_key=settings.api_key)

    def whole() -> BucketSource:
        return _whole_file_source(uri, sha1, settings, timeout, session, gateway)

    if (settings.resource_url and not settings.api_key
            and ranges_offered(session, settings.resource_url)):
        source = _chunks_or_bucket(uri, sha1, settings, timeout, session, gateway, whole)
        if source is not None:
            return source
    found = gateway.find_file(sha1)
    if found is not None:
        return BucketSource(gateway, sha1, found, gateway_session=session)
    if not settings.resource_url:
        raise FileNotFoundOnResource(
            f"{name} is not in zone {settings.zone!r} at {gateway.url}, and "
            "KACHERY_RESOURCE_URL is not set, so no resource was asked for it")
    return whole()


def _chunks_or_bucket(uri: str, sha1: str, settings: ClientSettings, timeout: float | None,
                      session: requests.Session, gateway: GatewayClient,
                      whole: Callable[[], BucketSource]) -> RangeSource | None:
    """The file through chunks, or from the bucket if it is whole there; None when the
    gateway takes no chunk requests. Asks ``findChunks`` rather than ``findFile``: on a
    miss a gateway's findFile may ask the resource for the whole file (on demand)."""
    try:
        first = gateway.find_chunks(sha1, [0])
    except GatewayError as exc:
        if exc.status in (400, 404):  # a gateway without chunks (or an empty file's list)
            return None
        raise
    if first.get("wholeFile") and isinstance(first.get("url"), str):
        size = first.get("size")
        return BucketSource(gateway, sha1, FoundFile(first["url"], size if isinstance(size, int)
                                                     else None), gateway_session=session)
    assert settings.resource_url is not None
    resource = ResourceClient(session, settings.resource_url, settings.zone)
    try:
        return ChunkSource(uri, sha1, gateway, resource, whole, timeout)
    except RangesUnavailable:
        return whole()


def _whole_file_source(uri: str, sha1: str, settings: ClientSettings, timeout: float | None,
                       session: requests.Session, gateway: GatewayClient) -> BucketSource:
    """Have the resource upload the whole file, then read it from the bucket."""
    _wait_for_upload(session, sha1, settings, timeout)
    for delay in _FIND_RETRY_DELAYS:
        time.sleep(delay)
        found = gateway.find_file(sha1)
        if found is not None:
            return BucketSource(gateway, sha1, found, gateway_session=session)
    raise GatewayError(
        f"the resource reported sha1://{sha1} uploaded, but the gateway at {gateway.url} (zone "
        f"{settings.zone!r}) does not have it; compare the daemon's KACHERY_GATEWAY_URL "
        "and KACHERY_ZONE with yours")


def _wait_for_upload(session: requests.Session, sha1: str, settings: ClientSettings,
                     timeout: float | None) -> None:
    """Ask the resource to upload the whole file and wait until it is in the bucket, as
    load_file does (with ``timeout``, an offline or restarting resource is waited for)."""
    assert settings.resource_url is not None
    resource = ResourceClient(session, settings.resource_url, settings.zone)
    wait_until_uploaded(resource, sha1, Deadline(timeout), NullProgress(), _UPLOAD_WAIT_SEC)
