"""The one retry policy of the upload layer: exponential backoff with jitter.

Every retried step (a gateway call, a whole single upload, one multipart part) raises
:class:`TransientError` for a failure worth trying again and anything else to stop; the
waits start at ``FIRST_DELAY_SEC``, double, and stop growing at ``MAX_DELAY_SEC``; each
wait is jittered down to half so that many uploads failing together do not retry together.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ...errors import UploadFailedError

log = logging.getLogger("kachery_resource.daemon")

FIRST_DELAY_SEC = 0.5
MAX_DELAY_SEC = 30.0
GATEWAY_TRIES = 4  # gateway calls: waits of at most 0.5 + 1 + 2 s
T = TypeVar("T")


class TransientError(Exception):
    """A failure worth retrying (network trouble, overloaded server)."""


async def with_retries(what: str, attempt: Callable[[], Awaitable[T]],
                       tries: int = GATEWAY_TRIES, hint: str = "") -> T:
    """Run ``attempt``; on TransientError wait (exponential, jittered) and try again.

    After ``tries`` failed attempts: UploadFailedError naming ``what``, the last failure,
    and ``hint`` (what the reader can do about it)."""
    delay = FIRST_DELAY_SEC
    for n in range(1, tries + 1):
        try:
            return await attempt()
        except TransientError as exc:
            if n == tries:
                raise UploadFailedError(f"{what} failed after {tries} tries: {exc}{hint}") from exc
            log.warning("%s: %s; retrying in %.1f s", what, exc, delay)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, MAX_DELAY_SEC)
    raise AssertionError("unreachable")
