"""How ``poller run`` joins its store: register the daemon, sync its targets, and keep trying
while the store is away.

At the start the daemon registers its identity (``poller.daemon.membership``) and syncs the
configured conferences into ``poll_target``; a reload syncs again. When the store does not
answer (also when it was already down at the start: ``poller.app.App.open_store``), the
attempt fails with the store's backoff, the pipeline polls what it knows into the spool, and
:meth:`Joining.later` tries again beside the ticks (a store that hangs, such as a locked SQLite
file, holds up no poll) until both are done. Only then does the pipeline use the store.

A live daemon under the same identity stops the start (``IdentityInUse``, exit 2); found later,
once the store is back, it stops the running daemon with the same error (``on_refused``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from poller.daemon.membership import Membership
from poller.errors import IdentityInUse, StoreUnavailable
from poller.polling.internal import InternalErrors
from poller.polling.poller import Poller
from poller.store.gateway import Store

log = logging.getLogger(__name__)


class Joining:
    """Registration and target sync, retried while the store is away (module docstring)."""

    def __init__(self, store: Store, membership: Membership, poller: Callable[[], Poller], *,
                 spool: Path, clock: Callable[[], datetime], internal: InternalErrors,
                 on_refused: Callable[[IdentityInUse], None]) -> None:
        self.store = store
        self.membership = membership
        self.poller = poller
        """The daemon's current poller (a reload replaces it)."""
        self.spool = spool
        self.clock = clock
        self.internal = internal
        self.on_refused = on_refused
        self.sync_pending = True
        """The targets are still to be synced with the config (at the start, after a reload
        whose sync failed)."""
        self._task: asyncio.Task[None] | None = None

    async def join(self, *, starting: bool = False) -> bool:
        """Register and sync, whichever is still to do; False while the store is away."""
        backoff = self.poller().backoff
        if starting and not self.store.ready:  # it has just failed to open, and said so
            backoff.failed(self.clock())
            return False
        try:
            if not self.membership.registered and not self.membership.lost:
                await self.membership.register()
            if self.sync_pending:
                await self.poller().sync()
                self.sync_pending = False
        except StoreUnavailable as error:
            backoff.failed(self.clock(), f"store unavailable: {error}; the configured "
                                         f"conferences are polled into the spool {self.spool} "
                                         "until it is back")
            return False
        except IdentityInUse as error:
            if starting:
                raise
            log.error("%s: stopping (the spool keeps what was polled)", error)
            self.on_refused(error)
            return False
        backoff.worked()
        return True

    def later(self) -> None:
        """Try :meth:`join` again in the background if it is still to do and the store's
        backoff allows (one attempt at a time)."""
        to_do = not self.membership.registered or self.sync_pending
        if (not to_do or self.membership.lost or self._task is not None
                or self.poller().backoff.waiting(self.clock())):
            return
        self._task = asyncio.ensure_future(self._attempt())

    async def _attempt(self) -> None:
        try:
            await self.join()
        except Exception as error:
            self.internal.report("tick", error, "joining the store (retried at the next tick)")
        finally:
            self._task = None

    async def cancel(self) -> None:
        """Stop an attempt under way (the daemon is stopping)."""
        task = self._task
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
