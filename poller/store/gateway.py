"""The store as the running poller sees it: one object over one database, every call awaitable.

:class:`Store` binds the store's named functions (``claim_due``, ``record``, ``register``, …,
each one blocking SQL in a module of this package) to one engine and one
:class:`~poller.store.recorder.Recorder`, and runs each call in a worker thread, so the event
loop keeps serving the polls in flight meanwhile. It is the only thing the poller, discovery,
list polling and the daemon hold of the database: a seam for tests (a recorder that fails on
purpose) and the one place that decides how SQL meets the event loop.

A store may be handed out before the database answers (``poller run`` started while it is down,
:meth:`poller.app.App.open_store`): its ``opening`` steps (schema check and migration, stale
leases) then run before the first call that reaches the database, and again before each next
one until they succeed; until then every call fails with ``StoreDown`` or ``StoreUnavailable``.

Cancellation: a thread cannot be interrupted, so a call cancelled while its statement runs waits
for the statement to finish before the cancellation goes on. A caller that cancels a tick then
knows that no claim of it is still under way, and can release its leases.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import ParamSpec, TypeVar

from sqlalchemy import Engine

from poller.errors import ConfigError, StoreUnavailable
from poller.model import ParticipantRecord, PollResult, ProviderEvent, TargetKey, utc_now
from poller.store import (
    detail_records,
    fleet,
    inbox,
    reconcile,
    retention,
    snapshots,
    targets,
    watchlist,
)
from poller.store.database import FileIdentity
from poller.store.recorder import Recorder, RecordStats
from poller.store.rows import ScheduleUpdate

log = logging.getLogger(__name__)

_P = ParamSpec("_P")
_R = TypeVar("_R")


async def off_loop(function: Callable[_P, _R], /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
    """``function(*args, **kwargs)`` in a worker thread; if cancelled, wait for it to end first
    (see the module docstring)."""
    work = asyncio.ensure_future(asyncio.to_thread(function, *args, **kwargs))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        await asyncio.wait([work])
        raise


class Store:
    """One database for the running poller (see the module docstring)."""

    def __init__(self, engine: Engine, *, recorder: Recorder | None = None,
                 clock: Callable[[], datetime] = utc_now,
                 opening: Callable[[], None] | None = None) -> None:
        self.engine = engine
        self.recorder = recorder if recorder is not None else Recorder(engine, clock=clock)
        """The only writer of history (:mod:`poller.store.recorder`)."""
        self._opening = opening
        self._opening_lock = threading.Lock()
        self.file = FileIdentity.of(engine) if opening is None else None
        """The SQLite file opened (``None``: another database, or not opened yet)."""

    @property
    def ready(self) -> bool:
        """Whether the store is open (its ``opening`` steps, if any, have succeeded)."""
        return self._opening is None

    def _open(self) -> None:
        """Run the ``opening`` steps if they are still to do (in a worker thread)."""
        with self._opening_lock:
            opening = self._opening
            if opening is None:
                return
            try:
                opening()
            except ConfigError as error:  # e.g. a schema ahead: wait for the operator
                raise StoreUnavailable(str(error)) from None
            self._opening = None
            self.file = FileIdentity.of(self.engine)
        log.info("the database answers: it is open now")

    async def _call(self, function: Callable[_P, _R], /, *args: _P.args, **kwargs: _P.kwargs
                    ) -> _R:
        """``function`` off the loop, once the store is open (see the module docstring)."""
        if self._opening is not None:
            await off_loop(self._open)
        return await off_loop(function, *args, **kwargs)

    def problem(self) -> str | None:
        """Why recording must stop although the database answers: its SQLite file was deleted
        or replaced (SQLite would go on writing to the unlinked file). ``None``: fine."""
        return self.file.problem() if self.file is not None else None

    # -- provider events ---------------------------------------------------------------------

    async def store_event(self, account: str, event: ProviderEvent, body: str,
                          received_at: datetime) -> bool:
        """:func:`poller.store.inbox.store_event`."""
        return await self._call(inbox.store_event, self.engine, account, event, body,
                                received_at)

    async def reconcile(self, now: datetime) -> reconcile.ReconcileStats:
        """:func:`poller.store.reconcile.reconcile`."""
        return await self._call(reconcile.reconcile, self.engine, now)

    async def due_for_records(self, accounts: Collection[str], now: datetime
                              ) -> list[detail_records.DueConference]:
        """:func:`poller.store.detail_records.due_for_records`."""
        return await self._call(detail_records.due_for_records, self.engine, accounts, now)

    async def postpone_records(self, conference: detail_records.DueConference, now: datetime
                               ) -> datetime:
        """:func:`poller.store.detail_records.postpone`."""
        return await self._call(detail_records.postpone, self.engine, conference, now)

    async def apply_records(self, conference_pk: int, records: Sequence[ParticipantRecord],
                            now: datetime) -> detail_records.RecordsApplied:
        """:func:`poller.store.detail_records.apply_records`."""
        return await self._call(detail_records.apply_records, self.engine, conference_pk,
                                records, now)

    # -- poll targets ------------------------------------------------------------------------

    async def sync_targets(self, wanted: Iterable[TargetKey], now: datetime
                           ) -> targets.SyncReport:
        """:func:`poller.store.targets.sync_targets`."""
        return await self._call(targets.sync_targets, self.engine, wanted, now)

    async def claim_due(self, now: datetime, limit: int, owner: str, lease_seconds: float, *,
                        due_by: datetime | None = None, exclude_accounts: Collection[str] = ()
                        ) -> list[targets.ClaimedTarget]:
        """:func:`poller.store.targets.claim_due`."""
        return await self._call(targets.claim_due, self.engine, now, limit, owner, lease_seconds,
                              due_by=due_by, exclude_accounts=exclude_accounts)

    async def release(self, next_poll_at: Mapping[int, datetime]) -> None:
        """:func:`poller.store.targets.release`."""
        await self._call(targets.release, self.engine, next_poll_at)

    async def release_owned(self, owner: str) -> int:
        """:func:`poller.store.targets.release_owned`."""
        return await self._call(targets.release_owned, self.engine, owner)

    async def add_discovered(self, found: Iterable[TargetKey], now: datetime
                             ) -> list[TargetKey]:
        """:func:`poller.store.watchlist.add_discovered`."""
        return await self._call(watchlist.add_discovered, self.engine, found, now)

    async def newest_discovered_created_at(self, account: str) -> datetime | None:
        """:func:`poller.store.watchlist.newest_discovered_created_at`."""
        return await self._call(watchlist.newest_discovered_created_at, self.engine, account)

    # -- history -----------------------------------------------------------------------------

    async def record(self, results: Sequence[PollResult],
                     schedule: Mapping[TargetKey, ScheduleUpdate], owner: str | None = None
                     ) -> RecordStats:
        """:meth:`poller.store.recorder.Recorder.record`."""
        return await self._call(self.recorder.record, results, schedule, owner=owner)

    async def current_snapshots(self, keys: Sequence[tuple[str, str]]
                                ) -> dict[tuple[str, str], snapshots.StoredSnapshot]:
        """:func:`poller.store.snapshots.current_snapshots`."""
        return await self._call(snapshots.current_snapshots, self.engine, keys)

    async def prune(self, *, poll_error_days: float, raw_payload_days: float | None,
                    now: datetime, webhook_event_days: float | None = None
                    ) -> retention.PruneStats:
        """:func:`poller.store.retention.prune`."""
        return await self._call(retention.prune, self.engine, poll_error_days=poll_error_days,
                                raw_payload_days=raw_payload_days, now=now,
                                webhook_event_days=webhook_event_days)

    # -- daemons -----------------------------------------------------------------------------

    async def register(self, identity: str, *, host: str, pid: int, now: datetime,
                       lease_seconds: float) -> fleet.Registration:
        """:func:`poller.store.fleet.register`."""
        return await self._call(fleet.register, self.engine, identity, host=host, pid=pid,
                              now=now, lease_seconds=lease_seconds)

    async def heartbeat(self, identity: str, *, now: datetime, lease_seconds: float,
                        polls_total: int, polls_last_minute: int, host: str, pid: int
                        ) -> fleet.Heartbeat:
        """:func:`poller.store.fleet.heartbeat`."""
        return await self._call(fleet.heartbeat, self.engine, identity, now=now,
                              lease_seconds=lease_seconds, polls_total=polls_total,
                              polls_last_minute=polls_last_minute, host=host, pid=pid)

    async def mark_stopped(self, identity: str, *, now: datetime, polls_total: int,
                           polls_last_minute: int) -> None:
        """:func:`poller.store.fleet.mark_stopped`."""
        await self._call(fleet.mark_stopped, self.engine, identity, now=now,
                       polls_total=polls_total, polls_last_minute=polls_last_minute)
