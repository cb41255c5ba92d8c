"""``load_file`` and ``request_file``: local store → zone gateway → resource daemon.

The resource loop sends back-to-back long waits: the daemon holds each request until
the upload completes or the wait ends, so the download starts the moment the file is
in the bucket — no fixed sleeps. Every download is sha1-checked before it is cached.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import requests

from ..errors import (
    FileChangedError,
    FileNotFoundOnResource,
    GatewayError,
    ResourceOfflineError,
    StoreError,
    TimeoutError_,
    UploadFailedError,
)
from ..messages import UploadState, UploadStatus
from ..store import LocalStore
from ..uri import parse_uri
from .download import download_verified
from .gateway import FoundFile, GatewayClient
from .progress import LineProgress, Progress, RichProgress, make_progress
from .resource import Busy, ResourceClient
from .settings import ClientSettings

log = logging.getLogger("kachery_resource.client")

#: inner wait per resource request when nobody watches a progress bar (proxy clamps at 25 s)
LONG_WAIT_SEC = 20.0
#: inner wait while a progress bar is shown, so bytesUploaded refreshes often
PROGRESS_WAIT_SEC = 2.0
#: a daemon answering faster than this while still busy is not holding requests; pace it
MIN_ROUND_SEC = 0.2
#: consecutive "no answer in time" (504) replies before the daemon is declared offline
MAX_UNANSWERED = 3
#: pauses before re-asking the gateway after the daemon reported completion
FIND_RETRY_DELAYS = (0.05, 0.2, 0.5, 1.0)


class Deadline:
    """An optional overall time limit."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self._end = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float | None:
        return None if self._end is None else self._end - time.monotonic()

    def cap(self, seconds: float) -> float:
        left = self.remaining()
        return seconds if left is None else max(0.0, min(seconds, left))

    def expired(self) -> bool:
        left = self.remaining()
        return left is not None and left <= 0


@dataclass(frozen=True)
class RequestResult:
    """Where a file stands, without downloading it (``kachery-resource request``)."""

    uri: str
    #: "local" (in $KACHERY_CLOUD_DIR), "bucket" (the gateway has it), "resource"
    #: (the daemon answered) or None (nobody was asked: no KACHERY_RESOURCE_URL)
    source: str | None
    #: a fileUpload status: not-found, queued, running, completed, error
    status: str
    size: int | None = None
    bytesUploaded: int | None = None
    error: str | None = None
    path: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None or k == "source"}


def load_file(
    uri: str,
    dest: str | Path | None = None,
    *,
    timeout: float | None = None,
    progress: bool | Progress | None = None,
    settings: ClientSettings | None = None,
    poll_wait: float | None = None,
) -> str:
    """Return a local path holding the bytes of ``uri``.

    ``uri`` is ``sha1://<40 hex>`` or ``kachery:<zone>:sha1:<40 hex>[:label]``; a zone in
    the URI is used instead of ``KACHERY_ZONE``.

    Looks in the local store, then asks the zone gateway, then (if
    ``KACHERY_RESOURCE_URL`` is set) asks the resource daemon to upload it and waits.
    With ``dest`` the file is also copied there and ``dest`` is returned.
    ``timeout`` (seconds, default none) bounds the wait for the resource's upload; the
    download that follows is not cut off. ``progress``: True/False,
    a :class:`Progress`, or None for bars only on a terminal.

    Raises FileNotFoundOnResource, ResourceOfflineError, UploadFailedError,
    TimeoutError_, GatewayError, IntegrityError, InvalidUriError, KeysError, ConfigError (a
    malformed KACHERY_RESOURCE_URL).
    """
    sha1, settings = _parse(uri, settings)
    deadline = Deadline(timeout)
    store = LocalStore(settings.store_dir)
    local = _resolve_local(store, sha1)
    if local is not None:
        return _deliver(local, dest)
    reporter = make_progress(progress, sha1[:10])
    wait = poll_wait if poll_wait is not None else (
        PROGRESS_WAIT_SEC if isinstance(reporter, RichProgress | LineProgress) else LONG_WAIT_SEC
    )
    with requests.Session() as session, closing(reporter):
        gateway = GatewayClient(session, settings.gateway_url, settings.zone, settings.keys)
        found = gateway.find_file(sha1)
        if found is None:
            resource = _resource_or_raise(session, settings, sha1, gateway)
            _wait_until_uploaded(resource, sha1, deadline, reporter, wait)
            found = _find_after_upload(gateway, resource, sha1)
        path = download_verified(session, found.url, sha1, store, reporter, found.size)
    return _deliver(path, dest)


