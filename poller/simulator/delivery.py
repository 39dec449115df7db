"""Pushing the simulated providers' events to a receiver, as the providers do, with faults.

:class:`EventDelivery` watches the simulator's clock: each event of
:func:`poller.simulator.events.conference_events` becomes due when the clock passes its time,
and is POSTed to ``{url}/telnyx/{account}`` or ``{url}/bandwidth/{account}`` (poller's routes):

* Telnyx requests are signed with the simulator's key (``poller.simulator.webhooks``) over the
  real time of sending; Bandwidth's first try has no credentials, and after a ``401`` with
  ``WWW-Authenticate`` the same request is sent again with the Basic credentials.
* A delivery that is not answered 2xx (or not answered) is tried again after ``retry_seconds``
  of real time, doubling each time, up to ``attempts`` tries (about two minutes by default), as
  the providers retry.
* :class:`DeliveryFaults` (seeded): an event may be dropped (never sent), duplicated (sent
  twice), delayed (by up to ``max_delay_seconds`` of simulated time, which reorders it among
  its neighbours), and a forged copy (a bad Telnyx signature, wrong Bandwidth credentials) may
  be sent beside it, which the receiver must refuse.

``stats`` counts what happened, for the proofs.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from poller.model import Provider
from poller.simulator.events import SimEvent, conference_events
from poller.simulator.webhooks import basic_authorization, telnyx_headers
from poller.simulator.world import Simulator


@dataclass(frozen=True, slots=True)
class DeliveryFaults:
    """Per-event probabilities of each delivery fault, and the seed of their draws."""

    drop: float = 0.0
    duplicate: float = 0.0
    delay: float = 0.0
    max_delay_seconds: float = 5.0
    forged: float = 0.0
    seed: int = 0


@dataclass(slots=True)
class _Pending:
    event: SimEvent
    due_ms: int
    forged: bool = False
    attempts: int = 0
    next_try: float = 0.0


@dataclass(slots=True)
class EventDelivery:
    """Delivers every due event of ``sim`` to ``url`` (see the module docstring)."""

    sim: Simulator
    url: str
    accounts: dict[Provider, str]
    faults: DeliveryFaults = field(default_factory=DeliveryFaults)
    attempts: int = 9
    retry_seconds: float = 0.5
    stats: Counter[str] = field(default_factory=Counter)
    delivered: list[SimEvent] = field(default_factory=list)
    """Events answered 2xx (once each, in delivery order)."""
    _events: list[SimEvent] = field(default_factory=list)
    _next: int = 0
    _queue: list[_Pending] = field(default_factory=list)
    _rng: random.Random = field(init=False)
    _order: random.Random = field(init=False)
    """Shuffles sends (apart from ``_rng``, so the faults drawn do not depend on timing)."""

    def __post_init__(self) -> None:
        self._rng = random.Random(self.faults.seed)  # noqa: S311 (reproducible, not secret)
        self._order = random.Random(self.faults.seed + 1)  # noqa: S311
        self._events = sorted((event for provider in self.accounts
                               for timeline in self.sim.timelines(provider)
                               for event in conference_events(self.sim, timeline)),
                              key=lambda event: (event.at_ms, event.key))

    async def run(self, every: float = 0.05) -> None:
        """Deliver what is due, forever (cancel to stop)."""
        async with httpx.AsyncClient(timeout=10) as client:
            while True:
                await self.deliver_due(client)
                await asyncio.sleep(every)

    @property
    def idle(self) -> bool:
        """Whether everything due by now has been delivered (or given up)."""
        return not self._queue and (self._next >= len(self._events)
                                    or self._events[self._next].at_ms > self.sim.now_ms())

    async def deliver_due(self, client: httpx.AsyncClient) -> None:
        """Schedule the events the clock has passed, then send those due (shuffled a little:
        providers promise no order)."""
        now_ms = self.sim.now_ms()
        while self._next < len(self._events) and self._events[self._next].at_ms <= now_ms:
            self._schedule(self._events[self._next])
            self._next += 1
        due = [p for p in self._queue if p.due_ms <= now_ms and p.next_try <= time.monotonic()]
        self._order.shuffle(due)
        for pending in due:
            self._queue.remove(pending)
            await self._send(client, pending)

    def _schedule(self, event: SimEvent) -> None:
        faults, draw = self.faults, self._rng.random
        if draw() < faults.drop:
            self.stats["dropped"] += 1
            return
        copies = 2 if draw() < faults.duplicate else 1
        self.stats["duplicated"] += copies - 1
        for _ in range(copies):
            delay_ms = 0
            if draw() < faults.delay:
                delay_ms = int(draw() * faults.max_delay_seconds * 1000)
                self.stats["delayed"] += 1
            self._queue.append(_Pending(event, event.at_ms + delay_ms))
        if draw() < faults.forged:
            self._queue.append(_Pending(event, event.at_ms, forged=True))
            self.stats["forged"] += 1

    async def _send(self, client: httpx.AsyncClient, pending: _Pending) -> None:
        event = pending.event
        path = f"{self.url.rstrip('/')}/{event.provider.value}/{self.accounts[event.provider]}"
        try:
            if event.provider is Provider.TELNYX:
                headers = telnyx_headers(event.body, int(time.time()))
                if pending.forged:
                    headers["telnyx-signature-ed25519"] = telnyx_headers(
                        event.body + b" ", int(time.time()))["telnyx-signature-ed25519"]
                answer = await client.post(path, content=event.body, headers=headers)
            else:
                answer = await client.post(path, content=event.body)  # Bandwidth's first try
                if answer.status_code == 401 and "www-authenticate" in answer.headers:
                    authorization = (basic_authorization("sim-webhook-user", "wrong")
                                     if pending.forged else basic_authorization())
                    answer = await client.post(path, content=event.body,
                                               headers={"authorization": authorization})
            status = answer.status_code
        except httpx.HTTPError:
            status = 0
        if pending.forged:
            self.stats["forged_refused" if status == 401 else "forged_accepted"] += 1
        elif 200 <= status < 300:
            self.stats["delivered"] += 1
            self.delivered.append(event)
        else:
            pending.attempts += 1
            if pending.attempts < self.attempts:
                pending.next_try = (time.monotonic()
                                    + self.retry_seconds * 2 ** (pending.attempts - 1))
                self._queue.append(pending)
                self.stats["retried"] += 1
            else:
                self.stats["failed"] += 1
