"""The simulator's clocks: every timeline is read at "now" as one of these tells it.

Two implementations of the ``Clock`` protocol:

* ``VirtualClock`` — stands still until a test moves it (``advance``, ``set``); deterministic,
  the clock tests and benchmarks use;
* ``WallClock`` — follows real time, optionally faster (``speed=60`` plays an hour a minute),
  the clock ``poller simulate`` uses for demos.

The simulator only ever asks a clock for ``now()``; scenario times are kept as integer
milliseconds after the scenario epoch, and ``Clock.now`` is turned into that scale once per
request.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from poller.model import require_utc

DEFAULT_VIRTUAL_START = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
"""Where a ``VirtualClock`` starts unless told otherwise (fixed, so truth is reproducible)."""


@runtime_checkable
class Clock(Protocol):
    """Something that says what time it is in the simulated world (aware UTC)."""

    def now(self) -> datetime:
        """The current simulated time."""
        ...


class VirtualClock:
    """A clock that only moves when told to. Tests advance it to replay a scenario."""

    def __init__(self, start: datetime = DEFAULT_VIRTUAL_START) -> None:
        require_utc(start, "VirtualClock.start")
        self._now = start

    def now(self) -> datetime:
        """The current simulated time."""
        return self._now

    def advance(self, seconds: float) -> datetime:
        """Move forward by ``seconds`` (never backwards) and return the new time."""
        if seconds < 0:
            raise ValueError(f"a VirtualClock cannot go backwards ({seconds} s)")
        self._now += timedelta(seconds=seconds)
        return self._now

    def set(self, moment: datetime) -> None:
        """Jump to ``moment`` (aware UTC; may be earlier, to query the past)."""
        require_utc(moment, "VirtualClock.set")
        self._now = moment

    def __repr__(self) -> str:
        return f"VirtualClock({self._now.isoformat()})"


class WallClock:
    """Real time, scaled: ``speed`` simulated seconds pass per real second.

    Simulated time starts at ``start`` (default: the real time of construction) and is derived
    from ``time.monotonic`` so it never jumps when the system clock is adjusted.
    """

    def __init__(self, speed: float = 1.0, start: datetime | None = None) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        require_utc(start, "WallClock.start")
        self.speed = speed
        self._start = start if start is not None else datetime.now(UTC)
        self._monotonic_start = time.monotonic()

    def now(self) -> datetime:
        """The current simulated time."""
        elapsed_seconds = (time.monotonic() - self._monotonic_start) * self.speed
        return self._start + timedelta(seconds=elapsed_seconds)

    def __repr__(self) -> str:
        return f"WallClock(speed={self.speed}, start={self._start.isoformat()})"
