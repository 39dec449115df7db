"""The long-running side of ``poller run``: tick on a clock, reload on SIGHUP, stop on SIGTERM.

:class:`Daemon` drives one :class:`poller.tick.Poller` from a :class:`poller.scheduler.
TickScheduler` and owns the process life (DESIGN §4):

* **SIGTERM / SIGINT**: no tick is started any more; the one in flight may finish within
  ``polling.shutdown_grace_seconds`` (recording its results), after which it is cancelled (a
  second SIGTERM / SIGINT cancels it at once: Ctrl-C twice stops now). The
  leases this process still holds are then released without moving ``next_poll_at``, so the
  abandoned and unpolled targets stay due for the next run; the clients are closed and
  :meth:`Daemon.run` returns (exit 0).
* **SIGHUP**: the config is loaded and validated again. A bad file (or an unset credential
  variable) logs one error and the running config carries on. Otherwise, between two ticks,
  the clients of changed accounts are rebuilt (unchanged ones, with their rate-limit and pause
  state, are kept), the targets are synced (new conferences due now, dropped ones retired
  ``removed``) and the tick period follows ``interval_seconds``. ``[database]``, ``[metrics]``
  and ``[health]`` changes need a restart.
* Signals that arrive before the event loop handles them (while ``poller run`` loads the
  config and migrates the database) are noted by :class:`EarlySignals` and acted on as soon as
  the daemon runs, so an early SIGHUP never kills the process and an early SIGTERM still stops
  it gracefully.
* **Discovery** (``poller.discovery``): a second APScheduler job runs
  :meth:`poller.discovery.Discovery.run` every ``polling.discovery_interval_seconds`` (first
  right after the start) for the accounts with ``discover = true``; a reload applies a new
  interval. A failing run is logged and the next one runs as usual; shutdown cancels one in
  flight (what it listed but did not store is listed again next time).
* A tick never takes the daemon down: ``StoreUnavailable`` is handled inside the tick, and any
  other exception is logged and the next tick runs as usual.
* **Retention**: every ``retention.prune_interval_seconds`` (after a tick; the first right
  after the first tick) old ``poll_error`` rows and, if configured, old raw payloads are pruned
  as ``poller prune`` would; a failure is logged and retried at the next interval.

* **Observability** (``docs/operations.md``): every tick feeds :class:`poller.metrics.
  PollerMetrics` (:func:`poller.metrics.observe_tick`, with per-provider, per-status and
  per-kind breakdowns; the poller reports poll latency and rate-limit waits, the provider HTTP
  layer response status classes). When ``[metrics]`` / ``[health]`` ``listen`` is set, their
  servers start before the first tick (an address in use is a ``ConfigError``: exit 2) and
  stop after the shutdown. ``/metrics`` refreshes the targets gauge from the database at each
  scrape; a reload that changes the tick period or timeouts moves the ``/readyz`` freshness
  bound with it.

:class:`SqliteLock` keeps a second daemon off a SQLite database (DESIGN §8).

* **Several daemons** (PostgreSQL, ``docs/scaling.md``): the daemon registers its ``[daemon]
  identity`` in ``poller_daemon`` before its first tick (an identity a live daemon holds is
  refused: ``IdentityInUse``, exit 2), leases what it claims under that identity, and every
  ``heartbeat_seconds`` refreshes its row and renews the leases of the polls it is working
  on (:mod:`poller.fleet`), also during the stop's grace time. The stop releases its leases and
  marks the row stopped. ``[daemon]`` changes need a restart. A heartbeat that finds the
  identity registered by another process since (this one was frozen or cut off for longer
  than its lease) stops the daemon at once, leaving the row and leases to the new holder;
  :meth:`Daemon.run` then raises :class:`poller.fleet.IdentityLost` (exit 1).
  While other daemons are live (as the last registration or heartbeat saw) a tick claims
  ``polling.concurrency`` targets at a time instead of four times that: targets fall due in
  clumps (those polled together), and smaller claims let the daemons share a clump instead of
  one taking it whole. ``Poller.run_due`` claims again at once while claims come back full,
  so this costs no throughput.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import socket
import time
import types
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from poller.app import build_account_client
from poller.config import Config, Credentials, DatabaseSettings
from poller.discovery import Discovery
from poller.errors import ConfigError, PollerError, StoreUnavailable
from poller.fleet import IdentityLost, heartbeat, mark_stopped, register
from poller.health import (
    ObservabilityServer,
    Readiness,
    build_server,
    create_observability_app,
    max_tick_age_seconds,
)
from poller.metrics import PollerMetrics, observe_tick
from poller.model import utc_now
from poller.providers import Clock, ProviderClient
from poller.scheduler import TickScheduler, tick_seconds
from poller.store.retention import prune
from poller.tick import Poller, TickReport, off_loop

log = logging.getLogger(__name__)

ConfigLoader = Callable[[], tuple[Config, Mapping[str, Credentials]]]
"""Loads and validates the config file and its credentials again (raises ``ConfigError``)."""


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
HANDLED_SIGNALS = (*STOP_SIGNALS, signal.SIGHUP)


class AlreadyRunning(PollerError):
    """Another poller process holds the SQLite database (the CLI exits 1)."""


class EarlySignals:
    """Notes SIGTERM / SIGINT / SIGHUP until :meth:`Daemon.run` handles them on its loop.

    Installed first thing by ``poller run``: loading the config and migrating the database
    take a while, and SIGHUP's default action would kill the process meanwhile.
    """

    def __init__(self) -> None:
        self.received: list[signal.Signals] = []
        self._previous: dict[signal.Signals, object] = {}

    def install(self) -> EarlySignals:
        """Start noting the signals (main thread only)."""
        for signum in HANDLED_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._note)
        return self

    def restore(self) -> None:
        """Put the previous handlers back."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _note(self, signum: int, _frame: types.FrameType | None) -> None:
        self.received.append(signal.Signals(signum))


