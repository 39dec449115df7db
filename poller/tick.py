"""One tick of the poll lifecycle: claim what is due, fetch it, record it, reschedule it.

``Poller(config, engine, clients).tick(now)`` is the unit both ``poller once`` (ticks until
nothing is due: arq's *burst* mode) and the long-running ``poller run`` (an APScheduler job)
drive. A tick:

1. leases the due targets (:func:`poller.targets.claim_due`), skipping paused accounts;
2. fetches them concurrently, at most ``polling.concurrency`` at once overall, each account paced
   by its token bucket (``requests_per_second``): every HTTP request of the account takes one
   token, through the pacer the poller sets on its client (``AccountClient.set_pacer``). A poll
   whose first request would wait longer than ``max_rate_wait_seconds`` is handed back for a
   later tick instead; it waits for that first token before taking a concurrency slot, and
   gives its slot back while it waits for the tokens of its later requests (participant
   pages, an OAuth2 token), so a slow account never holds slots other accounts could use;
3. turns each ``ProviderError`` into a ``PollFailure`` (logged at WARNING with provider,
   account and conference); any other exception of one fetch is logged with the same context
   and recorded as ``bad_response``: one bad response never kills the tick;
4. pauses an account on 429 (until ``Retry-After``) and on 401 / 403 (``auth_pause_seconds``,
   reported with one ``logging.error`` per episode); its requests not yet sent are handed back;
5. records every result and its :func:`poller.scheduling.next_schedule` decision in one
   recorder transaction, retrying ``StoreUnavailable`` a few times with backoff. If the store
   stays unavailable the tick says so in its report; nothing is lost: the targets keep their
   ``next_poll_at`` and their leases are handed back (:func:`poller.targets.release_owned`)
   at once or, while the database is still unreachable, at the start of the next tick
   (``Poller.leases_stranded``), so they are polled again as soon as it is back rather than
   when their leases expire (a running daemon's heartbeat would renew them until then).

Time comes from the injected ``clock`` and waiting goes through the injected ``sleep``, so tests
drive a tick on a virtual clock without real sleeps. The tick does no signal handling and owns
no loop; ``poller run`` adds those around it.

Accounts with ``list_polling`` first ask their :class:`poller.listpoll.ListPlanner` which
claimed targets their conference list can serve (ready observations, or participants only);
the rest are polled as above.

Database work (claiming, recording, handing back) runs in a worker thread
(:func:`asyncio.to_thread`) so the event loop keeps serving the other polls. If the tick is
cancelled meanwhile, it waits for that statement to finish before the cancellation goes on, so a
caller that cancels a tick knows that no claim of it is still under way and can release its
leases (:meth:`Poller.release_leases`).
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
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import ParamSpec, TypeVar

from sqlalchemy import Engine

from poller.config import Config
from poller.errors import ProviderError, StoreUnavailable
from poller.listpoll import ListPlanner, Plan
from poller.metrics import PollObserver
from poller.model import Observation, PollFailure, PollResult, TargetKey, utc_now
from poller.providers import Clock, ProviderClient
from poller.providers.http import AccountClient, Pacer, under_shared_lock
from poller.providers.listing import ConferenceListing
from poller.scheduling import AUTH_PAUSE_SECONDS, next_schedule, transient_backoff_seconds
from poller.store.recorder import Recorder
from poller.store.views import ScheduleUpdate
from poller.targets import (
    ClaimedTarget,
    SyncReport,
    claim_due,
    release,
    release_owned,
    sync_targets,
)
from poller.throttle import AccountGate, TokenBucket

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
"""Waits that many seconds (``asyncio.sleep``; tests pass one that advances a virtual clock)."""

_P = ParamSpec("_P")
_R = TypeVar("_R")


async def off_loop(function: Callable[_P, _R], /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
    """``function(*args, **kwargs)`` in a worker thread; if cancelled, wait for it to end first.

    A thread cannot be interrupted: without the wait a cancelled tick could return while its
    claim is still committing, leaving leases nobody knows about.
    """
    work = asyncio.ensure_future(asyncio.to_thread(function, *args, **kwargs))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        await asyncio.wait([work])
        raise


@dataclass(slots=True)
class _PollSlot:
    """What the poll running in this task holds, for the account's pacer."""

    semaphore: asyncio.Semaphore
    prepaid: bool = True
    """The token of the poll's first request was taken before it got its slot."""
    held: bool = False
    """The poll holds one of ``semaphore``'s concurrency slots."""


