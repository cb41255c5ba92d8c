"""On demand: a findFile that misses asks the zone's resources to upload the file.

:meth:`OnDemand.find_or_fetch` is the one entry point (every findFile handler calls it
after a miss). It sends the v1 ``fileUpload`` request — exactly what kachery-cloud sends
to ``KACHERY_RESOURCE_URL`` — to every live resource of the zone at once, over HTTP
through their proxies (:mod:`.resource_asker`), long-polling until one answers
``completed`` and the file is in the bucket under its content key (only our verified
finalize puts it there). It answers True then, and False when every resource said it
lacks the file, when nothing happened within the zone's ``onDemandWaitSec`` (the upload
goes on; a retry finds it), or at once when on-demand cannot help.

Cheap under load: one flight per (zone, hash) however many findFiles wait on it (so one
request per resource per hash); a bounded negative cache of hashes every resource said
it lacks; at most ``onDemandMaxInFlight`` flights per zone, further misses wait their turn
within their own ``onDemandWaitSec`` (a bounded queue, :mod:`.flight_slots`).
A daemon's own findFile (its client id announced a resource of the zone) never triggers
one: it is checking the bucket before an upload it is about to make.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from . import keys
from .announcements import all_announcements
from .flight_slots import FlightSlots
from .metrics import GatewayMetrics
from .requestlog import note
from .resource_asker import ResourceAsker
from .settings import GatewaySettings
from .zones import Zone

log = logging.getLogger("kachery_resource.gateway")

NEGATIVE_CACHE_SIZE = 10000


@dataclass(frozen=True)
class Resource:
    """A resource URL the zone asks, and where the gateway learned it."""

    url: str
    source: str  # "announced" or "config"
    client_id: str = ""


@dataclass
class Flight:
    """One on-demand fetch of one hash in one zone, shared by every findFile waiting on it."""

    zone: Zone
    sha1: str
    deadline: float  # loop time
    result: asyncio.Future[str | None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class OnDemand:
    """The on-demand fetches of every zone of one gateway instance."""

    def __init__(self, settings: GatewaySettings, metrics: GatewayMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or GatewayMetrics()
        self._asker = ResourceAsker(self.metrics)
        self._flights: dict[tuple[str, str], Flight] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._negative: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._resources: dict[str, tuple[float, list[Resource]]] = {}
        self._reading: dict[str, asyncio.Future[list[Resource]]] = {}
        self._slots = FlightSlots()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._asker.close()

    async def resources(self, zone: Zone) -> list[Resource]:
        """The zone's live resources: announced (not expired) and listed in the zones file."""
        cached = self._resources.get(zone.name)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        reading = self._reading.get(zone.name)
        if reading is None:  # one read of the storage however many lookups wait for it
            reading = asyncio.ensure_future(self._read_resources(zone))
            self._reading[zone.name] = reading
            reading.add_done_callback(lambda _: self._reading.pop(zone.name, None))
        return await asyncio.shield(reading)

    async def _read_resources(self, zone: Zone) -> list[Resource]:
        found = [Resource(a.resourceUrl, "announced", a.clientId)
                 for a in await all_announcements(zone, prune=True) if a.is_live()]
        urls = {r.url for r in found}
        found += [Resource(url, "config") for url in zone.settings.resources if url not in urls]
        self._resources[zone.name] = (time.monotonic() + self.settings.resources_cache_sec, found)
        return found

    async def find_or_fetch(self, zone: Zone, sha1: str, requester: str | None = None) -> bool:
        """After a findFile miss: answer whether the file is in the bucket now, having
        asked the zone's resources for it (see the module doc)."""
        t0 = time.monotonic()
        try:
            outcome, winner = await self._lookup(zone, sha1, requester)
        except Exception as exc:  # e.g. the storage failed listing resources: a plain miss
            log.warning("on-demand lookup of sha1://%s in zone %s failed: %s: %s", sha1, zone.name,
                        type(exc).__name__, str(exc)[:300])
            outcome, winner = "error", None
        seconds = time.monotonic() - t0
        self.metrics.observe_on_demand(outcome, seconds)
        if outcome not in ("disabled", "no-resources", "skipped"):
            note(sha1=sha1, onDemand=outcome, onDemandMs=round(seconds * 1000, 1),
                 **({"resource": winner} if winner else {}))
        return winner is not None

    async def _lookup(self, zone: Zone, sha1: str, requester: str | None) -> tuple[str, str | None]:
        if not zone.settings.on_demand:
            return "disabled", None
        key = (zone.name, sha1)
        if self._negative_hit(key):
            return "negative-cache", None
        resources = await self.resources(zone)  # cached: cheap for every caller
        if not resources:
            return "no-resources", None
        if requester and any(r.client_id == requester for r in resources):
            return "skipped", None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + zone.settings.on_demand_wait_sec
        flight = self._flights.get(key)
        if flight is None:
            self.metrics.on_demand_queued.inc()
            try:
                slot = await self._slots.acquire(zone.name, zone.settings.on_demand_max_in_flight,
                                                 deadline - loop.time())
            finally:
                self.metrics.on_demand_queued.dec()
            if not slot:
                return "overloaded", None
            flight = self._flights.get(key)  # started, or answered, while this one waited
            if flight is not None or self._negative_hit(key):
                self._slots.release(zone.name)
            else:
                flight = self._start(zone, sha1, resources)
            if flight is None:
                return "negative-cache", None
        self.metrics.on_demand_waiting.inc()
        try:
            winner = await asyncio.wait_for(asyncio.shield(flight.result),
                                            max(0.0, deadline - loop.time()))
        except TimeoutError:  # waited for a slot first: this caller's own wait is over
            return "timeout", None
        finally:
            self.metrics.on_demand_waiting.dec()
        if winner is not None:
            return "hit", winner
        timed_out = loop.time() >= min(flight.deadline, deadline) - 0.05
        return ("timeout" if timed_out else "miss"), None

    def _negative_hit(self, key: tuple[str, str]) -> bool:
        expires = self._negative.get(key)
        if expires is None:
            return False
        if expires > time.monotonic():
            return True
        del self._negative[key]
        return False

    def _start(self, zone: Zone, sha1: str, resources: list[Resource]) -> Flight:
        loop = asyncio.get_running_loop()
        flight = Flight(zone, sha1, loop.time() + zone.settings.on_demand_wait_sec)
        key = (zone.name, sha1)
        self._flights[key] = flight

        async def fly() -> None:
            winner: str | None = None
            try:
                winner, answers = await self._fly(flight, resources)
                if winner is None and answers and all(a == "not-found" for a in answers):
                    self._remember_miss(key)
            except Exception as exc:  # one line: a lookup failure is a miss
                log.warning("on-demand fetch of sha1://%s in zone %s failed: %s: %s", sha1,
                            zone.name, type(exc).__name__, exc)
            finally:
                self._flights.pop(key, None)
                self._slots.release(zone.name)
                if not flight.result.done():  # also when cancelled at shutdown
                    flight.result.set_result(winner)

        task = asyncio.create_task(fly())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return flight

    def _remember_miss(self, key: tuple[str, str]) -> None:
        if self.settings.negative_cache_sec <= 0:
            return
        self._negative[key] = time.monotonic() + self.settings.negative_cache_sec
        self._negative.move_to_end(key)
        while len(self._negative) > NEGATIVE_CACHE_SIZE:
            self._negative.popitem(last=False)

    async def _fly(self, flight: Flight, resources: list[Resource]) -> tuple[str | None, list[str]]:
        """Ask every resource at once; the first verified upload wins."""
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        reachable = [r for r in resources if self._asker.reachable(r.url, now)]
        pending = {asyncio.create_task(self._asker.ask(r.url, flight.zone.name, flight.sha1,
                                                        flight.deadline)): r for r in reachable}
        answers: list[str] = ["unavailable"] * (len(resources) - len(reachable))
        try:
            while pending:
                done, _ = await asyncio.wait(pending, timeout=max(0.0, flight.deadline - loop.time()),
                                             return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    answers.append("timeout")
                    return None, answers
                for task in done:
                    resource = pending.pop(task)
                    answer = task.result()
                    if answer == "uploaded" and await self._in_bucket(flight):
                        return resource.url, answers
                    if answer == "uploaded":
                        log.warning("resource %s said sha1://%s was uploaded, but it is not in "
                                    "zone %s: does its daemon upload to this gateway and zone?",
                                    resource.url, flight.sha1, flight.zone.name)
                        answer = "error"
                    answers.append(answer)
            return None, answers
        finally:
            for task in pending:
                task.cancel()

    async def _in_bucket(self, flight: Flight) -> bool:
        key = keys.content_key(flight.zone.prefix, flight.sha1)
        return await flight.zone.storage.size_of(key) is not None