def request_file(
    uri: str, *, wait: float = 1.0, settings: ClientSettings | None = None
) -> RequestResult:
    """Where ``uri`` stands; asks the resource to upload it if it is nowhere yet.

    ``wait``: how long the daemon may hold the request for the upload to complete
    (it answers at once when the outcome is final: completed, not-found, error). With 0
    a daemon may answer ``queued`` before it has even looked for the file.
    Never downloads. Raises ResourceOfflineError, GatewayError, TimeoutError_, ConfigError.
    """
    sha1, settings = _parse(uri, settings)
    canonical = f"sha1://{sha1}"
    local = _resolve_local(LocalStore(settings.store_dir), sha1)
    if local is not None:
        return RequestResult(canonical, "local", UploadState.COMPLETED.value,
                             size=local.stat().st_size, path=str(local))
    with requests.Session() as session:
        gateway = GatewayClient(session, settings.gateway_url, settings.zone, settings.keys)
        found = gateway.find_file(sha1)
        if found is not None:
            return RequestResult(canonical, "bucket", UploadState.COMPLETED.value, size=found.size)
        if not settings.resource_url:
            return RequestResult(canonical, None, UploadState.NOT_FOUND.value)
        resource = ResourceClient(session, settings.resource_url, settings.zone)
        status = _ask(resource, sha1, wait, Deadline(wait + 30))
    return RequestResult(canonical, "resource", status.status.value, size=status.size,
                         bytesUploaded=status.bytesUploaded, error=status.error)


# -- steps ----------------------------------------------------------------------------
def _parse(uri: str, settings: ClientSettings | None) -> tuple[str, ClientSettings]:
    """The sha1 of ``uri`` and the settings to fetch it with: a zone in the URI wins."""
    parsed = parse_uri(uri)
    settings = settings or ClientSettings.from_env()
    if parsed.zone is not None and parsed.zone != settings.zone:
        settings = dataclasses.replace(settings, zone=parsed.zone)
    return parsed.sha1, settings


def _resolve_local(store: LocalStore, sha1: str) -> Path | None:
    try:
        found = store.resolve(sha1)
    except FileChangedError as exc:
        log.warning("ignoring a stale local link: %s", exc)
        return None
    return None if found is None else found.path


def _deliver(path: Path, dest: str | Path | None) -> str:
    if dest is None:
        return str(path)
    dest = Path(dest)
    if dest.resolve() != path.resolve():
        try:
            shutil.copyfile(path, dest)
        except OSError as exc:
            raise StoreError(f"cannot copy the file to {dest}: {exc.strerror or exc}") from exc
    return str(dest)


def _resource_or_raise(
    session: requests.Session, settings: ClientSettings, sha1: str, gateway: GatewayClient
) -> ResourceClient:
    if not settings.resource_url:
        raise FileNotFoundOnResource(
            f"sha1://{sha1} is not in zone {settings.zone!r} at {gateway.url}, and "
            "KACHERY_RESOURCE_URL is not set, so no resource was asked to upload it"
        )
    return ResourceClient(session, settings.resource_url, settings.zone)


def _ask(resource: ResourceClient, sha1: str, wait: float, deadline: Deadline) -> UploadStatus:
    """One answer from the daemon, riding out 429s and up to MAX_UNANSWERED 504s."""
    unanswered = 0
    while True:
        _check_deadline(deadline, sha1, None)
        try:
            left = deadline.remaining()
            return resource.request_upload(
                f"sha1://{sha1}", deadline.cap(wait), None if left is None else left + 1.0
            )
        except Busy as busy:
            if busy.retry_after == 0:
                unanswered += 1
                if unanswered >= MAX_UNANSWERED:
                    raise ResourceOfflineError(
                        f"resource {resource.name!r} is connected to the proxy but has not "
                        f"answered {unanswered} requests in a row; its daemon may be stuck"
                    ) from busy
            time.sleep(deadline.cap(busy.retry_after))


def _wait_until_uploaded(
    resource: ResourceClient, sha1: str, deadline: Deadline, progress: Progress, wait: float
) -> UploadStatus:
    while True:
        started = time.monotonic()
        status = _ask(resource, sha1, wait, deadline)
        state = status.status
        if state is UploadState.COMPLETED:
            progress.upload(status)
            return status
        if state is UploadState.NOT_FOUND:
            raise FileNotFoundOnResource(
                f"sha1://{sha1} is neither in the zone's bucket nor on resource {resource.name!r}"
            )
        if state is UploadState.ERROR:
            raise UploadFailedError(
                f"resource {resource.name!r} could not upload sha1://{sha1}: "
                f"{status.error or 'no reason given'}"
            )
        progress.upload(status)
        _check_deadline(deadline, sha1, status)
        spent = time.monotonic() - started
        if spent < MIN_ROUND_SEC:
            time.sleep(deadline.cap(MIN_ROUND_SEC - spent))


def _check_deadline(deadline: Deadline, sha1: str, status: UploadStatus | None) -> None:
    if not deadline.expired():
        return
    where = ""
    if status is not None:
        where = f" (last status: {status.status.value}"
        if status.size is not None:
            where += f", {status.bytesUploaded or 0} of {status.size} bytes uploaded"
        where += ")"
    raise TimeoutError_(
        f"sha1://{sha1} was not ready within {deadline.timeout:g} s{where}; "
        "try again later or allow more time (--timeout)"
    )


def _find_after_upload(gateway: GatewayClient, resource: ResourceClient, sha1: str) -> FoundFile:
    for delay in (0.0, *FIND_RETRY_DELAYS):
        time.sleep(delay)
        found = gateway.find_file(sha1)
        if found is not None:
            return found
    raise GatewayError(
        f"resource {resource.name!r} reported sha1://{sha1} uploaded, but the gateway at "
        f"{gateway.url} (zone {gateway.zone!r}) does not have it; the daemon probably uses a "
        "different gateway or zone — compare its KACHERY_GATEWAY_URL and KACHERY_ZONE with yours"
    )
