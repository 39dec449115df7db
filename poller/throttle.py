"""Per-account request pacing: a token bucket, and pauses after 429 and 401 / 403.

Both are pure state machines with the time passed in (no clock, no sleeping): the poller asks
them what to do at a moment and does the waiting itself.

* :class:`TokenBucket` holds up to ``capacity`` tokens refilled at ``rate_per_second``; each
  request takes one. ``reserve(now, max_wait_seconds)`` books the next token and says how long
  to wait before using it, or refuses (books nothing) when the wait would be too long.
* :class:`AccountGate` is one account's bucket plus its pause: a 429 pauses the account until
  the provider's ``Retry-After``; an auth failure pauses it for a long while and is reported
  once per episode (until a poll succeeds again).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from poller.model import require_utc


class TokenBucket:
    """A token bucket with reservations: ``rate_per_second`` tokens a second, ``capacity`` max.

    The bucket starts full. Reserving may drive the balance below zero: the debt is the queue
    of requests already promised a future slot, so waits grow by ``1 / rate`` per reservation.
    """

    def __init__(self, rate_per_second: float, now: datetime, capacity: float | None = None
                 ) -> None:
        if rate_per_second <= 0:
            raise ValueError(f"rate_per_second must be positive, got {rate_per_second}")
        require_utc(now, "now")
        self.rate_per_second = rate_per_second
        self.capacity = capacity if capacity is not None else max(1.0, rate_per_second)
        if self.capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {self.capacity}")
        self._tokens = self.capacity
        self._updated = now

    def _refill(self, now: datetime) -> None:
        elapsed = (now - self._updated).total_seconds()
        if elapsed > 0:  # a clock that stands still or steps back adds nothing
            self._tokens = min(self.capacity, self._tokens + elapsed * self.rate_per_second)
            self._updated = now

    def tokens(self, now: datetime) -> float:
        """Tokens available at ``now`` (negative while reservations are queued)."""
        self._refill(now)
        return self._tokens

    def wait_seconds(self, now: datetime) -> float:
        """How long until a token would be free, without booking it."""
        self._refill(now)
        return max(0.0, (1.0 - self._tokens) / self.rate_per_second)

    def reserve(self, now: datetime, max_wait_seconds: float = float("inf")) -> float | None:
        """Book a token; the seconds to wait before using it, or ``None`` (nothing booked) when
        that would be longer than ``max_wait_seconds``."""
        wait = self.wait_seconds(now)
        if wait > max_wait_seconds:
            return None
        self._tokens -= 1.0
        return wait


@dataclass(slots=True)
class AccountGate:
    """One account's pacing: its token bucket and whether it is paused, until when and why."""

    bucket: TokenBucket
    paused_until: datetime | None = None
    pause_reason: str | None = None
    """``rate_limited`` or ``auth`` while paused."""
    auth_failing: bool = field(default=False)
    """True from an auth failure until the next successful poll of the account."""

    def is_paused(self, now: datetime) -> bool:
        """Whether requests must wait at ``now``."""
        return self.paused_until is not None and now < self.paused_until

    def pause(self, now: datetime, seconds: float, reason: str) -> datetime:
        """Pause until ``now + seconds`` (never shortening a longer pause); the pause's end."""
        until = now + timedelta(seconds=max(seconds, 0.0))
        if self.paused_until is None or until > self.paused_until:
            self.paused_until = until
            self.pause_reason = reason
        return self.paused_until

    def auth_failed(self, now: datetime, seconds: float) -> bool:
        """Pause after a refused credential; True only for the first failure of an episode
        (the one to report loudly)."""
        self.pause(now, seconds, "auth")
        first = not self.auth_failing
        self.auth_failing = True
        return first

    def succeeded(self) -> None:
        """A poll of the account worked: a later auth failure is a new episode."""
        self.auth_failing = False
