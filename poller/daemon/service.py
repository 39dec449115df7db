"""The long-running side of ``poller run``: tick on a clock, reload on SIGHUP, stop on SIGTERM.

:class:`Daemon` drives one :class:`~poller.polling.pipeline.Pipeline` (a poller claiming,
polling and recording continuously, spooling while the store is away) from a
:class:`~poller.daemon.ticker.TickScheduler` and owns the process life (DESIGN §4):

* **Start**: register and sync the targets (``poller.daemon.joining``: with the store away,
  the configured conferences are polled into the spool meanwhile), then tick.
* **SIGTERM / SIGINT**: nothing more is claimed; the polls in flight may finish within
  ``polling.shutdown_grace_seconds``, then they are cancelled (a second signal cancels them at
  once: Ctrl-C twice stops now); everything fetched is recorded, or spooled. The leases still
  held are released without moving ``next_poll_at`` (the targets stay due), the clients are
  closed and :meth:`Daemon.run` returns (exit 0). Signals received before the loop handled
  them (``poller.daemon.signals``) are acted on first.
* **SIGHUP**: the config is loaded and validated again. A bad file (or an unset credential
  variable, or an account whose client cannot be built) logs one error and the running
  configuration carries on whole. Otherwise, between two ticks, the app builds new accounts
  (unchanged ones carried over with their rate-limit and pause state), a new poller replaces
  the old one, the targets are synced and the tick period follows ``interval_seconds``; what
  needs a restart is kept (``poller.daemon.reload``).
* **Side jobs** (``poller.daemon.jobs``): discovery for the accounts with ``discover = true``,
  the reconciliation of provider events (``[webhooks] listen``) and Telnyx detail records,
  each an APScheduler job of its own; a reload applies new intervals. A failing run is
  logged; shutdown cancels one in flight (it is done again next time).
* A tick never takes the daemon down: an unavailable store is handled inside the pipeline, and
  any other exception is logged and the next tick runs as usual.
* **Retention** after a tick, every ``prune_interval_seconds`` (``poller.daemon.pruning``).
* **Observability** (``docs/operations.md``): every tick feeds the app's
  :class:`~poller.daemon.metrics.PollerMetrics`; when ``[metrics]`` / ``[health]`` ``listen``
  is set, their servers (``poller.daemon.endpoints``) start before the first tick (an address
  in use is a ``ConfigError``: exit 2) and stop after the shutdown.
* **Several daemons** (PostgreSQL, ``docs/scaling.md``): the daemon registers, beats and
  stops as ``poller.daemon.membership`` describes; one whose identity was taken over stops at
  once and :meth:`Daemon.run` raises :class:`~poller.errors.IdentityLost` (exit 1). While other
  daemons are live a tick claims one target per poll slot at a time instead of four; the
  pipeline claims again at once while claims come back full, so this costs no throughput.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from poller.config import Config, Credentials, resolve_webhook_secrets
from poller.daemon.endpoints import (
    ObservabilityServer,
    Readiness,
    max_tick_age_seconds,
    start_servers,
    stop_servers,
)
from poller.daemon.jobs import SideJobs
from poller.daemon.joining import Joining
from poller.daemon.logs import log_tick, set_daemon
from poller.daemon.membership import Membership
from poller.daemon.metrics import PollerMetrics, observe_tick
from poller.daemon.pruning import Pruner
from poller.daemon.reload import settle
from poller.daemon.signals import HANDLED_SIGNALS, STOP_SIGNALS
from poller.daemon.ticker import TickScheduler, tick_seconds
from poller.daemon.webhooks import WebhookReceiver, start_receiver
from poller.errors import ConfigError, IdentityInUse, IdentityLost, StoreUnavailable
from poller.polling.pipeline import Pipeline
from poller.polling.report import TickReport
from poller.store.gateway import Store
from poller.store.spool import Spool

if TYPE_CHECKING:
    from poller.app import App

log = logging.getLogger(__name__)

ROUND_SHARE = 0.4
"""A tick's claim round may go on (claiming again as polls end) for this share of the tick
period: ticks are at least half a period apart (``poller.daemon.ticker``), so a round is over
before the next tick is due, which would otherwise be skipped with a warning."""

ConfigLoader = Callable[[], tuple[Config, Mapping[str, Credentials]]]
"""Loads and validates the config file and its credentials again (raises ``ConfigError``)."""


class Daemon:
    """Ticks a poller on a clock until stopped; see the module docstring."""

    def __init__(self, app: App, store: Store, load: ConfigLoader, spool: Spool) -> None:
        if app.metrics is None:
            raise ValueError("the daemon's app needs metrics (App.daemon provides them)")
        self.app = app
        self.config = app.config
        self.store = store
        self.load = load
        self.clock = app.clock
        self.metrics: PollerMetrics = app.metrics
        self.readiness = Readiness(store.engine, lambda: self.metrics.last_successful_tick_at,
                                   _freshness(self.config), clock=self.clock,
                                   store_problem=store.problem,
                                   spool_problem=lambda: self.pipeline.problem())
        self.servers: list[ObservabilityServer] = []
        """The metrics / health / webhook servers, while :meth:`run` serves them."""
        self.receiver = WebhookReceiver(self.config, resolve_webhook_secrets(self.config), store,
                                        clock=self.clock, metrics=self.metrics,
                                        internal=app.internal)
        self.internal = app.internal
        self.membership = Membership(store, self.config.daemon, self.config.polling,
                                     clock=self.clock, metrics=self.metrics,
                                     internal=self.internal, on_fleet_size=self._fleet_size,
                                     on_lost=self._identity_lost)
        self.identity = self.membership.identity
        set_daemon(self.identity)  # every JSON log line says which daemon wrote it
        self.lease_seconds = self.membership.lease_seconds
        self.poller = app.poller(store, owner=self.identity, lease_seconds=self.lease_seconds)
        self.spool = spool
        self.pipeline = Pipeline(self.poller, spool, on_report=self._observe,
                                 ready=lambda: (self.membership.registered
                                                and not self._lost_store()))
        """Claims, polls and records (or spools) continuously (``poller.polling.pipeline``)."""
        self.scheduler = TickScheduler(self._job, tick_seconds(self.config.polling))
        self._lock = asyncio.Lock()
        """Held by a tick and by a reload, so a reload swaps the poller between ticks."""
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        """Set by a second stop signal: abandon in-flight polls without waiting for the grace."""
        self._job_idle = asyncio.Event()
        self._job_idle.set()
        self._fatal: BaseException | None = None
        """Why the daemon stopped by itself (raised once it has stopped)."""
        self._background: set[asyncio.Task[None]] = set()
        self.pruner = Pruner(store, clock=self.clock, internal=self.internal)
        self._store_lost: str | None = None
        """Why recording stopped for good (the SQLite file was deleted or replaced): from then
        on the pipeline is not ready, so polls that end meanwhile go to the spool (replayed by
        the next start), never into the lost file."""
        self.jobs = SideJobs(self.scheduler, lambda: self.poller, self.receiver, self.internal,
                             self._stop.is_set)
        """Discovery, reconciliation and detail records (``poller.daemon.jobs``)."""
        self.joining = Joining(store, self.membership, lambda: self.poller,
                               spool=spool.directory, clock=self.clock, internal=self.internal,
                               on_refused=self._refused)

    # -- life --------------------------------------------------------------------------------

    async def run(self, early: Iterable[signal.Signals] = ()) -> None:
        """Sync the targets, tick until SIGTERM / SIGINT (or :meth:`request_stop`), clean up.

        ``early``: signals received before the loop could handle them, acted on first.
        """
        loop = asyncio.get_running_loop()
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, self.request_stop, signum.name)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        try:
            for signum in early:
                if signum == signal.SIGHUP:
                    self.request_reload()
                else:
                    self.request_stop(signum.name)
            await self._serve_and_tick()
        finally:
            for signum in HANDLED_SIGNALS:
                loop.remove_signal_handler(signum)

    async def _serve_and_tick(self) -> None:
        try:
            await self._start_servers()
            async with self._lock:  # an early SIGHUP's reload syncs too: one at a time
                await self.joining.join(starting=True)
        except BaseException:
            await self.membership.stop_heartbeats()
            await self.membership.mark_stopped()
            await self._stop_servers()
            await self.poller.aclose()
            raise
        try:
            if self._stop.is_set():  # stopped before the first tick
                await self._shutdown()
                return
            self.scheduler.start()
            self.jobs.schedule(self.config)
            log.info("poller running as %r: %d targets configured, ticking every %g s "
                     "(pid %d)", self.identity, len(self.config.targets()),
                     self.scheduler.seconds, os.getpid())
            await self._stop.wait()
            await self._shutdown()
        finally:
            await self._stop_servers()
        if self._fatal is not None:
            raise self._fatal
        if self.membership.lost:
            raise IdentityLost(
                f"daemon identity {self.identity!r} was taken over by another process (this "
                f"one missed its heartbeats for longer than its {self.lease_seconds:g} s lease); "
                "stopped without touching its leases")

    def _refused(self, error: IdentityInUse) -> None:
        """A live daemon holds this identity (found once the store was back): stop with it."""
        self._fatal = error
        self._identity_lost()

    def request_stop(self, why: str = "request") -> None:
        """Begin a graceful stop (the SIGTERM / SIGINT handler); a second one stops at once."""
        if not self._stop.is_set():
            log.info("%s received: stopping (grace %g s; send it again to stop at once)", why,
                     self.config.polling.shutdown_grace_seconds)
            self._stop.set()
        elif not self._force.is_set():
            log.warning("%s received again: abandoning in-flight polls now", why)
            self._force.set()

    def request_reload(self) -> None:
        """Reload the config in the background (the SIGHUP handler)."""
        log.info("SIGHUP received: reloading the configuration")
        task = asyncio.ensure_future(self.reload())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _identity_lost(self) -> None:
        """Another process holds the identity now: stop at once, polls in flight abandoned."""
        self.request_stop("identity lost")
        self.request_stop("identity lost")

    def _fleet_size(self, live: int) -> None:
        """Claim one target per poll slot at a time while other daemons are live, four alone
        (module doc)."""
        factor = 1 if live > 1 else 4
        if factor != self.poller.claim_factor:
            self.poller.claim_factor = factor
            log.info("%s: claiming up to %d targets at a time (%d per poll slot)",
                     f"{live} daemons live" if live > 1 else "no other daemon live",
                     self.poller.batch_size, factor)

    async def _start_servers(self) -> None:
        """Start the ``[metrics]`` / ``[health]`` / ``[webhooks]`` servers configured."""
        await start_servers(self.servers, self.config, self.metrics, self.readiness,
                            self.store.engine)
        await start_receiver(self.servers, self.receiver, self.config.webhooks)

    async def _stop_servers(self) -> None:
        servers, self.servers = self.servers, []
        await stop_servers(servers)

    async def _shutdown(self) -> None:
        self.scheduler.pause()
        await self.jobs.cancel()
        await self._job_idle.wait()
        await self.joining.cancel()
        grace = self.config.polling.shutdown_grace_seconds
        abandoned = await self.pipeline.stop(grace, self._force)
        if abandoned:
            if self._force.is_set():
                log.warning("abandoning in-flight polls at once (they stay due): %d", abandoned)
            else:
                log.warning("%d in-flight polls did not finish within %g s: abandoning them "
                            "(they stay due)", abandoned, grace)
        self.scheduler.shutdown()
        await self.membership.stop_heartbeats()
        async with self._lock:  # let a reload under way finish before closing its clients
            try:
                released = (await self.poller.release_leases()
                            if self.membership.registered else 0)
            except StoreUnavailable as error:
                log.error("could not release leases (they expire on their own): %s", error)
            else:
                if released:
                    log.info("released %d leases of abandoned polls", released)
            await self.membership.mark_stopped()
            await self.poller.aclose()
        if not self.spool.empty:
            log.warning("%d results wait in the spool %s: the next start replays them",
                        self.spool.results, self.spool.directory)
        self.spool.close()
        log.info("poller stopped")

    # -- ticks -------------------------------------------------------------------------------

    async def _job(self) -> None:
        """The scheduler's job: one round of claims (quick: the polls run on their own)."""
        if self._stop.is_set():
            return
        self._job_idle.clear()
        try:
            async with self._lock:
                if not self._stop.is_set():
                    await self._tick()
        finally:
            self._job_idle.set()

    async def _tick(self) -> None:
        if self._lost_store():
            return
        try:
            self.joining.later()
            # Claiming again as polls end, until just before the next tick may start.
            until = asyncio.get_running_loop().time() + ROUND_SHARE * self.scheduler.seconds
            await self.pipeline.run_due(keep_going=lambda: not self._stop.is_set(), until=until)
        except Exception as error:  # the daemon never dies of one tick
            self.internal.report("tick", error, "ticking (the next tick runs as usual)")
            return
        if not self.pipeline.offline:  # a store that is away is not asked to prune
            await self.pruner.prune_if_due(self.config.retention)

    def _lost_store(self) -> bool:
        """Whether the store's file is gone (checked every tick; said once, loudly)."""
        problem = self._store_lost or self.store.problem()
        if problem is not None and self._store_lost is None:
            self._store_lost = problem
            log.error("%s: nothing more is recorded (it would go to a file no one can open "
                      "again); /readyz fails until poller is restarted on the file at that path",
                      problem)
        return problem is not None

    def _observe(self, report: TickReport) -> None:
        """Count one tick's report in the metrics and log it."""
        self.membership.count_polls(report.polled)
        self.metrics.spool_bytes.set(self.spool.bytes)
        self.metrics.spool_waiting.set(self.spool.results)
        slots = self.poller.pacer.slots
        self.metrics.set_poll_slots(slots.limit, slots.in_use, slots.waiting)
        observe_tick(self.metrics, report, by_provider=report.by_provider(),
                     transitions_by_status=report.transitions_by_status,
                     member_events_by_kind=report.member_events_by_kind)
        log_tick(report)

    # -- reload ------------------------------------------------------------------------------

    async def reload(self) -> None:
        """Load the config again and apply it between two ticks, all or nothing: whatever goes
        wrong, the running configuration carries on whole, and one line says why."""
        try:
            await self._reload()
        except Exception as error:
            self.internal.report("reload", error, "reloading the configuration (the running "
                                                  "one carries on)")

    async def _reload(self) -> None:
        try:
            config, credentials = await asyncio.to_thread(self.load)
            secrets = resolve_webhook_secrets(config)
        except ConfigError as error:
            log.error("configuration not reloaded, the running one carries on: %s", error)
            return
        app = self.app.reconfigured(settle(self.config, config), credentials)
        async with self._lock:
            if self._stop.is_set():
                return
            await self.joining.cancel()  # its sync is the old config's: this one syncs anew
            old = self.poller
            try:
                accounts = app.accounts(self.store, previous=old.accounts)
            except ConfigError as error:
                log.error("configuration not reloaded, the running one carries on: %s", error)
                return
            self.app, self.config = app, app.config
            self.receiver.reconfigure(app.config, secrets)
            self.poller = app.poller(self.store, accounts, owner=self.identity,
                                     lease_seconds=self.lease_seconds)
            self.poller.leases_stranded = old.leases_stranded  # handed back at the next tick
            self.poller.backoff = old.backoff  # a store still away stays so
            self.poller.pacer.slots.carry_over(old.pacer.slots)  # auto: what it learnt
            self._fleet_size(self.membership.live)
            self.pipeline.replace(self.poller)  # the old accounts close once their polls end
            self.scheduler.reschedule(tick_seconds(app.config.polling))
            self.jobs.schedule(self.config)
            self.readiness.max_tick_age_seconds = _freshness(app.config)
            kept = accounts.kept_from(old.accounts)
            rebuilt = sorted(account.name for account in accounts if account.name not in kept)
            log.info("configuration reloaded: %d accounts (%s rebuilt)", len(accounts),
                     ", ".join(rebuilt) or "none")
            try:
                await self.poller.sync()
                self.joining.sync_pending = False
            except StoreUnavailable as error:
                self.joining.sync_pending = True
                log.error("targets not synced yet (retried at the next tick): %s", error)


def _freshness(config: Config) -> float:
    """The ``/readyz`` tick freshness bound for ``config``."""
    return max_tick_age_seconds(config.polling, tick_seconds(config.polling))
