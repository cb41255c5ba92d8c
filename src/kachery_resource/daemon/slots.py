"""The daemon's upload slots: at most ``n`` uploads at once, urgent waiters first.

Chunk uploads (a reader waits on them) are urgent; whole-file uploads are not. Within each
class waiters are served first come, first served, like the ``asyncio.Semaphore`` this
replaces.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator


class Slots:
    """``n`` slots; :meth:`hold` waits for one (urgent waiters before the others)."""

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError("there must be at least one upload slot")
        self._free = n
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._normal: deque[asyncio.Future[None]] = deque()

    def locked(self) -> bool:
        """Whether a new holder would have to wait."""
        return self._free == 0 or bool(self._urgent or self._normal)

    @property
    def urgent_waiting(self) -> int:
        return sum(not f.done() for f in self._urgent)

    @contextlib.asynccontextmanager
    async def hold(self, urgent: bool = False) -> AsyncIterator[None]:
        await self._acquire(urgent)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, urgent: bool) -> None:
        if not self.locked():
            self._free -= 1
            return
        queue = self._urgent if urgent else self._normal
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # handed a slot, then cancelled: pass it on
                self._release()
            else:
                with contextlib.suppress(ValueError):
                    queue.remove(fut)
            raise

    def _release(self) -> None:
        for queue in (self._urgent, self._normal):
            while queue:
                fut = queue.popleft()
                if not fut.done():
                    fut.set_result(None)
                    return
        self._free += 1
