"""One tick of the poll lifecycle: claim what is due, fetch it, record it, reschedule it.

``Poller(accounts, store, settings).tick(now)`` is the unit ``poller once`` drives
(:meth:`Poller.burst`: ticks until nothing due at its start is left, arq's *burst* mode); the
long-running ``poller run`` uses the same steps (:meth:`Poller.claim`, :meth:`Poller.poll`,
:meth:`Poller.decide`) through a continuous ``poller.polling.pipeline.Pipeline``. A tick:

1. leases the due targets (``Store.claim_due``), skipping paused accounts;
2. fetches them concurrently within the limits of ``poller.polling.pacing``: at most
   ``polling.concurrency`` polls at once overall, every HTTP request taking a token of its
   account's bucket (``requests_per_second``). A poll whose first request would wait longer
   than ``max_rate_wait_seconds`` is handed back for a later tick instead;
3. turns each ``ProviderError`` into a ``PollFailure`` (logged at WARNING with provider,
   account and conference); any other exception of one fetch is our own bug: it is logged with
   its traceback and the same context, and recorded as ``internal`` (never as the provider's
   ``bad_response``). One failed poll never kills the tick;
4. pauses an account on 429 (until ``Retry-After``) and on 401 / 403 (``auth_pause_seconds``,
   reported with one ``logging.error`` per episode); its requests not yet sent are handed back;
5. records every result and its :func:`poller.polling.schedule.next_schedule` decision in one
   recorder transaction, retrying ``StoreUnavailable`` a few times with backoff. If the store
   stays unavailable the tick says so in its report; nothing is lost: the targets keep their
   ``next_poll_at`` and their leases are handed back (``Store.release_owned``) at once or,
   while the database is still unreachable, at the start of the next tick
   (``Poller.leases_stranded``), so they are polled again as soon as it is back rather than
   when their leases expire (a running daemon's heartbeat would renew them until then).

Accounts with ``list_polling`` first ask their :class:`~poller.polling.lists.ListPlanner` which
claimed targets their conference list can serve (ready observations, or participants only);
the rest are polled as above.

Time comes from the injected ``clock`` and waiting goes through the injected ``sleep``, so tests
drive a tick on a virtual clock without real sleeps. The tick does no signal handling and owns
no loop; ``poller run`` adds those around it. Its database work runs off the event loop
(:class:`~poller.store.gateway.Store`); a cancelled tick waits for a statement under way, so
its caller can release the leases afterwards (:meth:`Poller.release_leases`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from poller.config import PollingSettings
from poller.errors import Internal, ProviderError, StoreUnavailable, Timeout
from poller.model import Observation, PollFailure, PollResult, TargetKey, utc_now
from poller.polling.accounts import Accounts, PolledAccount
from poller.polling.backoff import StoreBackoff
from poller.polling.internal import InternalErrors
from poller.polling.lists import Fetch, ListPlan
from poller.polling.pacing import Clock, Deferred, Pacer, PollSlot, Sleep
from poller.polling.report import PollObserver, TickReport
from poller.polling.schedule import (
    AUTH_PAUSE_SECONDS,
    after,
    next_schedule,
    transient_backoff_seconds,
)
from poller.store.gateway import Store
from poller.store.recorder import RecordStats
from poller.store.rows import ScheduleUpdate
from poller.store.targets import ClaimedTarget, SyncReport

log = logging.getLogger(__name__)

MAX_BURST_TICKS = 10_000
"""A bound on one burst run's ticks (each claims up to a batch of targets)."""



