"""The daemon's polling: claims keep coming while polls run, results recorded as they complete.

``poller run`` drives a :class:`Pipeline` (``poller once`` and the tests keep the simpler
``Poller.tick``, which waits for a whole batch). Two loops meet in it:

* **claiming** (:meth:`Pipeline.run_due`, every tick period): as many targets as there is room
  for (``batch_size`` minus the polls in flight and the results waiting for the writer beyond
  :data:`WRITE_BACKLOG`: a slow writer holds claims back) are claimed and polled; while
  claims come back full, the round waits for polls to end and claims again, for part of the
  tick period (fast polls need no tick each). A poll that takes long (a slow server, up to
  ``poll_deadline_seconds``) holds only its own room:
  the others are claimed, polled and recorded meanwhile;
* **writing** (one task): finished polls are taken in batches (whatever has finished while the
  previous batch was written, and within ``GATHER_SECONDS`` of the first), decided (next
  poll, retirement) and recorded in one transaction; deferred ones are handed back.

**While the store is away** (DESIGN §9): a batch the store cannot take is appended to the
:class:`~poller.store.spool.Spool` (durably) instead, and the pipeline goes on polling by itself
the targets it knows (every target it has polled or claimed, with the schedule it decided:
:attr:`Pipeline.known`), so that what happens meanwhile is observed at its own times. Once the
store answers again, the spool is replayed in order, batch by batch, each through the same
recorder and then marked done; only when it is empty does claiming resume. Replaying a batch
twice (a crash between its commit and the cursor's move) changes nothing: the recorder ignores
what is not newer than what it has. An observation older than what another daemon recorded
meanwhile for the same conference is not applied out of order: it is ignored (``stale``), its
changes are already in the newer one's bracket.

A full spool keeps changes over unchanged polls: an observation whose content is the last one
known for its conference is left out first, and what still does not fit is dropped, said at
ERROR and counted (``poller_spool_results_total{event="dropped"}``).

:meth:`Pipeline.stop` (SIGTERM): no more claims; polls in flight may finish within the grace
time (or are cancelled), and everything fetched is recorded, or spooled, before it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from poller.errors import StoreUnavailable
from poller.model import PollResult, TargetKey
from poller.polling.known import KnownTargets
from poller.polling.pacing import Deferred
from poller.polling.poller import Poller
from poller.polling.report import TickReport
from poller.polling.schedule import state_after
from poller.store.rows import ScheduleUpdate
from poller.store.spool import Spool, SpooledBatch
from poller.store.targets import ClaimedTarget

log = logging.getLogger(__name__)

IDLE_SECONDS = 1.0
"""How often the writer looks at a waiting spool when no poll finishes."""
MAX_WRITE_BATCH = 256
"""The most results written in one transaction (4 × ``batch_size`` if less), whatever the slots."""
WRITE_BACKLOG = 2 * MAX_WRITE_BATCH
"""Results that may wait for the writer before claims hold back (one batch written, one
gathering); bounding them took peak RSS at 10,000 first polls from 175 to 138 MB."""
GATHER_SECONDS = 0.1
"""How long the writer lets results gather after the first (one transaction for many)."""

Finished = tuple[Poller, ClaimedTarget, "PollResult | Deferred"]
KICK = None  # put in the queue of finished polls to wake the writer (to replay, or to stop)


class Pipeline:
    """Claims, polls, records and spools for ``poller run`` (see the module docstring)."""

    def __init__(self, poller: Poller, spool: Spool, *,
                 on_report: Callable[[TickReport], None] = lambda report: None,
                 ready: Callable[[], bool] = lambda: True) -> None:
        self.poller = poller
        """The poller new polls start with (a reload swaps it; polls in flight keep theirs)."""
        self.spool = spool
        self.on_report = on_report
        """Told every claim round and every batch written (metrics and logs)."""
        self.ready = ready
        """Whether the store may be used at all (the daemon has registered): until then the
        pipeline polls the targets it knows and spools."""
        self.known = KnownTargets()
        self._in_flight: dict[asyncio.Task[None], tuple[Poller, TargetKey]] = {}
        self._busy: set[TargetKey] = set()  # polled or waiting to be written: not polled again
        self._retiring: set[asyncio.Task[None]] = set()
        self._room = asyncio.Event()  # set when half the claim room is free (_wake_claims)
        self._finished: asyncio.Queue[Finished | None] = asyncio.Queue()
        self._stop_writer = False
        self._writer: asyncio.Task[None] | None = None
        self.unwritten = 0  # polls finished but not yet recorded or spooled
        self.dropped = 0
        """Results dropped because the spool was full, since it was last replayed whole."""
        self.stopping = False

    @property
    def in_flight(self) -> int:
        """Polls running now."""
        return len(self._in_flight)

    @property
    def offline(self) -> bool:
        """Whether results go to the spool (it holds batches, or the store failed last)."""
        return not self.spool.empty or self.poller.backoff.failures > 0 or not self.ready()

    def problem(self) -> str | None:
        """Why results wait in the spool (``/readyz``'s ``spool`` check), or ``None``."""
        waiting = self.spool.results
        if not waiting:
            return None
        problem = f"store unavailable, spooling {waiting} results (replayed once it is back)"
        if self.dropped:
            problem += (f"; the spool is full ({self.spool.bytes} of {self.spool.max_bytes} "
                        f"bytes): {self.dropped} results dropped")
        return problem

    # -- claiming --------------------------------------------------------------------------

    async def run_due(self, keep_going: Callable[[], bool] = lambda: True,
                      until: float | None = None) -> None:
        """One round: start polls for what is due, while there is room (see the module doc).
        When claims come back full and no room is left, wait for polls to end until the loop
        time ``until`` (``None``: not at all): fast polls then need no tick each."""
        if self.stopping:
            return
        self._ensure_writer()
        poller = self.poller
        while keep_going() and not self.stopping:
            room = self._claim_room()
            if room <= 0:
                if until is None or not await self._room_until(until):
                    return
                continue
            now = poller.clock()
            if not self.ready():
                self._start_known(now, room)
                return
            if not self.spool.empty:  # replay first: the writer probes the store
                if not poller.backoff.waiting(now):
                    self._finished.put_nowait(KICK)
                self._start_known(now, room)
                return
            claimed, report = await poller.claim(now, room)
            self.on_report(report)
            if report.store_error is not None:
                self._start_known(now, room)
                return
            plans = await poller.plans(claimed, now)
            for target in claimed:
                self._start(poller, target, plans.get(target.pk))
            if len(claimed) < room:
                return

    def _start_known(self, now: datetime, room: int) -> None:
        """Poll, by itself, the known targets that are due (the store is away). A process
        that knows none yet (it started while the store was away) knows its config's."""
        if not self.known:
            self._know_config(now)
        for target in self.known.due(now, self._busy, room):
            self._start(self.poller, target, None)

    def _know_config(self, now: datetime) -> None:
        self.known.know({key for account in self.poller.accounts
                         for key in account.settings.targets()}, now)

    def _claim_room(self) -> int:
        """How many more polls may start (see the module docstring)."""
        return (self.poller.batch_size - len(self._in_flight)
                - max(0, self.unwritten - WRITE_BACKLOG))

    def _wake_claims(self) -> None:
        """Wake a claim round waiting for room once half the claim room is free."""
        if self._claim_room() >= self.poller.batch_size // 2:
            self._room.set()

    async def _room_until(self, until: float) -> bool:
        """Whether half the claim room came free before the loop time ``until``."""
        self._room.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(until):
                await self._room.wait()
        return self._room.is_set()

    def _start(self, poller: Poller, target: ClaimedTarget, plan: object) -> None:
        task = asyncio.ensure_future(self._poll(poller, target, plan))
        self._in_flight[task] = (poller, target.key)
        self._busy.add(target.key)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)
        self._wake_claims()

    async def _poll(self, poller: Poller, target: ClaimedTarget, plan: object) -> None:
        outcome = await poller.poll(target, plan)  # type: ignore[arg-type]
        self.unwritten += 1
        self._finished.put_nowait((poller, target, outcome))

    def replace(self, poller: Poller) -> None:
        """New polls start with ``poller`` (a reload); the old one's accounts that it does not
        carry over are closed once the polls still running with them end. Before the daemon
        could register, the targets polled follow the new config at once."""
        old, self.poller = self.poller, poller
        if not self.ready():  # no store to sync with yet: the config says what to poll
            self._know_config(poller.clock())
        task = asyncio.ensure_future(self._retire(old))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _retire(self, old: Poller) -> None:
        running = [task for task, (poller, _) in self._in_flight.items() if poller is old]
        if running:
            await asyncio.wait(running)
        await old.accounts.aclose(keep=self.poller.accounts)

    # -- writing ---------------------------------------------------------------------------

    def _ensure_writer(self) -> None:
        """Start the writer if it is not running (at the first round; after a crash of its
        own, which is logged)."""
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write())
            self._writer.add_done_callback(self._writer_ended)

    def _writer_ended(self, task: asyncio.Task[None]) -> None:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            self.poller.internal.report("write", error, "writing results (the writer starts "
                                                        "again)")

    async def _write(self) -> None:
        """Write finished polls in batches until :meth:`stop` says there is nothing more; replay
        the spool when woken (or every ``IDLE_SECONDS``) with nothing else to write."""
        while True:
            try:
                first = await asyncio.wait_for(self._finished.get(), IDLE_SECONDS)
            except TimeoutError:
                first = KICK
            batch: list[Finished] = [] if first is KICK else [first]
            cap = min(4 * self.poller.batch_size, MAX_WRITE_BATCH)
            if batch and not self._stop_writer and self._finished.qsize() < cap:
                await asyncio.sleep(GATHER_SECONDS)
            while not self._finished.empty() and len(batch) < cap:
                item = self._finished.get_nowait()
                if item is not KICK:
                    batch.append(item)
            done = self._stop_writer and self._finished.empty()
            try:
                if batch:
                    await self._write_batch(batch)
                else:
                    await self._replay()
            except Exception as error:  # the writer never dies of one batch
                self.poller.internal.report("write", error, f"writing {len(batch)} results "
                                                            "(what was not recorded or "
                                                            "spooled yet is lost)")
            finally:
                self.unwritten -= len(batch)
                self._busy.difference_update(target.key for _, target, _ in batch)
                self._wake_claims()
            if done:
                return

    async def _write_batch(self, batch: list[Finished]) -> None:
        poller = self.poller
        report = TickReport()
        results: list[PollResult] = []
        schedule: dict[TargetKey, ScheduleUpdate] = {}
        handed_back: dict[int, datetime] = {}
        for owner_poller, target, outcome in batch:
            if isinstance(outcome, Deferred):
                handed_back[target.pk] = outcome.until
                self.known.remember(target, outcome.until)
                continue
            decision = owner_poller.decide(target, outcome)
            results.append(outcome)
            schedule[target.key] = decision
            report.count_poll(target.key.provider.value, outcome)
            self.known.remember(replace(target, state=state_after(target.state, outcome)),
                           None if decision.state == "retired" else decision.next_poll_at)
        report.polled, report.deferred = len(results), len(handed_back)
        owner = poller.settings.owner
        if results and (self.offline or not await self._record(results, schedule, report)):
            await asyncio.to_thread(self._spool, SpooledBatch(tuple(results), schedule, owner),
                                    report)
            await self._replay(report)
        elif results:
            self.known.remember_hashes(results)
        handed_back.pop(0, None)  # polled while the store was away: no lease to hand back
        if handed_back and not self.offline:
            with contextlib.suppress(StoreUnavailable):  # their leases expire on their own
                await poller.store.release(handed_back)
        self.on_report(report)

    async def _record(self, results: list[PollResult], schedule: dict[TargetKey, ScheduleUpdate],
                      report: TickReport) -> bool:
        """Record one batch straight into the store; False (and backing off) when it is away."""
        poller = self.poller
        try:
            stats = await poller.store.record(results, schedule, poller.settings.owner)
        except StoreUnavailable as error:
            poller.backoff.failed(poller.clock(), f"store unavailable: results go to the spool "
                                                  f"until it is back ({error})")
            return False
        poller.backoff.worked()
        report.count_recorded(stats, schedule.values())
        poller.log_warnings(stats)
        return True

    def _spool(self, batch: SpooledBatch, report: TickReport) -> None:
        """Append ``batch`` (changes first when the spool is full), and count it (in a worker
        thread: the writer waits, the polls go on)."""
        report.store_error = report.store_error or "store unavailable: spooled"
        batch, dropped = self.spool.fit(batch, self.known.unchanged)
        if dropped:
            report.spool_dropped += dropped
            self.dropped += dropped
            log.error("the spool is full (%d of %d bytes): %d poll results dropped, changes "
                      "kept first; the history misses what they saw", self.spool.bytes,
                      self.spool.max_bytes, report.spool_dropped)
        if not batch.results:
            return
        try:
            self.spool.append(batch)
        except StoreUnavailable as error:  # the disk refuses too: nothing left to keep it on
            report.spool_dropped += len(batch.results)
            log.error("%d poll results lost: neither the store nor the spool takes them: %s",
                      len(batch.results), error)
            return
        report.spooled += len(batch.results)
        self.known.remember_hashes(batch.results)

    async def _replay(self, report: TickReport | None = None) -> None:
        """Replay the spool in order while the store takes it (not while backing off, nor
        once stopping: the next start replays). Reading the spool runs in a worker thread."""
        poller = self.poller
        if (self.spool.empty or poller.backoff.waiting(poller.clock()) or not self.ready()
                or self._stop_writer):
            return
        own = report if report is not None else TickReport()
        replayed = 0
        batches = self.spool.batches()
        while not self._stop_writer:
            item = await asyncio.to_thread(next, batches, None)
            if item is None:
                break
            position, batch = item
            if batch.results:
                try:
                    stats = await poller.store.record(batch.results, batch.schedule,
                                                      batch.owner)
                except StoreUnavailable as error:
                    poller.backoff.failed(poller.clock(), f"store still unavailable; "
                                                          f"{self.spool.results} results wait in "
                                                          f"the spool ({error})")
                    break
                own.count_history(stats)
            await asyncio.to_thread(self.spool.consumed, position, len(batch.results))
            replayed += len(batch.results)
        if self.spool.empty:
            poller.backoff.worked()
            self.dropped = 0
            if replayed:
                log.info("the spool is replayed: %d results recorded in the order they were "
                         "polled; claiming again", replayed)
        own.spool_replayed += replayed
        if report is None and replayed:
            self.on_report(own)

    # -- stopping --------------------------------------------------------------------------

    async def stop(self, grace_seconds: float, forced: asyncio.Event) -> int:
        """No more claims; let polls in flight finish within ``grace_seconds`` (or until
        ``forced``), cancel the rest, and write everything fetched. The number abandoned."""
        self.stopping = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_seconds
        pending = set(self._in_flight)
        force = asyncio.ensure_future(forced.wait())
        while pending and not forced.is_set() and loop.time() < deadline:
            done, _ = await asyncio.wait([*pending, force], timeout=deadline - loop.time(),
                                         return_when=asyncio.FIRST_COMPLETED)
            pending -= done
        force.cancel()
        abandoned = len(pending)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        self._stop_writer = True
        self._ensure_writer()  # also when it crashed: what is queued is still written
        self._finished.put_nowait(KICK)
        assert self._writer is not None
        await asyncio.wait([self._writer])
        if self._retiring:
            await asyncio.wait(self._retiring)
        return abandoned
