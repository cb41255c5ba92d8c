"""Announcing the resource to the zone's gateway, so that its findFile asks us on a miss.

While the daemon is connected to its proxy it calls ``announceResource`` (signed with its
client keys, like every gateway call) with its resource URL ``PROXY_URL/r/NAME``, and
renews it every ``renewSec`` the gateway answers (a third of the announcement's
lifetime); when the daemon stops it withdraws it, so the gateway stops asking at once. A gateway whose ``/api/info`` does not list ``announceResource`` is left
alone (it cannot take announcements; clients then need ``KACHERY_RESOURCE_URL``). A
refusal that retrying cannot cure (no upload right, unknown zone) is logged once and
ends the announcing; the daemon goes on serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ..errors import GatewayError
from .uploads.gateway import DaemonGateway, GatewayRefused
from .uploads.retry import TransientError

log = logging.getLogger("kachery_resource.daemon")

RETRY_SEC = 5.0
WITHDRAW_TIMEOUT_SEC = 3.0
MIN_RENEW_SEC = 0.5
MAX_RENEW_SEC = 600.0


class Announcer:
    """Keeps one resource URL announced while ``connected`` is set."""

    def __init__(self, gateway: DaemonGateway, resource_url: str, connected: asyncio.Event) -> None:
        self.gateway = gateway
        self.resource_url = resource_url
        self.connected = connected
        self.announced = 0  # how many announcements the gateway accepted
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run :meth:`run` in the background until :meth:`stop`."""
        self._task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        """Stop announcing and withdraw the announcement (if any; a failure is one line)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if not self.announced:
            return
        try:
            await asyncio.wait_for(self.gateway.call({
                "type": "withdrawResource", "zone": self.gateway.zone,
                "resourceUrl": self.resource_url}), WITHDRAW_TIMEOUT_SEC)
            log.info("withdrew %s from the gateway", self.resource_url)
        except (TransientError, GatewayError, TimeoutError) as exc:
            log.warning("could not withdraw the announcement (%s); the gateway drops it when "
                        "it expires", exc)

    async def offered(self) -> bool:
        """Answer whether the gateway takes announcements (asks again while unreachable)."""
        while True:
            try:
                info = await self.gateway.info()
            except TransientError as exc:
                log.debug("cannot ask the gateway whether it takes announcements: %s", exc)
                await asyncio.sleep(RETRY_SEC)
                continue
            types = info.get("requestTypes")
            return isinstance(types, list) and "announceResource" in types

    async def run(self) -> None:
        """Announce and renew until cancelled, or until the gateway refuses for good."""
        if not await self.offered():
            log.info("the gateway %s takes no resource announcements; clients there need "
                     "KACHERY_RESOURCE_URL=%s", self.gateway.url, self.resource_url)
            return
        while True:
            await self.connected.wait()
            try:
                renew = await self.announce()
            except TransientError as exc:
                log.warning("announcing to the gateway failed (%s); retrying in %g s", exc, RETRY_SEC)
                renew = RETRY_SEC
            except GatewayRefused as exc:
                if not is_final(exc):
                    log.warning("the gateway did not list this resource this time (%s); retrying "
                                "in %g s", exc, RETRY_SEC)
                    renew = RETRY_SEC
                else:
                    log.error("the gateway refused to list this resource, so its findFile will "
                              "not ask it for files (clients can still use KACHERY_RESOURCE_URL): "
                              "%s", exc)
                    return
            except GatewayError as exc:  # e.g. an answer that is not JSON: try again later
                log.warning("announcing to the gateway failed (%s); retrying in %g s", exc, RETRY_SEC)
                renew = RETRY_SEC
            await asyncio.sleep(renew)

    async def announce(self) -> float:
        """One announcement; returns the seconds until the next."""
        answer = await self.gateway.call({"type": "announceResource", "zone": self.gateway.zone,
                                          "resourceUrl": self.resource_url})
        if self.announced == 0:
            log.info("announced %s to the gateway: its findFile asks this resource for files "
                     "it lacks", self.resource_url)
        self.announced += 1
        renew = answer.get("renewSec")
        if not isinstance(renew, int | float) or isinstance(renew, bool):
            renew = 30.0
        return float(min(max(renew, MIN_RENEW_SEC), MAX_RENEW_SEC))


def is_final(refusal: GatewayRefused) -> bool:
    """Whether retrying cannot cure ``refusal``: a 4xx (not registered, no upload right,
    unknown zone, a URL it does not take), except a conflict with another daemon's live
    announcement (409) or a full zone (429), which can clear."""
    status = refusal.status or 0
    return 400 <= status < 500 and status not in (408, 409, 429)
