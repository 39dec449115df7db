"""This daemon among those sharing one database: registration, heartbeat, stop (DESIGN §8).

A daemon registers its ``[daemon] identity`` in ``poller_daemon`` before its first tick (an
identity a live daemon holds is refused: ``IdentityInUse``, exit 2), leases what it claims
under that identity, and every ``heartbeat_seconds`` refreshes its row and renews the leases of
the polls it is working on (``poller.store.fleet``), also during the stop's grace time. The
stop marks the row stopped. A heartbeat that finds the identity registered by another process
since (this one was frozen or cut off for longer than its lease) reports the loss; the daemon
then stops at once, leaving the row and leases to the new holder.

Each registration and heartbeat also counts the live daemons: while others are live the
daemon claims one target per poll slot at a time instead of four (targets
fall due in clumps, and smaller claims let the daemons share a clump instead of one taking it
whole). :class:`Membership` tells the daemon through ``on_fleet_size``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable

from poller.config import DaemonSettings, PollingSettings
from poller.daemon.metrics import PollerMetrics
from poller.errors import StoreUnavailable
from poller.polling.internal import InternalErrors
from poller.polling.pacing import Clock
from poller.store.gateway import Store

log = logging.getLogger(__name__)


class Membership:
    """This daemon's row in ``poller_daemon`` and its heartbeat (see the module docstring)."""

    def __init__(self, store: Store, settings: DaemonSettings, polling: PollingSettings, *,
                 clock: Clock, metrics: PollerMetrics, internal: InternalErrors,
                 on_fleet_size: Callable[[int], None], on_lost: Callable[[], None]) -> None:
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.internal = internal
        self.identity = settings.effective_identity()
        """This daemon's name in ``poller_daemon`` and as ``lease_owner``."""
        self.lease_seconds = settings.effective_lease_seconds(polling)
        self.heartbeat_seconds = settings.effective_heartbeat_seconds(polling)
        self.on_fleet_size = on_fleet_size
        """Told the number of live daemons (this one included) after every beat."""
        self.on_lost = on_lost
        """Told once when another process has taken the identity over."""
        self.registered = False
        self.lost = False
        """Another process registered this identity after this one missed its heartbeats."""
        self.live = 1
        self._host = socket.gethostname()
        self._task: asyncio.Task[None] | None = None
        self._polls_total = 0
        self._recent_polls: deque[tuple[float, int]] = deque()
        """``(time.monotonic(), polls)`` of each tick of the last minute."""

    async def register(self) -> None:
        """Claim the identity (``IdentityInUse`` if a live daemon has it), then beat."""
        registration = await self.store.register(self.identity, host=self._host,
                                                 pid=os.getpid(), now=self.clock(),
                                                 lease_seconds=self.lease_seconds)
        self.registered = True
        self._fleet_size(registration.live)
        log.info("registered as daemon %r (lease %g s, heartbeat every %g s)", self.identity,
                 self.lease_seconds, self.heartbeat_seconds)
        if registration.released:
            log.warning("released %d leases left by an earlier process of identity %r; those "
                        "targets are polled again now", registration.released, self.identity)
        self._task = asyncio.ensure_future(self._heartbeats())

    async def stop_heartbeats(self) -> None:
        """Stop beating (the stop's last step before the row is marked stopped)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])

    async def mark_stopped(self) -> None:
        """Note a graceful stop in the row (nothing if never registered, or lost)."""
        if not self.registered:
            return
        self.registered = False
        total, last_minute = self.poll_counts()
        try:
            await self.store.mark_stopped(self.identity, now=self.clock(), polls_total=total,
                                          polls_last_minute=last_minute)
        except StoreUnavailable as error:
            log.error("could not mark daemon %r stopped (it shows as lost once its heartbeat "
                      "is %g s old): %s", self.identity, self.lease_seconds, error)

    def count_polls(self, polled: int) -> None:
        """Count one tick's polls (``poller status`` shows them)."""
        self._polls_total += polled
        if polled:
            self._recent_polls.append((time.monotonic(), polled))

    def poll_counts(self) -> tuple[int, int]:
        """Polls since start, and in the last minute."""
        horizon = time.monotonic() - 60.0
        while self._recent_polls and self._recent_polls[0][0] < horizon:
            self._recent_polls.popleft()
        return self._polls_total, sum(n for _, n in self._recent_polls)

    async def _heartbeats(self) -> None:
        """Beat every ``heartbeat_seconds`` until cancelled; a failed beat is logged only."""
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            try:
                total, last_minute = self.poll_counts()
                beat = await self.store.heartbeat(
                    self.identity, now=self.clock(), lease_seconds=self.lease_seconds,
                    polls_total=total, polls_last_minute=last_minute, host=self._host,
                    pid=os.getpid())
            except StoreUnavailable as error:
                log.warning("heartbeat failed (leases last %g s; retried in %g s): %s",
                            self.lease_seconds, self.heartbeat_seconds, error)
            except Exception as error:  # the heartbeat never dies of one failure
                self.internal.report("heartbeat", error, f"beating (retried in "
                                                         f"{self.heartbeat_seconds:g} s)")
            else:
                if not beat.owned:
                    log.error("daemon identity %r was registered by another process after this "
                              "one missed its heartbeats for longer than its lease (%g s): "
                              "stopping at once, leaving its leases and row to the new holder",
                              self.identity, self.lease_seconds)
                    self.lost = True
                    self.registered = False
                    self.on_lost()
                    return
                self.metrics.leases_renewed(beat.renewed)
                self._fleet_size(beat.live)

    def _fleet_size(self, live: int) -> None:
        self.live = live
        self.on_fleet_size(live)
