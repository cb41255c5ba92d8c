"""Flight slots: a cap per zone, a bounded first-come-first-served queue, nothing lost when
a waiter gives up."""

from __future__ import annotations

import asyncio
import contextlib

from kachery_resource.gateway.flight_slots import QUEUE_FACTOR, FlightSlots


async def test_under_the_limit_a_slot_is_taken_at_once() -> None:
    slots = FlightSlots()
    assert await slots.acquire("z", 2, 0) and await slots.acquire("z", 2, 0)
    assert not await slots.acquire("z", 2, 0)  # full, and no time to wait
    assert await slots.acquire("other", 2, 0)  # zones are counted apart
    assert slots.busy("z") == 2
    for zone in ("z", "z", "other"):
        slots.release(zone)
    assert slots.busy("z") == 0 and slots.busy("other") == 0


async def test_waiters_are_served_in_order() -> None:
    slots = FlightSlots()
    assert await slots.acquire("z", 1, 0)
    order: list[int] = []

    async def wait(i: int) -> None:
        assert await slots.acquire("z", 1, 5)
        order.append(i)
    tasks = []
    for i in range(3):
        tasks.append(asyncio.ensure_future(wait(i)))
        await asyncio.sleep(0)
    assert slots.queued("z") == 3
    for expected in range(3):
        slots.release("z")
        await asyncio.sleep(0.01)
        assert order == list(range(expected + 1))
    # a newcomer does not jump the queue while someone waits: the slot went to waiter 2
    assert slots.busy("z") == 1 and not await slots.acquire("z", 1, 0)
    slots.release("z")
    assert slots.busy("z") == 0
    await asyncio.gather(*tasks)


async def test_the_queue_is_bounded() -> None:
    slots = FlightSlots()
    assert await slots.acquire("z", 1, 0)
    waiters = [asyncio.ensure_future(slots.acquire("z", 1, 5)) for _ in range(QUEUE_FACTOR)]
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert not await slots.acquire("z", 1, 5)  # turned away at once
    assert loop.time() - t0 < 0.1
    for _ in range(QUEUE_FACTOR + 1):
        slots.release("z")
        await asyncio.sleep(0)
    assert all(await asyncio.gather(*waiters))
    assert slots.busy("z") == 0


async def test_a_waiter_that_times_out_leaves_the_queue() -> None:
    slots = FlightSlots()
    assert await slots.acquire("z", 1, 0)
    assert not await slots.acquire("z", 1, 0.05)
    assert slots.queued("z") == 0
    slots.release("z")
    assert slots.busy("z") == 0


async def test_a_cancelled_waiter_passes_a_slot_it_was_handed_on() -> None:
    slots = FlightSlots()
    assert await slots.acquire("z", 1, 0)
    first = asyncio.ensure_future(slots.acquire("z", 1, 5))
    second = asyncio.ensure_future(slots.acquire("z", 1, 5))
    await asyncio.sleep(0)
    slots.release("z")  # handed to the first ...
    first.cancel()  # ... which gives up before it runs again
    try:
        if await first:  # Python 3.11's wait_for may let the slot win over the cancel
            slots.release("z")  # then the first owns it, and gives it back
    except asyncio.CancelledError:
        pass  # or it passed the slot on itself
    assert await asyncio.wait_for(second, 1)  # either way the slot was not lost
    slots.release("z")
    assert slots.busy("z") == 0 and slots.queued("z") == 0


async def test_a_cancelled_waiter_that_had_no_slot_takes_none() -> None:
    slots = FlightSlots()
    assert await slots.acquire("z", 1, 0)
    waiter = asyncio.ensure_future(slots.acquire("z", 1, 5))
    await asyncio.sleep(0)
    waiter.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiter
    assert slots.queued("z") == 0
    slots.release("z")
    assert slots.busy("z") == 0


async def test_a_lowered_limit_holds_back_waiters_until_below_it() -> None:
    slots = FlightSlots()
    for _ in range(3):
        assert await slots.acquire("z", 3, 0)
    waiter = asyncio.ensure_future(slots.acquire("z", 1, 5))  # the zone's limit is now 1
    await asyncio.sleep(0)
    slots.release("z")
    slots.release("z")  # 3 -> 1 busy: nothing handed over while above the limit
    await asyncio.sleep(0.01)
    assert not waiter.done() and slots.busy("z") == 1
    slots.release("z")  # the last one: the waiter's turn
    assert await asyncio.wait_for(waiter, 1)
    assert slots.busy("z") == 1
    slots.release("z")
    assert slots.busy("z") == 0
