"""How many on-demand flights a zone runs at once, and the short queue in front of them.

A zone runs at most ``limit`` flights at once. A miss that finds them all busy waits its
turn (first come, first served) for as long as it may wait anyway, instead of being told
"not found" for a file a resource has: bursts are common (a notebook opening a hundred
files) and flights are mostly short. Only when ``QUEUE_FACTOR`` × ``limit`` misses already
wait is a miss turned away at once, so a flood cannot pile up unbounded requests.

A freed slot is handed to the first waiter directly, so a newcomer cannot take it first
and a waiter that gives up (its deadline passed, its client went away) passes it on.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

QUEUE_FACTOR = 4  # misses that may wait for a slot, per slot


@dataclass
class _Zone:
    busy: int = 0
    limit: int = 1  # as last asked (a zones file reloaded may change it)
    queue: deque[asyncio.Future[None]] = field(default_factory=deque)


class FlightSlots:
    """Slots per zone; :meth:`acquire` then exactly one :meth:`release` per slot."""

    def __init__(self) -> None:
        self._zones: dict[str, _Zone] = {}

    def busy(self, zone: str) -> int:
        return self._zones[zone].busy if zone in self._zones else 0

    def queued(self, zone: str) -> int:
        return len(self._zones[zone].queue) if zone in self._zones else 0

    async def acquire(self, zone: str, limit: int, timeout: float) -> bool:
        """Take a slot, waiting up to ``timeout`` s behind earlier waiters; False when none
        came in time or the queue is full."""
        z = self._zones.setdefault(zone, _Zone())
        z.limit = limit
        if z.busy < limit and not z.queue:
            z.busy += 1
            return True
        if len(z.queue) >= QUEUE_FACTOR * limit or timeout <= 0:
            return False
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        z.queue.append(turn)
        try:
            await asyncio.wait_for(asyncio.shield(turn), timeout)
            return True
        except TimeoutError:
            self._give_up(zone, z, turn)
            return False
        except asyncio.CancelledError:  # the findFile's client went away
            self._give_up(zone, z, turn)
            raise

    def _give_up(self, zone: str, z: _Zone, turn: asyncio.Future[None]) -> None:
        if turn.done():
            self.release(zone)  # handed over just as the waiter gave up: pass it on
        else:
            turn.cancel()
            z.queue.remove(turn)

    def release(self, zone: str) -> None:
        """Give a slot back: to the first waiter, or free (also while more are busy than a
        lowered limit allows)."""
        z = self._zones[zone]
        while z.queue and z.busy <= z.limit:
            turn = z.queue.popleft()
            if not turn.done():
                turn.set_result(None)  # the slot passes to it; busy stays
                return
        z.busy -= 1
        if z.busy == 0:
            del self._zones[zone]