class SqliteLock:
    """An exclusive ``flock`` on ``<database>.lock``, held for the life of the process.

    Why a sidecar file and ``flock``: SQLite's own locks last one transaction, not a process
    life, and ``PRAGMA locking_mode=EXCLUSIVE`` would also shut out readers such as
    ``poller report``. The kernel drops a ``flock`` when its process dies, however it dies, so a
    crash never leaves a stale lock behind (unlike a PID file). The file is never deleted:
    unlinking it would let a newcomer lock a fresh file while an old holder still runs.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @classmethod
    def for_database(cls, settings: DatabaseSettings) -> SqliteLock | None:
        """The lock of a SQLite file database, or ``None`` (PostgreSQL, in-memory SQLite)."""
        url = make_url(settings.url)
        if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
            return None
        return cls(Path(f"{url.database}.lock"))

    def acquire(self) -> None:
        """Take the lock, or raise :class:`AlreadyRunning` at once if another process has it."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise StoreUnavailable(f"cannot open lock file {self.path}: {error}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyRunning(
                f"another poller (`poller run` or `poller once`) is already using this SQLite "
                f"database (it holds {self.path}); only one poller may run on a SQLite file. "
                f"Stop the other one, or use PostgreSQL to run several.") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (also dropped by the kernel when the process ends)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class Daemon:
    """Ticks ``Poller`` on a clock until stopped; see the module docstring."""

    def __init__(self, config: Config, credentials: Mapping[str, Credentials], engine: Engine,
                 load: ConfigLoader, *, transport: httpx.AsyncBaseTransport | None = None,
                 clock: Clock = utc_now, metrics: PollerMetrics | None = None) -> None:
        self.config = config
        self.credentials = dict(credentials)
        self.engine = engine
        self.load = load
        self.transport = transport
        self.clock = clock
        self.metrics = metrics if metrics is not None else PollerMetrics(clock=clock)
        self.readiness = Readiness(engine, lambda: self.metrics.last_successful_tick_at,
                                   _freshness(config), clock=clock)
        self.servers: list[ObservabilityServer] = []
        """The metrics / health servers, while :meth:`run` serves them."""
        clients = {account.name: self._client(config, account.name) for account in
                   config.accounts}
        self.identity = config.daemon.effective_identity()
        """This daemon's name in ``poller_daemon`` and as ``lease_owner``."""
        self.lease_seconds = config.daemon.effective_lease_seconds(config.polling)
        self.heartbeat_seconds = config.daemon.effective_heartbeat_seconds(config.polling)
        self.poller = Poller(config, engine, clients, clock=clock, observer=self.metrics,
                             owner=self.identity, lease_seconds=self.lease_seconds)
        self.scheduler = TickScheduler(self._job, tick_seconds(config.polling))
        self._lock = asyncio.Lock()
        """Held by a tick and by a reload, so a reload swaps the poller between ticks."""
        self._stop = asyncio.Event()
        self._job_idle = asyncio.Event()
        self._job_idle.set()
        self._inflight: asyncio.Task[None] | None = None
        self._sync_pending = False
        self._background: set[asyncio.Task[None]] = set()
        self._force = asyncio.Event()
        """Set by a second stop signal: abandon in-flight polls without waiting for the grace."""
        self._next_prune_at: datetime | None = None
        self._registered = False
        self._host = socket.gethostname()
        self._identity_lost = False
        """Another process registered this identity after this one missed its heartbeats."""
        self._live_daemons = 1
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._polls_total = 0
        self._recent_polls: deque[tuple[float, int]] = deque()
        """``(time.monotonic(), polls)`` of each tick of the last minute."""
        self.discovery = Discovery()
        self._discovering: asyncio.Task[object] | None = None

    # -- life --------------------------------------------------------------------------------

    async def run(self, early: Iterable[signal.Signals] = ()) -> None:
        """Sync the targets, tick until SIGTERM / SIGINT (or :meth:`request_stop`), clean up.

        ``early``: signals received before the loop could handle them (:class:`EarlySignals`),
        acted on first.
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
            await off_loop(self._register)
            self._heartbeat_task = asyncio.ensure_future(self._heartbeats())
            async with self._lock:  # an early SIGHUP's reload syncs too: one at a time
                await off_loop(self.poller.sync)
        except BaseException:
            await self._stop_heartbeats()
            await self._mark_stopped()
            await self._stop_servers()
            await self.poller.aclose()
            raise
        try:
            if self._stop.is_set():  # stopped before the first tick
                await self._shutdown()
                return
            self.scheduler.start()
            self._schedule_discovery()
            log.info("poller running as %r: %d targets configured, ticking every %g s "
                     "(pid %d)", self.identity, len(self.config.targets()),
                     self.scheduler.seconds, os.getpid())
            await self._stop.wait()
            await self._shutdown()
        finally:
            await self._stop_servers()
        if self._identity_lost:
            raise IdentityLost(
                f"daemon identity {self.identity!r} was taken over by another process (this "
                f"one missed its heartbeats for longer than its {self.lease_seconds:g} s lease); "
                "stopped without touching its leases")

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

    async def _start_servers(self) -> None:
        """Start the ``[metrics]`` / ``[health]`` servers that are configured."""
        listeners = [
            ("metrics.listen", self.config.metrics.address,
             create_observability_app(self.metrics, None, engine=self.engine), "/metrics"),
            ("health.listen", self.config.health.address,
             create_observability_app(None, self.readiness), "/healthz, /readyz"),
        ]
        for key, address, app, paths in listeners:
            if address is None:
                continue
            server = build_server(app, *address, key=key)
            try:
                await server.start()
            except ConfigError as error:  # name the setting: the CLI prints only the message
                raise ConfigError(f"{key}: {error}", key=key) from None
            self.servers.append(server)
            for host, port in server.addresses:
                shown = f"[{host}]" if ":" in host else host
                log.info("serving %s on http://%s:%d (%s)", paths, shown, port, key)

    async def _stop_servers(self) -> None:
        servers, self.servers = self.servers, []
        for server in reversed(servers):
            try:
                await server.stop()
            except Exception:  # never keep the process from exiting
                log.exception("stopping the %s server failed", server.key)

    def _schedule_discovery(self) -> None:
        if any(account.discover for account in self.config.accounts):
            self.scheduler.add_periodic("discovery", "poller discovery", self._discover,
                                        self.config.polling.discovery_interval_seconds)

    async def _discover(self) -> None:
        """The discovery job: one run on the current poller; never raises."""
        if self._stop.is_set():
            return
        task = asyncio.ensure_future(self.discovery.run(self.poller))
        self._discovering = task
        try:
            await asyncio.wait([task])
            if not task.cancelled() and task.exception() is not None:
                log.error("discovery run failed; retried at the next interval",
                          exc_info=task.exception())
        finally:
            self._discovering = None

    async def _shutdown(self) -> None:
        self.scheduler.pause()
        discovering = self._discovering
        if discovering is not None:
            discovering.cancel()
            await asyncio.wait([discovering])
        grace = self.config.polling.shutdown_grace_seconds
        inflight = self._inflight
        if inflight is not None:
            forced = asyncio.ensure_future(self._force.wait())
            await asyncio.wait([inflight, forced], timeout=grace,
                               return_when=asyncio.FIRST_COMPLETED)
            forced.cancel()
            if not inflight.done():
                if self._force.is_set():
                    log.warning("abandoning in-flight polls at once (they stay due)")
                else:
                    log.warning("in-flight polls did not finish within %g s: abandoning them "
                                "(they stay due)", grace)
                inflight.cancel()
                await asyncio.wait([inflight])
        await self._job_idle.wait()
        self.scheduler.shutdown()
        await self._stop_heartbeats()
        async with self._lock:  # let a reload under way finish before closing its clients
            try:
                released = 0 if self._identity_lost else await off_loop(
                    self.poller.release_leases)
            except StoreUnavailable as error:
                log.error("could not release leases (they expire on their own): %s", error)
            else:
                if released:
                    log.info("released %d leases of abandoned polls", released)
            await self._mark_stopped()
            await self.poller.aclose()
        log.info("poller stopped")

    # -- identity and heartbeat --------------------------------------------------------------

    def _register(self) -> None:
        """Claim this daemon's identity (``IdentityInUse`` if a live daemon has it)."""
        registration = register(self.engine, self.identity, host=self._host, pid=os.getpid(),
                                now=self.clock(), lease_seconds=self.lease_seconds)
        self._registered = True
        self._fleet_size(registration.live)
        log.info("registered as daemon %r (lease %g s, heartbeat every %g s)", self.identity,
                 self.lease_seconds, self.heartbeat_seconds)
        if registration.released:
            log.warning("released %d leases left by an earlier process of identity %r; those "
                        "targets are polled again now", registration.released, self.identity)

    async def _heartbeats(self) -> None:
        """Beat every ``heartbeat_seconds`` until cancelled; a failed beat is logged only."""
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            try:
                total, last_minute = self._poll_counts()
                beat = await off_loop(heartbeat, self.engine, self.identity,
                                      now=self.clock(), lease_seconds=self.lease_seconds,
                                      polls_total=total, polls_last_minute=last_minute,
                                      host=self._host, pid=os.getpid())
            except StoreUnavailable as error:
                log.warning("heartbeat failed (leases last %g s; retried in %g s): %s",
                            self.lease_seconds, self.heartbeat_seconds, error)
            except Exception:  # the heartbeat never dies of one failure
                log.exception("heartbeat failed; retried in %g s", self.heartbeat_seconds)
            else:
                if not beat.owned:
                    log.error("daemon identity %r was registered by another process after this "
                              "one missed its heartbeats for longer than its lease (%g s): "
                              "stopping at once, leaving its leases and row to the new holder",
                              self.identity, self.lease_seconds)
                    self._identity_lost = True
                    self._registered = False
                    self.request_stop("identity lost")
                    self.request_stop("identity lost")  # at once: polls in flight abandoned
                    return
                self.metrics.leases_renewed(beat.renewed)
                self._fleet_size(beat.live)

    def _fleet_size(self, live: int) -> None:
        """Claim ``concurrency`` targets at a time while other daemons are live (module doc)."""
        self._live_daemons = live
        batch = self.config.polling.concurrency if live > 1 else 4 * (
            self.config.polling.concurrency)
        if batch != self.poller.batch_size:
            log.info("%s: claiming up to %d targets at a time",
                     f"{live} daemons live" if live > 1 else "no other daemon live", batch)
            self.poller.batch_size = batch

    async def _stop_heartbeats(self) -> None:
        task, self._heartbeat_task = self._heartbeat_task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])

    async def _mark_stopped(self) -> None:
        if not self._registered:
            return
        self._registered = False
        total, last_minute = self._poll_counts()
        try:
            await off_loop(mark_stopped, self.engine, self.identity, now=self.clock(),
                           polls_total=total, polls_last_minute=last_minute)
        except StoreUnavailable as error:
            log.error("could not mark daemon %r stopped (it shows as lost once its heartbeat "
                      "is %g s old): %s", self.identity, self.lease_seconds, error)

    def _count_polls(self, polled: int) -> None:
        self._polls_total += polled
        if polled:
            self._recent_polls.append((time.monotonic(), polled))

    def _poll_counts(self) -> tuple[int, int]:
        """Polls since start, and in the last minute."""
        horizon = time.monotonic() - 60.0
        while self._recent_polls and self._recent_polls[0][0] < horizon:
            self._recent_polls.popleft()
        return self._polls_total, sum(n for _, n in self._recent_polls)

    # -- ticks -------------------------------------------------------------------------------

    async def _job(self) -> None:
        """The scheduler's job: one tick, as a task the shutdown can wait for or cancel."""
        if self._stop.is_set():
            return
        self._job_idle.clear()
        try:
            async with self._lock:
                if self._stop.is_set():
                    return
                self._inflight = asyncio.ensure_future(self._tick())
                await asyncio.wait([self._inflight])
        finally:
            self._inflight = None
            self._job_idle.set()

    async def _tick(self) -> None:
        try:
            if self._sync_pending:
                await off_loop(self.poller.sync)
                self._sync_pending = False
            await self.poller.run_due(keep_going=lambda: not self._stop.is_set(),
                                      on_tick=self._observe)
        except Exception:  # the daemon never dies of one tick
            log.exception("tick failed; carrying on with the next one")
            return
        await self._prune_if_due()

    def _observe(self, report: TickReport) -> None:
        """Count one tick's report in the metrics and log it."""
        self._count_polls(report.polled)
        observe_tick(self.metrics, report, by_provider=report.by_provider(),
                     transitions_by_status=report.transitions_by_status,
                     member_events_by_kind=report.member_events_by_kind)
        _log_report(report)

    async def _prune_if_due(self) -> None:
        """Prune old history by ``[retention]`` when ``prune_interval_seconds`` has passed."""
        retention = self.config.retention
        now = self.clock()
        if retention.prune_interval_seconds <= 0 or (
                self._next_prune_at is not None and now < self._next_prune_at):
            return
        self._next_prune_at = now + timedelta(seconds=retention.prune_interval_seconds)
        try:
            stats = await off_loop(prune, self.engine,
                                   poll_error_days=retention.poll_error_days,
                                   raw_payload_days=retention.raw_payload_days, now=now)
        except StoreUnavailable as error:
            log.error("pruning old history failed (retried in %g s): %s",
                      retention.prune_interval_seconds, error)
            return
        if stats.poll_errors_deleted or stats.raw_payloads_cleared:
            log.info("pruned %d poll_error rows and %d raw payloads",
                     stats.poll_errors_deleted, stats.raw_payloads_cleared)

    # -- reload ------------------------------------------------------------------------------

    async def reload(self) -> None:
        """Load the config again and apply it between two ticks; keep the old one if bad."""
        try:
            config, credentials = await off_loop(self.load)
        except ConfigError as error:
            log.error("configuration not reloaded, the running one carries on: %s", error)
            return
        if config.database != self.config.database:
            log.warning("[database] changed: that takes a restart; the running database "
                        "is kept")
            config = config.model_copy(update={"database": self.config.database})
        if config.daemon != self.config.daemon:
            log.warning("[daemon] changed: that takes a restart; the running identity and "
                        "lease times are kept")
            config = config.model_copy(update={"daemon": self.config.daemon})
        if (config.metrics, config.health) != (self.config.metrics, self.config.health):
            log.warning("[metrics] / [health] changed: that takes a restart; the running "
                        "servers are kept")
            config = config.model_copy(update={"metrics": self.config.metrics,
                                               "health": self.config.health})
        async with self._lock:
            if self._stop.is_set():
                return
            old, old_config, old_credentials = self.poller, self.config, self.credentials
            self.config, self.credentials = config, dict(credentials)
            clients: dict[str, ProviderClient] = {}
            stale: list[ProviderClient] = list(old.clients.values())
            kept: set[str] = set()
            for account in config.accounts:
                name = account.name
                if (name in old.clients and config.polling == old_config.polling
                        and _same_account(old_config, config, name)
                        and old_credentials.get(name) == credentials.get(name)):
                    clients[name] = old.clients[name]
                    stale.remove(old.clients[name])
                    kept.add(name)
                else:
                    clients[name] = self._client(config, name)
            self.poller = Poller(config, self.engine, clients, clock=self.clock,
                                 owner=old.owner, lease_seconds=old.lease_seconds,
                                 observer=self.metrics)
            self.poller.leases_stranded = old.leases_stranded  # handed back at the next tick
            self._fleet_size(self._live_daemons)
            for name in kept:  # keep their token buckets and pauses
                self.poller.gates[name] = old.gates[name]
            for client in stale:
                await client.aclose()
            self.scheduler.reschedule(tick_seconds(config.polling))
            self._schedule_discovery()
            self.readiness.max_tick_age_seconds = _freshness(config)
            rebuilt = sorted(set(clients) - kept)
            log.info("configuration reloaded: %d accounts (%s rebuilt)", len(clients),
                     ", ".join(rebuilt) or "none")
            try:
                await off_loop(self.poller.sync)
            except StoreUnavailable as error:
                self._sync_pending = True
                log.error("targets not synced yet (retried at the next tick): %s", error)

    def _client(self, config: Config, name: str) -> ProviderClient:
        return build_account_client(config.account(name), config.polling,
                                    self.credentials[name], transport=self.transport,
                                    clock=self.clock, observer=self.metrics)


def _freshness(config: Config) -> float:
    """The ``/readyz`` tick freshness bound for ``config``."""
    return max_tick_age_seconds(config.polling, tick_seconds(config.polling))


def _same_account(old: Config, new: Config, name: str) -> bool:
    try:
        before = old.account(name)
    except KeyError:
        return False
    # Conference lists do not shape the client; everything else (URLs, rates, auth) does.
    return (before.model_copy(update={"conferences": ()})
            == new.account(name).model_copy(update={"conferences": ()}))


def _log_report(report: TickReport) -> None:
    if not report.claimed:
        return
    eventful = (report.failures or report.transitions or report.member_events
                or report.retired or report.store_error)
    log.log(logging.INFO if eventful else logging.DEBUG, "tick: %s", report.summary())
