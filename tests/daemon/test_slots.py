"""Poll slots (``poller.polling.slots``): fixed, or following rate × duration with ``auto``."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from factories import T0

import poller.polling.slots as slots_module
from poller.polling.slots import (
    ADAPT_SECONDS,
    AUTO_MAX,
    AUTO_MIN,
    HEADROOM,
    MARGIN,
    SLOW_FACTOR,
    Slots,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def loop_never_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The polls here run on a virtual clock, but how late a poll handed a slot resumes is
    the real event loop's lag: on a loaded machine (a CI worker beside three others) 2,048
    waiting futures can take over :data:`~poller.polling.slots.BUSY_SECONDS` to resume and
    stop ``auto`` growing. Only the test of that rule sees it (it sets its own threshold)."""
    monkeypatch.setattr(slots_module, "BUSY_SECONDS", math.inf)


class Clock:
    """A virtual clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


async def hold(slots: Slots, clock: Clock, wanted: int, seconds: float,
               duration: Callable[[int], float] = lambda in_use: 0.1, step: float = 0.01) -> None:
    """For ``seconds`` of the clock, ``wanted`` polls want a slot at all times (those beyond
    the limit wait); each holds its slot ``duration(slots held when it got it)`` seconds, then
    another takes its place. Then all end."""
    now = 0.0
    ends: list[float] = []  # when each poll holding a slot ends

    async def poll() -> None:
        await slots.take()
        ends.append(now + duration(slots.in_use))

    takers = [asyncio.ensure_future(poll()) for _ in range(wanted)]
    await asyncio.sleep(0)
    for _ in range(round(seconds / step)):
        now += step
        clock.advance(step)
        for end in [end for end in ends if end <= now]:
            ends.remove(end)
            slots.release()  # one poll ends, another starts: the limit is looked at
            takers.append(asyncio.ensure_future(poll()))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    for taker in takers:
        taker.cancel()
    await asyncio.gather(*takers, return_exceptions=True)
    while slots.in_use:
        slots.release()


async def test_a_fixed_number_never_changes_and_waiters_go_first_in_first_out() -> None:
    clock = Clock()
    slots = Slots(2, clock)
    await slots.take()
    await slots.take()
    order: list[int] = []

    async def waiter(n: int) -> None:
        await slots.take()
        order.append(n)

    tasks = [asyncio.ensure_future(waiter(n)) for n in range(3)]
    await asyncio.sleep(0)
    assert slots.waiting == 3
    clock.advance(100)
    slots.release()
    slots.release()
    await asyncio.sleep(0)
    assert (order, slots.limit, slots.in_use) == ([0, 1], 2, 2)
    tasks[2].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert (slots.waiting, slots.in_use) == (0, 2)  # cancelled while waiting: nothing held


async def test_cancelled_after_being_handed_a_slot_gives_it_back() -> None:
    slots = Slots(1, Clock())
    await slots.take()
    waiter = asyncio.ensure_future(slots.take())
    await asyncio.sleep(0)
    slots.release()  # handed to the waiter ...
    waiter.cancel()  # ... which is cancelled before it runs
    await asyncio.gather(waiter, return_exceptions=True)
    assert slots.in_use == 0
    await slots.take()
    assert slots.in_use == 1


async def test_auto_grows_while_polls_wait_for_slots_up_to_the_cap() -> None:
    """Saturated (more polls than slots), ``auto`` grows by half a period, never past the
    cap; the polls waiting are let in as it grows."""
    clock = Clock()
    slots = Slots(None, clock)
    assert slots.limit == AUTO_MIN
    limits = []
    for _ in range(12):
        await hold(slots, clock, 2 * AUTO_MAX, ADAPT_SECONDS * 1.01)
        limits.append(slots.limit)
    assert limits[0] == math.ceil(AUTO_MIN * HEADROOM) + MARGIN
    assert limits == sorted(limits)
    assert limits[-1] == AUTO_MAX


async def test_auto_settles_at_what_the_schedule_needs_and_comes_back_down() -> None:
    """120 polls in flight on average (1,000 a second × 120 ms): about 1.5 × that; with
    nothing to do, back to the minimum."""
    clock = Clock()
    slots = Slots(None, clock)
    for _ in range(10):
        await hold(slots, clock, 120, ADAPT_SECONDS * 1.01)
    assert slots.limit == pytest.approx(120 * HEADROOM + MARGIN, abs=3)
    for _ in range(20):
        await hold(slots, clock, 1, ADAPT_SECONDS * 1.01)
    assert slots.limit == AUTO_MIN


async def test_a_fixed_number_does_not_adapt() -> None:
    clock = Clock()
    slots = Slots(5, clock)
    for _ in range(5):
        await hold(slots, clock, 50, ADAPT_SECONDS * 1.01)
    assert slots.limit == 5


async def test_auto_does_not_grow_while_the_event_loop_is_busy(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Polls handed a slot resuming late (here: any lag counts as late) mean the CPU is the
    limit: saturated or not, the slots stay as they are."""
    monkeypatch.setattr(slots_module, "BUSY_SECONDS", -1.0)
    clock = Clock()
    slots = Slots(None, clock)
    for _ in range(5):
        await hold(slots, clock, 2 * AUTO_MAX, ADAPT_SECONDS * 1.01)
    assert slots.limit == AUTO_MIN


async def test_auto_does_not_grow_while_polls_take_longer_the_more_run() -> None:
    """A server that answers 320 polls a second however many are sent (a poll takes 0.1 s
    with up to 32 at once, longer with more): once a period's polls take over
    ``SLOW_FACTOR`` x the shortest recent period's, the slots stop growing, saturated as it is
    (grown on, they held a connection and its buffers each for nothing: 478 slots, 185 MB)."""
    clock = Clock()
    slots = Slots(None, clock)
    limits = []
    for _ in range(10):
        await hold(slots, clock, 2 * AUTO_MAX, ADAPT_SECONDS * 1.01,
                   duration=lambda in_use: 0.1 * max(1.0, in_use / AUTO_MIN))
        limits.append(slots.limit)
    assert slots.slow
    assert limits[-1] == limits[3] < 3 * AUTO_MIN
    assert 0.1 * limits[-1] / AUTO_MIN > SLOW_FACTOR * 0.1  # held where polls got slow
