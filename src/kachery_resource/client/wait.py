"""Waiting for the resource: back-to-back long waits until the daemon has uploaded a file.

The daemon holds each request until the upload completes or the wait ends, so the
download starts the moment the file is in the bucket — no fixed sleeps. With an overall
``timeout``, a resource that is offline (no daemon, or its daemon restarting) is waited
for, said once, until the time runs out; without one, offline is an immediate error.
"""

from __future__ import annotations

import logging
import time

from ..errors import (
    FileNotFoundOnResource,
    GatewayError,
    ResourceOfflineError,
    TimeoutError_,
    UploadFailedError,
)
from ..messages import UploadState, UploadStatus
from .gateway import FoundFile, GatewayClient
from .progress import Progress
from .resource import Busy, ResourceClient

log = logging.getLogger("kachery_resource.client")

#: a daemon answering faster than this while still busy is not holding requests; pace it
MIN_ROUND_SEC = 0.2
#: consecutive "no answer in time" (504) replies before the daemon is declared offline
MAX_UNANSWERED = 3
#: pauses before re-asking the gateway after the daemon reported completion
FIND_RETRY_DELAYS = (0.05, 0.2, 0.5, 1.0)
#: pauses between asks while the resource is offline (the last one repeats)
OFFLINE_DELAYS = (0.25, 0.5, 1.0, 2.0)
#: time left under which an offline resource is no longer waited for
OFFLINE_MARGIN_SEC = 0.1


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


def ask(resource: ResourceClient, sha1: str, wait: float, deadline: Deadline,
        *, wait_offline: bool = True) -> UploadStatus:
    """One answer from the daemon, riding out 429s, 504s and (with a timeout and
    ``wait_offline``) spells when the resource is offline."""
    offline: ResourceOfflineError | None = None
    tries = 0
    while True:
        try:
            return _ask_once(resource, sha1, wait, deadline)
        except ResourceOfflineError as exc:
            left = deadline.remaining()
            if left is None or not wait_offline:
                raise
            if offline is None:
                log.warning("%s; waiting up to %g s for it to come back", exc, deadline.timeout)
            offline = exc
            if left <= OFFLINE_MARGIN_SEC:
                raise ResourceOfflineError(
                    f"resource {resource.name!r} did not come back within the {deadline.timeout:g} s "
                    f"timeout: {exc}", status=exc.status,
                ) from exc
        time.sleep(min(OFFLINE_DELAYS[min(tries, len(OFFLINE_DELAYS) - 1)], left - OFFLINE_MARGIN_SEC))
        tries += 1


def _ask_once(resource: ResourceClient, sha1: str, wait: float, deadline: Deadline) -> UploadStatus:
    unanswered = 0
    while True:
        check_deadline(deadline, sha1, None)
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


def wait_until_uploaded(
    resource: ResourceClient, sha1: str, deadline: Deadline, progress: Progress, wait: float
) -> UploadStatus:
    """Ask until the daemon reports ``completed``; raise on not-found, error or timeout."""
    while True:
        started = time.monotonic()
        status = ask(resource, sha1, wait, deadline)
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
        check_deadline(deadline, sha1, status)
        spent = time.monotonic() - started
        if spent < MIN_ROUND_SEC:
            time.sleep(deadline.cap(MIN_ROUND_SEC - spent))


def check_deadline(deadline: Deadline, sha1: str, status: UploadStatus | None) -> None:
    """Raise TimeoutError_ (with the last status) once the deadline has passed."""
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


def find_after_upload(gateway: GatewayClient, resource: ResourceClient, sha1: str) -> FoundFile:
    """The gateway's answer once the daemon says it uploaded (a short grace for caches)."""
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
