"""Poll slots: how many polls may be in flight at once, fixed or following latency.

The polls in flight a schedule needs are its rate × the duration of a poll (Little's law): at an
80 ms round trip, 1,000 polls a second (10,000 targets every 10 s) need about 120 in flight, at
5 ms a handful. The provider rate limits (each account's token bucket) are what paces requests;
the slots only bound how many polls run at once, so they must not be the limit themselves.

* ``polling.concurrency = N``: :class:`Slots` holds exactly ``N``;
* ``polling.concurrency = "auto"`` (the default): the number follows what is measured. The
  slots held are integrated over time (slot-seconds), and about every :data:`ADAPT_SECONDS`
  the limit becomes ``ceil(occupancy × HEADROOM) + MARGIN`` (occupancy: slots held on
  average, i.e. polls started per second × their duration), at least the current limit when a
  poll had to wait for a slot meanwhile (so a schedule the slots hold back grows them by half
  each period), and falling by at most a fifth per period; always within
  [:data:`AUTO_MIN`, :data:`AUTO_MAX`]. State is a handful of numbers: nothing per target.
  It does **not** grow while the event loop is busy (a poll handed a slot took more than
  :data:`BUSY_SECONDS` on average to resume): polls that are slow because the CPU is the
  limit need no more slots, and more would only hold more memory. Nor while polls are slow
  (TCP Vegas's rule): a period's mean poll duration above :data:`SLOW_FACTOR` × the shortest
  of the last :data:`BASE_PERIODS` periods' means. Polls that take longer as more run at once
  queue somewhere (the provider's server, the network, this CPU): more slots would not poll
  more, they would load a struggling server harder and hold a connection and its buffers each
  (10,000 targets due at once against a saturated simulator grew to 478 slots and 185 MB).

A limit lowered below the slots held takes effect as they are given back.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable
from datetime import datetime

from poller.config.settings import AUTO_MAX_SLOTS

AUTO_MIN = 32
"""The fewest slots ``auto`` keeps (the old fixed default)."""
AUTO_MAX = AUTO_MAX_SLOTS
"""The most slots ``auto`` grows to; also each account's connection limit with ``auto``."""
HEADROOM = 1.5
"""Slots over the occupancy measured: room for bursts and for latency to grow."""
MARGIN = 8
ADAPT_SECONDS = 1.0
"""How often (at most) the ``auto`` limit is recomputed."""
BUSY_SECONDS = 0.025
"""A poll handed a slot resuming this late on average (event-loop lag): the CPU is the limit."""
SLOW_FACTOR = 2.0
"""A period's mean poll duration over this × the base (the shortest recent one): polls queue."""
BASE_PERIODS = 60
"""How many periods the base duration is the shortest of (a lasting change of latency is
learnt after as many)."""
BASE_SAMPLE = 16
"""Periods with fewer polls ended say too little of the duration to count towards the base."""


class Slots:
    """A counting semaphore whose limit may change (see the module docstring)."""

    def __init__(self, concurrency: int | None, clock: Callable[[], datetime]) -> None:
        if concurrency is not None and concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.fixed = concurrency
        """The configured number of slots; ``None``: ``auto``."""
        self.limit = concurrency if concurrency is not None else AUTO_MIN
        """Slots there are now."""
        self.in_use = 0
        """Slots held now."""
        self._clock = clock
        self._waiters: deque[asyncio.Future[float]] = deque()
        """Polls waiting for a slot; each is handed the loop time it got one."""
        self._since = self._changed = clock()
        self._area = 0.0
        """Slot-seconds held since ``_since``."""
        self._waited = False
        """A poll waited for a slot since ``_since``."""
        self._lag = 0.0
        self._resumed = 0
        """Seconds polls handed a slot took to resume since ``_since``, and how many."""
        self._ended = 0
        """Slots given back since ``_since``."""
        self._durations: deque[float] = deque(maxlen=BASE_PERIODS)
        """The mean poll duration of each recent period with enough polls (the base)."""
        self.slow = False
        """The last period's polls took over :data:`SLOW_FACTOR` × the base."""

    @property
    def waiting(self) -> int:
        """Polls waiting for a slot now."""
        return sum(1 for future in self._waiters if not future.done())

    def carry_over(self, old: Slots) -> None:
        """Start from ``old``'s limit (a reload) when both are ``auto``."""
        if self.fixed is None and old.fixed is None:
            self.limit = old.limit

    async def take(self) -> None:
        """Take a slot, waiting for one to be free (cancelled meanwhile: nothing held)."""
        if self.in_use < self.limit and not self._waiters:
            self._count(+1)
            self._wake()  # the limit may have grown just now
            return
        self._waited = True
        loop = asyncio.get_running_loop()
        future: asyncio.Future[float] = loop.create_future()
        self._waiters.append(future)
        try:
            granted = await future
            self._lag += loop.time() - granted
            self._resumed += 1
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # handed a slot, then cancelled
                self.release()
            elif future in self._waiters:
                self._waiters.remove(future)
            raise

    def release(self) -> None:
        """Give a slot back (to the longest waiting poll, if the limit allows)."""
        self._count(-1)
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_use < self.limit:
            future = self._waiters.popleft()
            if not future.done():
                self._count(+1)  # the slot passes to the waiter
                future.set_result(future.get_loop().time())

    def _count(self, delta: int) -> None:
        now = self._clock()
        held = (now - self._changed).total_seconds()
        if held > 0:  # a clock that stands still or steps back adds nothing
            self._area += self.in_use * held
            self._changed = now
        self.in_use += delta
        if delta < 0:
            self._ended += 1
        window = (now - self._since).total_seconds()
        if self.fixed is None and window >= ADAPT_SECONDS:
            self._measure_duration()
            self._adapt(self._area / window)
            self._since, self._area, self._waited = now, 0.0, False
            self._lag, self._resumed, self._ended = 0.0, 0, 0

    def _measure_duration(self) -> None:
        """Set :attr:`slow` from this period's mean duration (slot-seconds / slots given back,
        Little's law) against the base, then count it towards the base."""
        if self._ended < BASE_SAMPLE:
            self.slow = False
            return
        duration = self._area / self._ended
        self.slow = bool(self._durations) and duration > SLOW_FACTOR * min(self._durations)
        self._durations.append(duration)

    def _adapt(self, occupancy: float) -> None:
        target = math.ceil(occupancy * HEADROOM) + MARGIN
        if self._waited:
            target = max(target, self.limit)
        else:
            target = max(target, math.floor(self.limit * 0.8))
        if self.busy or self.slow:
            target = min(target, self.limit)
        self.limit = min(AUTO_MAX, max(AUTO_MIN, target))

    @property
    def busy(self) -> bool:
        """Whether polls handed a slot lately resumed late on average (the loop is busy)."""
        return self._resumed > 0 and self._lag / self._resumed > BUSY_SECONDS
