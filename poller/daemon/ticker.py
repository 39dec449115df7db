"""APScheduler wiring for ``poller run``: the clock that starts ticks, and nothing else.

The database holds the schedule (``poll_target.next_poll_at``); APScheduler only decides *when
to look*. One interval job on an ``AsyncIOScheduler`` with a memory job store:

* ``max_instances=1``: a tick that runs long is never overlapped by the next one;
* ``coalesce=True``: ticks missed while one ran (or while the machine was suspended) collapse
  into a single run instead of a burst;
* ``misfire_grace_time=None``: a late tick still runs (it only looks at what is due now).

Discovery (``poller.polling.discovery``) is a second interval job
(:meth:`TickScheduler.add_periodic`), with the same ``max_instances=1`` / ``coalesce`` defaults,
every ``polling.discovery_interval_seconds``.

The period is :func:`tick_seconds`: a quarter of a second, or half the poll interval when that
is shorter. It is short because a target is rescheduled from the moment it was polled, just
after a tick started: its next due time falls just after a tick too, and waits almost a whole
period (with 1 s ticks every poll ran about 0.9 s late). Each gap between two tick starts is
drawn at random between half and one and a half periods (:class:`JitteredInterval`; on average
one period): several daemons sharing one database then take turns at claiming instead of one
of them, always a little ahead, taking every due target. A due target waits at most one and a
half periods for its poll. A tick that finds nothing due costs one indexed ``UPDATE``; each
tick claims (``Pipeline.run_due``) while there is room and something is due.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger

from poller.config import PollingSettings
from poller.model import utc_now

MAX_TICK_SECONDS = 0.25
"""The longest pause between two ticks (the most a due target waits; see the module doc)."""

JOB_ID = "tick"

Job = Callable[[], Awaitable[None]]
"""The coroutine function run at every tick (it must not raise: see ``poller.daemon``)."""


JITTER = (0.5, 1.5)
"""A tick gap is the period times a uniform random factor in this range."""


class JitteredInterval(BaseTrigger):  # type: ignore[misc]  # APScheduler 3 is untyped
    """Fires ``seconds × uniform(0.5, 1.5)`` after each start (see the module docstring)."""

    __slots__ = ("rng", "seconds")

    def __init__(self, seconds: float, rng: random.Random | None = None) -> None:
        self.seconds = seconds
        self.rng = rng if rng is not None else random.Random()  # noqa: S311 (not security)

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime
                           ) -> datetime:
        """``now`` plus a random gap (APScheduler asks right after starting a run)."""
        return now + timedelta(seconds=self.gap())

    def gap(self) -> float:
        """One random gap, in seconds."""
        return self.seconds * self.rng.uniform(*JITTER)


def tick_seconds(settings: PollingSettings) -> float:
    """How often to look for due targets: every 0.25 s, or half the poll interval if shorter."""
    return min(MAX_TICK_SECONDS, settings.interval_seconds / 2)


class TickScheduler:
    """An ``AsyncIOScheduler`` running one coroutine about every ``seconds`` (jittered), first
    right away."""

    def __init__(self, job: Job, seconds: float, rng: random.Random | None = None) -> None:
        self.job = job
        self.seconds = seconds
        self.rng = rng
        self._scheduler = AsyncIOScheduler(
            jobstores={"default": MemoryJobStore()},
            executors={"default": AsyncIOExecutor()},
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
            timezone=UTC,
        )

    def start(self) -> None:
        """Start ticking (call from inside the running event loop)."""
        self._scheduler.add_job(self.job, self._trigger(), id=JOB_ID, name="poller tick",
                                next_run_time=utc_now())
        self._scheduler.start()

    def add_periodic(self, job_id: str, name: str, job: Job, seconds: float) -> None:
        """Run ``job`` every ``seconds`` too, first right away (before or after :meth:`start`);
        a job already there with that ID gets the new period instead."""
        trigger = IntervalTrigger(seconds=seconds, timezone=UTC)
        if self._scheduler.get_job(job_id) is not None:
            self._scheduler.reschedule_job(job_id, trigger=trigger)
            return
        self._scheduler.add_job(job, trigger, id=job_id, name=name, next_run_time=utc_now())

    def reschedule(self, seconds: float) -> None:
        """Tick every ``seconds`` from now on (after a reload changed the poll interval)."""
        if seconds != self.seconds:
            self.seconds = seconds
            self._scheduler.reschedule_job(JOB_ID, trigger=self._trigger())
            logging.getLogger(__name__).info("ticking every %g s", seconds)

    def pause(self) -> None:
        """Start no more ticks (one already running carries on); nothing if never started."""
        if self._scheduler.running:
            self._scheduler.pause()

    def shutdown(self) -> None:
        """Stop the scheduler; call once no tick is running (it would be cancelled)."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    def _trigger(self) -> JitteredInterval:
        return JitteredInterval(self.seconds, self.rng)