_poll_slot: ContextVar[_PollSlot | None] = ContextVar("poller_poll_slot", default=None)
"""Set by ``Poller._poll`` for the requests of one poll (each poll runs in its own task)."""


@dataclass(frozen=True, slots=True)
class Deferred:
    """A claimed target not polled this tick (its account is paused or out of tokens)."""

    until: datetime


@dataclass(slots=True)
class TickReport:
    """What one tick (or, added up, a burst of ticks) did."""

    claimed: int = 0
    taken_over: int = 0
    """Claimed targets whose previous lease had expired unreleased (its holder died)."""
    polled: int = 0
    ok: int = 0
    """Successful polls (``unchanged`` ones included)."""
    unchanged: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    """Failed polls by ``poll_error.kind``."""
    deferred: int = 0
    """Claimed, but handed back unpolled (paused account, no token)."""
    retired: Counter[str] = field(default_factory=Counter)
    """Targets retired, by reason."""
    transitions: int = 0
    member_events: int = 0
    store_error: str | None = None
    """Why results could not be recorded, if they could not."""
    polls_by_provider: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Polls by ``(provider, outcome)``: ``ok`` (changed or first seen), ``unchanged`` or the
    ``poll_error.kind`` (``unchanged`` is known only once recorded)."""
    transitions_by_status: Counter[str] = field(default_factory=Counter)
    """``transitions`` by ``to_status``."""
    member_events_by_kind: Counter[str] = field(default_factory=Counter)
    """``member_events`` by ``kind``."""

    @property
    def failures(self) -> int:
        """Failed polls, all kinds."""
        return sum(self.failed.values())

    def add(self, other: TickReport) -> None:
        """Add ``other``'s counts to this report (the last store error wins)."""
        for name in ("claimed", "taken_over", "polled", "ok", "unchanged", "deferred",
                     "transitions", "member_events"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failed.update(other.failed)
        self.retired.update(other.retired)
        self.polls_by_provider.update(other.polls_by_provider)
        self.transitions_by_status.update(other.transitions_by_status)
        self.member_events_by_kind.update(other.member_events_by_kind)
        self.store_error = other.store_error or self.store_error

    def by_provider(self) -> dict[str, TickReport]:
        """One report per provider polled, with its ``ok``, ``unchanged`` and ``failed``."""
        reports: dict[str, TickReport] = {}
        for (provider, outcome), n in self.polls_by_provider.items():
            part = reports.setdefault(provider, TickReport())
            if outcome in ("ok", "unchanged"):
                part.ok += n
                part.unchanged += n if outcome == "unchanged" else 0
            else:
                part.failed[outcome] += n
            part.polled += n
        return reports

    def summary(self) -> str:
        """One line for people: ``polled 12: 10 ok (4 unchanged), 2 failed (…), …``."""
        failed = ", ".join(f"{kind} {n}" for kind, n in sorted(self.failed.items()))
        retired = ", ".join(f"{why} {n}" for why, n in sorted(self.retired.items()))
        parts = [f"polled {self.polled}: {self.ok} ok ({self.unchanged} unchanged)",
                 f"{self.failures} failed" + (f" ({failed})" if failed else ""),
                 f"{sum(self.retired.values())} retired" + (f" ({retired})" if retired else ""),
                 f"{self.transitions} transitions", f"{self.member_events} member events"]
        if self.deferred:
            parts.append(f"{self.deferred} deferred")
        if self.store_error:
            parts.append(f"NOT RECORDED: {self.store_error}")
        return ", ".join(parts)


def default_owner() -> str:
    """A lease owner name unique to this process: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Poller:
    """Claims, fetches, records and reschedules targets, one :meth:`tick` at a time."""

    def __init__(self, config: Config, engine: Engine, clients: Mapping[str, ProviderClient], *,
                 clock: Clock = utc_now, sleep: Sleep = asyncio.sleep,
                 rng: random.Random | None = None, owner: str | None = None,
                 batch_size: int | None = None, lease_seconds: float = 300.0,
                 auth_pause_seconds: float = AUTH_PAUSE_SECONDS,
                 max_rate_wait_seconds: float = 5.0, store_attempts: int = 3,
                 store_backoff_seconds: float = 1.0, recorder: Recorder | None = None,
                 observer: PollObserver | None = None) -> None:
        self.config = config
        self.settings = config.polling
        self.engine = engine
        self.clients = dict(clients)
        self.clock = clock
        self.sleep = sleep
        self.rng = rng if rng is not None else random.Random()  # noqa: S311 (jitter only)
        self.owner = owner or default_owner()
        self.batch_size = batch_size or 4 * self.settings.concurrency
        self.lease_seconds = lease_seconds
        self.auth_pause_seconds = auth_pause_seconds
        self.max_rate_wait_seconds = max_rate_wait_seconds
        self.store_attempts = store_attempts
        self.store_backoff_seconds = store_backoff_seconds
        self.recorder = recorder if recorder is not None else Recorder(engine, clock=clock)
        self.observer = observer
        """Told each poll's latency and each rate-limit wait (``None``: not measured)."""
        self.leases_stranded = False
        """A tick met an unavailable store after (maybe) claiming: this owner may hold leases
        of targets nobody polls. The next tick hands them back first (a reload carries it
        over to the new poller)."""
        now = clock()
        self.gates = {account.name: AccountGate(TokenBucket(account.requests_per_second, now))
                      for account in config.accounts}
        self._semaphore = asyncio.Semaphore(self.settings.concurrency)
        for name, client in self.clients.items():
            if isinstance(client, AccountClient):
                client.set_pacer(self._pacer(name))
        self.planners: dict[str, ListPlanner] = {}
        """``list_polling`` accounts' planners (``poller.listpoll``), by account name."""
        for account in config.accounts:
            if account.uses_list_polling and account.name in self.clients:
                self.planners[account.name] = ListPlanner(
                    self.clients[account.name], engine, clock,
                    max_age_seconds=self.settings.interval_seconds / 2)

    def offer_listing(self, listing: ConferenceListing) -> None:
        """Let the account's list planner reuse a listing taken elsewhere (discovery)."""
        planner = self.planners.get(listing.account)
        if planner is not None:
            planner.offer(listing)

    def sync(self, now: datetime | None = None) -> SyncReport:
        """Bring ``poll_target`` in line with the config's conferences (at start-up)."""
        report = sync_targets(self.engine, self.config.targets(), now or self.clock())
        log.info("targets synced: %s", report)
        return report

    def paused_accounts(self, now: datetime) -> set[str]:
        """The accounts that may not be polled at ``now``."""
        return {name for name, gate in self.gates.items() if gate.is_paused(now)}

    def release_leases(self) -> int:
        """Drop every lease this poller holds (its targets stay due); how many were held."""
        return release_owned(self.engine, self.owner)

    async def aclose(self) -> None:
        """Close every provider client."""
        for client in self.clients.values():
            await client.aclose()

    async def run_due(self, *, keep_going: Callable[[], bool] = lambda: True,
                      on_tick: Callable[[TickReport], None] | None = None,
                      max_ticks: int = 1000) -> TickReport:
        """Tick while ticks come back with a full batch; the reports added up.

        One tick claims at most ``batch_size`` targets (4 × ``polling.concurrency``), so one tick
        per scheduler period would cap the poller at that many polls a period (5,000 targets
        at a 10 s interval need 500 a second). ``poller run`` calls this instead: each tick
        claims what is due at its own start, and a full batch means more may be waiting. It
        stops after a short batch, a store error, ``max_ticks`` ticks, or as soon as
        ``keep_going()`` is false (checked between ticks: a stopping daemon does not start
        another batch). ``on_tick`` is given each tick's report as soon as it is done (metrics
        and logs stay current while a long run goes on).
        """
        total = TickReport()
        for _ in range(max_ticks):
            report = await self.tick()
            if on_tick is not None:
                on_tick(report)
            total.add(report)
            if report.claimed < self.batch_size or report.store_error or not keep_going():
                break
        return total

    async def tick(self, now: datetime | None = None, *, due_by: datetime | None = None
                   ) -> TickReport:
        """Poll what is due at ``now`` (default: the clock) and record it; see the module doc.

        ``due_by`` bounds ``next_poll_at`` of the targets claimed (default ``now``).
        """
        now = now or self.clock()
        report = TickReport()
        try:
            if self.leases_stranded:
                await self._hand_back_stranded()
            claimed = await off_loop(claim_due, self.engine, now, self.batch_size, self.owner,
                                     self.lease_seconds, due_by=due_by,
                                     exclude_accounts=self.paused_accounts(now))
        except StoreUnavailable as error:
            # A claim whose commit was lost with the connection may still have leased targets.
            self.leases_stranded = True
            report.store_error = str(error)
            log.error("tick skipped: %s", error)
            return report
        report.claimed = len(claimed)
        if not claimed:
            return report
        report.taken_over = sum(1 for target in claimed if target.taken_over)
        if report.taken_over:
            log.info("took over %d targets whose lease had expired (their daemon stopped "
                     "without releasing them)", report.taken_over)
        plans = await self._plans(claimed, now)
        outcomes = await asyncio.gather(*(self._poll(target, plans.get(target.pk))
                                          for target in claimed))
        results: list[PollResult] = []
        schedule: dict[TargetKey, ScheduleUpdate] = {}
        handed_back: dict[int, datetime] = {}
        for target, outcome in zip(claimed, outcomes, strict=True):
            if isinstance(outcome, Deferred):
                handed_back[target.pk] = outcome.until
                continue
            results.append(outcome)
            schedule[target.key] = self._decide(target, outcome)
            provider = target.key.provider.value
            if isinstance(outcome, Observation):
                report.ok += 1
                report.polls_by_provider[provider, "ok"] += 1
            else:
                report.failed[outcome.kind] += 1
                report.polls_by_provider[provider, outcome.kind] += 1
        report.polled = len(results)
        report.deferred = len(handed_back)
        if results:
            await self._record(results, schedule, report)
        if handed_back:
            try:
                await off_loop(release, self.engine, handed_back)
            except StoreUnavailable as error:  # handed back by the next tick
                self.leases_stranded = True
                report.store_error = report.store_error or str(error)
        if report.store_error is not None:
            with contextlib.suppress(StoreUnavailable):  # still down: the next tick tries first
                await self._hand_back_stranded()
        return report

    async def _plans(self, claimed: list[ClaimedTarget], now: datetime) -> dict[int, Plan]:
        """What the list planners can serve of ``claimed`` (by pk); never raises."""
        plans: dict[int, Plan] = {}
        for account, planner in self.planners.items():
            gate = self.gates[account]
            mine = [t for t in claimed if t.key.account == account]
            if not mine or gate.is_paused(now):
                continue
            try:
                plans.update(await planner.plan(mine, off_loop))
            except StoreUnavailable as error:
                log.warning("list polling of account %r skipped: %s", account, error)
            except Exception:  # the list is an optimisation: single polls still work
                log.exception("list polling of account %r failed; polling one by one", account)
        return plans

    async def _hand_back_stranded(self) -> None:
        """Drop every lease this poller holds, keeping ``next_poll_at`` (due again at once).

        Called between polls only (ticks of one poller never overlap), when a tick could not
        record or hand back what it claimed; raises ``StoreUnavailable`` while still down."""
        self.leases_stranded = True
        released = await off_loop(release_owned, self.engine, self.owner)
        self.leases_stranded = False
        if released:
            log.warning("handed back %d targets whose results could not be recorded; they "
                        "are polled again now", released)

    # -- one target --------------------------------------------------------------------------

    async def _poll(self, target: ClaimedTarget, plan: Plan | None = None
                    ) -> PollResult | Deferred:
        account = target.key.account
        client, gate = self.clients.get(account), self.gates.get(account)
        if client is None or gate is None:
            log.warning("no configured account %r for %s: not polled", account, target.key)
            return Deferred(self.clock() + timedelta(seconds=self.settings.idle_interval_seconds))
        if isinstance(plan, Observation):  # served by the account's conference list
            gate.succeeded()
            return plan
        now = self.clock()
        if gate.is_paused(now) and gate.paused_until is not None:
            return Deferred(gate.paused_until)
        wait = gate.bucket.reserve(now, self.max_rate_wait_seconds)
        if wait is None:
            return Deferred(now + timedelta(seconds=gate.bucket.wait_seconds(now)))
        if wait > 0:
            if self.observer is not None:
                self.observer.observe_rate_limit_wait(target.key.provider.value, wait)
            await self.sleep(wait)
        slot = _PollSlot(self._semaphore)
        token = _poll_slot.set(slot)
        try:
            await self._semaphore.acquire()
            slot.held = True
            if gate.is_paused(self.clock()) and gate.paused_until is not None:
                return Deferred(gate.paused_until)
            return await self._fetch(client, gate, target, plan)
        finally:
            if slot.held:
                self._semaphore.release()
            _poll_slot.reset(token)

    def _pacer(self, account: str) -> Pacer:
        """The pacer of ``account``'s client: one token of its bucket per HTTP request.

        The gate is looked up at each request (a reload may hand the account's gate over). A
        poll's first request uses the token ``_poll`` took for it; a later one that must wait
        gives the poll's concurrency slot back while it waits, unless it is sent holding a lock
        other polls may wait on (``under_shared_lock``: the OAuth2 token fetch). Requests
        outside a poll (discovery, list polling) just wait for their token.
        """
        async def pace() -> None:
            slot = _poll_slot.get()
            if slot is not None and slot.prepaid:
                slot.prepaid = False
                return
            gate = self.gates.get(account)
            if gate is None:
                return
            wait = gate.bucket.reserve(self.clock())
            if not wait:
                return
            client = self.clients.get(account)
            if self.observer is not None and client is not None:
                self.observer.observe_rate_limit_wait(client.provider.value, wait)
            if slot is None or not slot.held or under_shared_lock.get():
                # Under the OAuth2 token lock the slot is kept: polls taking it meanwhile
                # would wait on that lock, and this one for the slot (a deadlock).
                await self.sleep(wait)
                return
            slot.held = False  # cancelled while waiting: nothing to give back
            slot.semaphore.release()
            await self.sleep(wait)
            await slot.semaphore.acquire()
            slot.held = True
        return pace

    async def _fetch(self, client: ProviderClient, gate: AccountGate, target: ClaimedTarget,
                     fetch: Callable[[], Awaitable[Observation]] | None = None) -> PollResult:
        key = target.key
        if self.observer is not None:
            late = (self.clock() - target.next_poll_at).total_seconds()
            self.observer.observe_poll_lateness(key.provider.value, late)
        started = time.perf_counter()
        try:
            try:
                observation = await (fetch() if fetch is not None else client.fetch(key))
            finally:
                if self.observer is not None:
                    self.observer.observe_poll_seconds(key.provider.value,
                                                       time.perf_counter() - started)
        except ProviderError as error:
            failure = PollFailure.from_error(key, self.clock(), error)
            log.warning("%s conference %s of account %r: poll failed (%s%s): %s",
                        key.provider.value, key.conference_id, key.account, failure.kind,
                        f", HTTP {failure.http_status}" if failure.http_status else "",
                        failure.message)
            self._pause_if_needed(gate, failure)
            return failure
        except Exception as error:  # the tick is the boundary: log, record, carry on
            log.exception("unexpected error polling %s conference %s of account %r",
                          key.provider.value, key.conference_id, key.account)
            return PollFailure(key, self.clock(), kind="bad_response",
                               message=f"unexpected {type(error).__name__} while polling")
        gate.succeeded()
        return observation

    def _pause_if_needed(self, gate: AccountGate, failure: PollFailure) -> None:
        key, at = failure.target, failure.observed_at
        if failure.kind == "rate_limited":
            seconds = failure.retry_after_seconds
            if seconds is None:
                seconds = transient_backoff_seconds(1, self.settings, self.rng)
            until = gate.pause(at, seconds, "rate_limited")
            log.warning("%s account %r rate limited: paused until %s", key.provider.value,
                        key.account, until.isoformat())
        elif failure.kind == "auth" and gate.auth_failed(at, self.auth_pause_seconds):
            log.error("%s account %r: credentials refused (HTTP %s: %s); account paused for "
                      "%.0f s, other accounts carry on. Check its credentials.",
                      key.provider.value, key.account, failure.http_status, failure.message,
                      self.auth_pause_seconds)

    def _decide(self, target: ClaimedTarget, result: PollResult) -> ScheduleUpdate:
        decision = next_schedule(target.state, result, result.observed_at, self.settings,
                                 self.rng)
        gate = self.gates.get(target.key.account)
        paused_until = gate.paused_until if gate is not None else None
        if decision.state != "retired" and paused_until is not None and (
                paused_until > decision.next_poll_at):
            decision = replace(decision, next_poll_at=paused_until)
        return decision

    async def _record(self, results: list[PollResult], schedule: Mapping[TargetKey, ScheduleUpdate],
                      report: TickReport) -> None:
        for attempt in range(1, self.store_attempts + 1):
            try:
                stats = await off_loop(self.recorder.record, results, schedule)
            except StoreUnavailable as error:
                if attempt == self.store_attempts:
                    report.store_error = str(error)
                    log.error("could not record %d poll results after %d attempts: %s",
                              len(results), attempt, error)
                    return
                await self.sleep(self.store_backoff_seconds * 2 ** (attempt - 1))
                continue
            report.unchanged += stats.unchanged
            report.transitions += stats.transitions
            report.member_events += stats.member_events
            for provider, n in stats.unchanged_by_provider.items():
                report.polls_by_provider[provider, "ok"] -= n
                report.polls_by_provider[provider, "unchanged"] += n
            report.transitions_by_status.update(stats.transitions_by_status)
            report.member_events_by_kind.update(stats.member_events_by_kind)
            for decision in schedule.values():
                if decision.state == "retired" and decision.retired_reason is not None:
                    report.retired[decision.retired_reason] += 1
            return
