"""The daemon's side jobs, each its own APScheduler interval job beside the ticks.

* **discovery** (``poller.polling.discovery``) every ``polling.discovery_interval_seconds``,
  for accounts with ``discover = true``;
* **reconcile** (``poller.daemon.webhooks``) every second while ``[webhooks] listen`` is set:
  the pending provider events polling has caught up with are applied;
* **detail records** (``poller.polling.detail_records``) every ten seconds for Telnyx accounts
  with ``detail_records = true``.

Each run is one task on the current poller (a reload's new poller is used from the next run),
never raises (our own bug is reported once and the job runs again at its next interval; a store
that is away only waits), and is cancelled at shutdown (:meth:`SideJobs.cancel`): what it had
not stored yet is done again next time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from poller.config import Config, TelnyxAccount
from poller.daemon.ticker import TickScheduler
from poller.daemon.webhooks import RECONCILE_SECONDS, WebhookReceiver
from poller.errors import StoreUnavailable
from poller.polling.detail_records import RUN_SECONDS, DetailRecords
from poller.polling.discovery import Discovery
from poller.polling.internal import InternalErrors

if TYPE_CHECKING:
    from poller.polling.poller import Poller


class SideJobs:
    """Schedules and runs the side jobs of one daemon (see the module docstring)."""

    def __init__(self, scheduler: TickScheduler, poller: Callable[[], Poller],
                 receiver: WebhookReceiver, internal: InternalErrors,
                 stopping: Callable[[], bool]) -> None:
        self.scheduler = scheduler
        self.poller = poller
        self.receiver = receiver
        self.internal = internal
        self.stopping = stopping
        self.discovery = Discovery()
        self.records = DetailRecords()
        self._running: set[asyncio.Task[object]] = set()

    def schedule(self, config: Config) -> None:
        """Add (or reschedule) the jobs ``config`` needs; call again after a reload."""
        if any(account.discover for account in config.accounts):
            self.scheduler.add_periodic("discovery", "poller discovery", self._discover,
                                        config.polling.discovery_interval_seconds)
        if config.webhooks.address is not None:
            self.scheduler.add_periodic("reconcile", "poller reconcile", self._reconcile,
                                        RECONCILE_SECONDS)
        if any(isinstance(a, TelnyxAccount) and a.detail_records for a in config.accounts):
            self.scheduler.add_periodic("detail_records", "poller detail records",
                                        self._records, RUN_SECONDS)

    # APScheduler awaits coroutine functions (a lambda returning a coroutine it would not).

    async def _discover(self) -> None:
        await self._run("discovery", "discovering conferences",
                        lambda: self.discovery.run(self.poller()))

    async def _reconcile(self) -> None:
        await self._run("reconcile", "applying provider events", self.receiver.reconcile)

    async def _records(self) -> None:
        await self._run("detail records", "fetching detail records",
                        lambda: self.records.run(self.poller()))

    async def _run(self, where: str, doing: str, job: Callable[[], Awaitable[object]]) -> None:
        if self.stopping():
            return
        task = asyncio.ensure_future(job())
        self._running.add(task)
        try:
            await asyncio.wait([task])
            error = None if task.cancelled() else task.exception()
            if error is not None and not isinstance(error, StoreUnavailable):
                self.internal.report(where, error, f"{doing} (retried at the next interval)")
        finally:
            self._running.discard(task)

    async def cancel(self) -> None:
        """Cancel the runs under way and wait for them (the shutdown)."""
        running = list(self._running)
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running)
