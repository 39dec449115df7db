"""Pacing in one place: poll slots over all accounts, each account's request rate and pauses.

Two limits, and an explicit API (no context variables: whoever waits is handed what it waits
with):

* **poll slots**: at most ``polling.concurrency`` polls are in flight at once, over all
  accounts (``auto``: as many as the polls' rate × duration needs, :mod:`poller.polling.slots`);
* **each account's gate** (:class:`AccountGate`): a token bucket (``requests_per_second``: every
  HTTP request of the account takes one token, list pages and OAuth2 token requests included)
  and a pause (after a 429 until the provider's ``Retry-After``; after a 401 / 403 for a long
  while, reported once per episode).

:class:`TokenBucket` and :class:`AccountGate` are pure state machines with the time passed in;
:class:`Pacer` does the waiting:

* ``await pacer.acquire(gate, provider, max_wait_seconds=…)`` books the token of a poll's first
  request (a poll that would wait longer than that, or whose account is paused, gets a
  :class:`Deferred` instead and is handed back for a later tick), waits for it *without*
  holding a slot, then takes a slot: the :class:`PollSlot` it returns is the poll's **pace**,
  handed to the provider client, which awaits it before each request. The first request uses
  the token booked for it; a later one (participant pages, an OAuth2 token) books its own and,
  while it waits, gives the slot back, so a slow account never holds slots other accounts
  could use. A request sent holding a lock other polls wait on (``holding_lock=True``: the
  OAuth2 token fetch) keeps the slot while it waits: polls taking it meanwhile would wait on
  that lock, and this one for the slot. The poll gives its slot back with
  :meth:`PollSlot.release` (in a ``finally``).
* ``pacer.pace(gate, provider)`` is the pace of requests outside a poll (discovery, list
  polling): each takes a token and waits for it; no slot.

Every wait for a token is reported to the observer (``poller_rate_limit_waits``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from poller.model import require_utc
from poller.polling.slots import Slots
from poller.providers.http import Pace

Clock = Callable[[], datetime]
"""The current aware-UTC time (``poller.model.utc_now``; tests pass a virtual clock)."""
Sleep = Callable[[float], Awaitable[None]]
"""Waits that many seconds (``asyncio.sleep``; tests pass one that advances a virtual clock)."""


class WaitObserver(Protocol):
    """Told every wait for a token (``poller.daemon.metrics.PollerMetrics`` is one)."""

    def observe_rate_limit_wait(self, provider: str, seconds: float) -> None:
        """A request to ``provider`` waited ``seconds`` for its account's token bucket."""


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


@dataclass(frozen=True, slots=True)
class Deferred:
    """A claimed target not polled now (its account is paused or out of tokens): hand it back,
    due again ``until``."""

    until: datetime


class Pacer:
    """The poll slots of one poller, and the waiting for accounts' tokens (module docstring)."""

    def __init__(self, concurrency: int | None, *, clock: Clock, sleep: Sleep,
                 observer: WaitObserver | None = None) -> None:
        self.clock = clock
        self.sleep = sleep
        self.observer = observer
        self.slots = Slots(concurrency, clock)
        """The poll slots (``concurrency`` of them; ``None``: ``auto``)."""

    @property
    def slots_in_use(self) -> int:
        """Slots held now (for tests and measurements)."""
        return self.slots.in_use

    async def acquire(self, gate: AccountGate, provider: str, *, max_wait_seconds: float
                      ) -> PollSlot | Deferred:
        """A slot for one poll of ``gate``'s account, its first token booked and waited for;
        or :class:`Deferred` (nothing held, nothing booked) when the account is paused or the
        token is more than ``max_wait_seconds`` away."""
        now = self.clock()
        if gate.is_paused(now) and gate.paused_until is not None:
            return Deferred(gate.paused_until)
        wait = gate.bucket.reserve(now, max_wait_seconds)
        if wait is None:
            return Deferred(now + timedelta(seconds=gate.bucket.wait_seconds(now)))
        if wait > 0:
            await self._wait(provider, wait)
        slot = PollSlot(self, gate, provider)
        await slot.take()
        return slot

    def pace(self, gate: AccountGate, provider: str) -> Pace:
        """The pace of requests outside a poll: each waits for its own token, holding no slot."""
        async def pace(*, holding_lock: bool = False) -> None:
            wait = gate.bucket.reserve(self.clock())
            if wait:
                await self._wait(provider, wait)
        return pace

    async def _wait(self, provider: str, seconds: float) -> None:
        if self.observer is not None:
            self.observer.observe_rate_limit_wait(provider, seconds)
        await self.sleep(seconds)


class PollSlot:
    """One poll's slot and the pace of its requests (see the module docstring)."""

    def __init__(self, pacer: Pacer, gate: AccountGate, provider: str) -> None:
        self._pacer = pacer
        self._gate = gate
        self._provider = provider
        self._prepaid = True
        """The token of the poll's first request was booked before the slot was taken."""
        self.held = False
        """The poll holds one of the pacer's slots."""

    async def __call__(self, *, holding_lock: bool = False) -> None:
        """Return when the poll may send its next request (see the module docstring)."""
        if self._prepaid:
            self._prepaid = False
            return
        pacer = self._pacer
        wait = self._gate.bucket.reserve(pacer.clock())
        if not wait:
            return
        if not self.held or holding_lock:
            await pacer._wait(self._provider, wait)
            return
        self.release()
        await pacer._wait(self._provider, wait)
        await self.take()

    async def take(self) -> None:
        """Take a slot, waiting for one to be free (cancelled meanwhile: nothing held)."""
        await self._pacer.slots.take()
        self.held = True

    def release(self) -> None:
        """Give the slot back, if held (safe to call more than once)."""
        if self.held:
            self.held = False
            self._pacer.slots.release()
