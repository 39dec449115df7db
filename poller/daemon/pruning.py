"""Retention inside ``poller run``: prune old history every ``prune_interval_seconds``.

After a tick, when ``[retention] prune_interval_seconds`` has passed since the last run (the
first right after the first tick), old ``poll_error`` rows and, if configured, old raw payloads
are pruned as ``poller prune`` would (``poller.store.retention``). A failure is logged and
retried at the next interval; it never stops the daemon.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from poller.config import RetentionSettings
from poller.errors import StoreUnavailable
from poller.polling.internal import InternalErrors
from poller.store.gateway import Store

log = logging.getLogger(__name__)


class Pruner:
    """Runs the prune when it is due (see the module docstring)."""

    def __init__(self, store: Store, *, clock: Callable[[], datetime],
                 internal: InternalErrors) -> None:
        self.store = store
        self.clock = clock
        self.internal = internal
        self.next_at: datetime | None = None
        """No prune before this (``None``: at the next call)."""

    async def prune_if_due(self, retention: RetentionSettings) -> None:
        """Prune by ``retention`` if its interval has passed; never raises."""
        now = self.clock()
        every = retention.prune_interval_seconds
        if every <= 0 or (self.next_at is not None and now < self.next_at):
            return
        self.next_at = now + timedelta(seconds=every)
        try:
            stats = await self.store.prune(poll_error_days=retention.poll_error_days,
                                           raw_payload_days=retention.raw_payload_days, now=now,
                                           webhook_event_days=retention.webhook_event_days)
        except StoreUnavailable as error:
            log.error("pruning old history failed (retried in %g s): %s", every, error)
            return
        except Exception as error:
            self.internal.report("prune", error, f"pruning old history (retried in {every:g} s)")
            return
        if stats.poll_errors_deleted or stats.raw_payloads_cleared or stats.webhook_events_deleted:
            log.info("pruned %d poll_error rows, %d raw payloads and %d provider events",
                     stats.poll_errors_deleted, stats.raw_payloads_cleared,
                     stats.webhook_events_deleted)