def default_owner() -> str:
    """A lease owner name unique to this process: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, slots=True)
class TickSettings:
    """How a poller claims and polls: ``[polling]``, and what its runner decides."""

    polling: PollingSettings
    owner: str = field(default_factory=default_owner)
    """Whose leases the claims are (the daemon's identity)."""
    lease_seconds: float = 300.0
    batch_size: int | None = None
    """Targets claimed per tick (default: :attr:`Poller.claim_factor` × the poll slots there
    are now, which ``concurrency = "auto"`` changes as it goes)."""
    auth_pause_seconds: float = AUTH_PAUSE_SECONDS
    max_rate_wait_seconds: float = 5.0
    """A poll whose first token is further away than this is handed back for later."""
    store_attempts: int = 3
    store_backoff_seconds: float = 1.0


class Poller:
    """Claims, fetches, records and reschedules targets, one :meth:`tick` at a time."""

    def __init__(self, accounts: Accounts, store: Store, settings: TickSettings, *,
                 clock: Clock = utc_now, sleep: Sleep = asyncio.sleep,
                 rng: random.Random | None = None, observer: PollObserver | None = None,
                 internal: InternalErrors | None = None) -> None:
        self.accounts = accounts
        self.store = store
        self.settings = settings
        self.polling = settings.polling
        self.claim_factor = 4
        """Targets claimed per tick per poll slot; the daemon lowers it to 1 while other
        daemons are live."""
        self.clock = clock
        self.sleep = sleep
        self.rng = rng if rng is not None else random.Random()  # noqa: S311 (jitter only)
        self.observer = observer
        """Told each poll's latency and each rate-limit wait (``None``: not measured)."""
        self.internal = internal if internal is not None else InternalErrors(observer)
        """Where our own bugs met while polling are logged and counted."""
        self.pacer = Pacer(self.polling.slots, clock=clock, sleep=sleep, observer=observer)
        self.leases_stranded = False
        """A tick met an unavailable store after (maybe) claiming: this owner may hold leases
        of targets nobody polls. The next tick hands them back first (a reload carries it
        over to the new poller)."""
        self.backoff = StoreBackoff()
        """When to try the store again after it failed a tick (``poller.polling.backoff``)."""

    @property
    def batch_size(self) -> int:
        """Targets claimed per tick: ``batch_size`` if set, else ``claim_factor`` × the poll
        slots there are now (so that claims keep up as ``auto`` slots grow)."""
        return self.settings.batch_size or self.claim_factor * self.pacer.slots.limit

    async def sync(self, now: datetime | None = None) -> SyncReport:
        """Bring ``poll_target`` in line with the configured conferences."""
        wanted = [t for account in self.accounts for t in account.settings.targets()]
        report = await self.store.sync_targets(wanted, now or self.clock())
        log.info("targets synced: %s", report)
        return report

    async def release_leases(self) -> int:
        """Drop every lease this poller holds (its targets stay due); how many were held."""
        return await self.store.release_owned(self.settings.owner)

    async def aclose(self) -> None:
        """Close every account's client."""
        await self.accounts.aclose()

    async def burst(self) -> TickReport:
        """Tick until no target that was due at the start is left (``poller once``): a target
        a tick reschedules is not polled twice. Stops early on a store error."""
        total = TickReport()
        start = self.clock()
        for _ in range(MAX_BURST_TICKS):
            report = await self.tick(self.clock(), due_by=start)
            total.add(report)
            if report.claimed == 0 or report.store_error:
                break
        return total

    async def tick(self, now: datetime | None = None, *, due_by: datetime | None = None
                   ) -> TickReport:
        """Poll what is due at ``now`` (default: the clock) and record it; see the module doc.

        ``due_by`` bounds ``next_poll_at`` of the targets claimed (default ``now``).
        """
        now = now or self.clock()
        claimed, report = await self.claim(now, self.batch_size, due_by=due_by)
        if not claimed:
            return report
        plans = await self.plans(claimed, now)
        outcomes = await asyncio.gather(*(self.poll(target, plans.get(target.pk))
                                          for target in claimed))
        results: list[PollResult] = []
        schedule: dict[TargetKey, ScheduleUpdate] = {}
        handed_back: dict[int, datetime] = {}
        for target, outcome in zip(claimed, outcomes, strict=True):
            if isinstance(outcome, Deferred):
                handed_back[target.pk] = outcome.until
                continue
            results.append(outcome)
            schedule[target.key] = self.decide(target, outcome)
            report.count_poll(target.key.provider.value, outcome)
        report.polled = len(results)
        report.deferred = len(handed_back)
        if results:
            await self._record(results, schedule, report)
        if handed_back:
            try:
                await self.store.release(handed_back)
            except StoreUnavailable as error:  # handed back by the next tick
                self.leases_stranded = True
                report.store_error = report.store_error or str(error)
        if report.store_error is not None:
            with contextlib.suppress(StoreUnavailable):  # still down: the next tick tries first
                await self._hand_back_stranded()
            self.backoff.failed(now)
        return report

    async def claim(self, now: datetime, limit: int, *, due_by: datetime | None = None
                    ) -> tuple[list[ClaimedTarget], TickReport]:
        """Lease up to ``limit`` due targets (none while backing off from a failed store); the
        report says how many, and why none when the store failed."""
        report = TickReport()
        if self.backoff.waiting(now):
            report.skipped = True  # backing off: the store failed the last attempt
            report.store_error = "store unavailable: waiting to try again"
            return [], report
        try:
            if self.leases_stranded:
                await self._hand_back_stranded()
            claimed = await self.store.claim_due(now, limit, self.settings.owner,
                                                 self.settings.lease_seconds, due_by=due_by,
                                                 exclude_accounts=self.accounts.paused(now))
        except StoreUnavailable as error:
            # A claim whose commit was lost with the connection may still have leased targets.
            self.leases_stranded = True
            report.store_error = str(error)
            self.backoff.failed(now, f"store unavailable, nothing claimed: {error}")
            return [], report
        self.backoff.worked()
        report.claimed = len(claimed)
        report.taken_over = sum(1 for target in claimed if target.taken_over)
        if report.taken_over:
            log.info("took over %d targets whose lease had expired (their daemon stopped "
                     "without releasing them)", report.taken_over)
        return claimed, report

    async def plans(self, claimed: list[ClaimedTarget], now: datetime) -> dict[int, ListPlan]:
        """What the list planners can serve of ``claimed`` (by pk); never raises."""
        plans: dict[int, ListPlan] = {}
        for account in self.accounts:
            mine = [t for t in claimed if t.key.account == account.name]
            if account.planner is None or not mine or account.gate.is_paused(now):
                continue
            pace = self.pacer.pace(account.gate, account.provider.value)
            try:
                plans.update(await account.planner.plan(mine, pace))
            except StoreUnavailable as error:
                log.warning("list polling of account %r skipped: %s", account.name, error)
            except Exception as error:  # the list is an optimisation: single polls still work
                self.internal.report("list polling", error,
                                     f"planning list polls of account {account.name!r} (they "
                                     "are polled one by one)")
        return plans

    async def _hand_back_stranded(self) -> None:
        """Drop every lease this poller holds, keeping ``next_poll_at`` (due again at once).

        Called between polls only (ticks of one poller never overlap), when a tick could not
        record or hand back what it claimed; raises ``StoreUnavailable`` while still down."""
        self.leases_stranded = True
        released = await self.store.release_owned(self.settings.owner)
        self.leases_stranded = False
        if released:
            log.warning("handed back %d targets whose results could not be recorded; they "
                        "are polled again now", released)

    # -- one target --------------------------------------------------------------------------

    async def poll(self, target: ClaimedTarget, plan: ListPlan | None = None
                   ) -> PollResult | Deferred:
        """Poll one claimed target within the pacing limits (or defer it); never raises."""
        account = self.accounts.get(target.key.account)
        if account is None:
            log.warning("no configured account %r for %s: not polled", target.key.account,
                        target.key)
            return Deferred(self.clock() + timedelta(seconds=self.polling.idle_interval_seconds))
        if isinstance(plan, Observation):  # served by the account's conference list
            account.gate.succeeded()
            return plan
        slot = await self.pacer.acquire(account.gate, account.provider.value,
                                        max_wait_seconds=self.settings.max_rate_wait_seconds)
        if isinstance(slot, Deferred):
            return slot
        try:
            gate = account.gate
            if gate.is_paused(self.clock()) and gate.paused_until is not None:
                return Deferred(gate.paused_until)
            return await self._fetch(account, target, slot, plan)
        finally:
            slot.release()

    async def _fetch(self, account: PolledAccount, target: ClaimedTarget, slot: PollSlot,
                     plan: Fetch | None) -> PollResult:
        key = target.key
        if self.observer is not None:
            late = (self.clock() - target.next_poll_at).total_seconds()
            self.observer.observe_poll_lateness(key.provider.value, late)
        started = time.perf_counter()
        deadline = self.polling.poll_deadline_seconds
        try:
            try:
                async with asyncio.timeout(deadline):
                    observation = await (plan(slot) if plan is not None
                                         else account.client.fetch(key, slot))
            finally:
                if self.observer is not None:
                    self.observer.observe_poll_seconds(key.provider.value,
                                                       time.perf_counter() - started)
        except TimeoutError:  # the provider layer turns its own timeouts into ``Timeout``
            failure = PollFailure(key, self.clock(), kind=Timeout.kind,
                                  message=f"poll took longer than its {deadline:g} s deadline "
                                          "(poll_deadline_seconds)")
            log.warning("%s conference %s of account %r: poll failed (timeout): %s",
                        key.provider.value, key.conference_id, key.account, failure.message,
                        extra=_context(key, failure, started))
            return failure
        except ProviderError as error:
            failure = PollFailure.from_error(key, self.clock(), error)
            log.warning("%s conference %s of account %r: poll failed (%s%s): %s",
                        key.provider.value, key.conference_id, key.account, failure.kind,
                        f", HTTP {failure.http_status}" if failure.http_status else "",
                        failure.message, extra=_context(key, failure, started))
            self._pause_if_needed(account, failure)
            return failure
        except Exception as error:  # the tick is the boundary: log, record, carry on
            self.internal.report("poll", error, f"polling {key.provider.value} conference "
                                                f"{key.conference_id} of account {key.account!r}")
            return PollFailure(key, self.clock(), kind=Internal.kind,
                               message=f"unexpected {type(error).__name__} while polling")
        account.gate.succeeded()
        return observation

    def _pause_if_needed(self, account: PolledAccount, failure: PollFailure) -> None:
        key, at, gate = failure.target, failure.observed_at, account.gate
        if failure.kind == "rate_limited":
            seconds = failure.retry_after_seconds
            if seconds is None:
                seconds = transient_backoff_seconds(1, self.polling, self.rng)
            until = gate.pause(at, seconds, "rate_limited")
            log.warning("%s account %r rate limited: paused until %s", key.provider.value,
                        key.account, until.isoformat())
        elif failure.kind == "auth" and gate.auth_failed(at, self.settings.auth_pause_seconds):
            log.error("%s account %r: credentials refused (HTTP %s: %s); account paused for "
                      "%.0f s, other accounts carry on. Check its credentials.",
                      key.provider.value, key.account, failure.http_status, failure.message,
                      self.settings.auth_pause_seconds)

    def decide(self, target: ClaimedTarget, result: PollResult) -> ScheduleUpdate:
        """The target's next poll (or retirement), moved past its account's pause. A bug here
        costs one poll's schedule, never its result: it is polled again an interval later."""
        try:
            decision = next_schedule(target.state, result, result.observed_at, self.polling,
                                     self.rng)
        except Exception as error:
            self.internal.report("schedule", error, f"deciding the next poll of {target.key}")
            decision = after(result.observed_at, self.polling.interval_seconds)
        account = self.accounts.get(target.key.account)
        paused_until = account.gate.paused_until if account is not None else None
        if decision.state != "retired" and paused_until is not None and (
                paused_until > decision.next_poll_at):
            decision = replace(decision, next_poll_at=paused_until)
        return decision

    async def _record(self, results: list[PollResult], schedule: Mapping[TargetKey, ScheduleUpdate],
                      report: TickReport) -> None:
        attempts = self.settings.store_attempts
        for attempt in range(1, attempts + 1):
            try:
                stats = await self.store.record(results, schedule, self.settings.owner)
            except StoreUnavailable as error:
                if attempt == attempts:
                    report.store_error = str(error)
                    log.error("could not record %d poll results after %d attempts: %s",
                              len(results), attempt, error)
                    return
                wait = self.settings.store_backoff_seconds * 2 ** (attempt - 1)
                log.warning("could not record %d poll results (attempt %d of %d; trying again "
                            "in %g s): %s", len(results), attempt, attempts, wait, error)
                await self.sleep(wait)
                continue
            report.count_recorded(stats, schedule.values())
            self.log_warnings(stats)
            return

    @staticmethod
    def log_warnings(stats: RecordStats) -> None:
        """Log the parser warnings of the states just recorded (once per new state)."""
        for key, warning in stats.warnings:
            log.warning("%s conference %s of account %r: %s", key.provider.value,
                        key.conference_id, key.account, warning)


def _context(key: TargetKey, failure: PollFailure, started: float) -> dict[str, object]:
    """The fields of a failed poll's log line (``poller.daemon.logs``: JSON fields)."""
    return {"provider": key.provider.value, "account": key.account,
            "conference_id": key.conference_id, "kind": failure.kind,
            "http_status": failure.http_status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1)}
