"""The daemon's HTTP side: ``/metrics``, ``/healthz`` and ``/readyz`` on one small ASGI app.

* ``/healthz``: 200 whenever the process answers (liveness).
* ``/readyz``: 200 only when every :class:`Readiness` check passes: the database answers a
  cheap query, its schema is at the newest migration, and a tick recorded its results within
  ``max_tick_age_seconds``. Otherwise 503, with a JSON body naming each failing check.
* ``/metrics``: the Prometheus text format of a :class:`~poller.daemon.metrics.PollerMetrics`
  registry;
  with an ``engine``, the targets-by-state gauge is refreshed from the database first.

Database work runs in a worker thread, never on the event loop the ticks share. The app is
built by :func:`create_observability_app` and served by :func:`serve`, a uvicorn server that
leaves signal handling to the daemon. Both endpoints are off unless ``[metrics]`` / ``[health]``
``listen`` is set (``poller.config.ListenSettings``). The queries are the store's
(:func:`poller.store.migrate.revision_of`, :func:`poller.store.targets.count_targets`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from poller.config import Config, PollingSettings
from poller.daemon.metrics import PollerMetrics
from poller.errors import ConfigError, StoreUnavailable
from poller.model import utc_now
from poller.store import migrate
from poller.store.targets import count_targets

log = logging.getLogger(__name__)

FRESHNESS_FACTOR: Final = 3.0
"""A tick older than this many tick periods makes the poller not ready."""


def max_tick_age_seconds(polling: PollingSettings, tick_period_seconds: float) -> float:
    """The default freshness bound of ``/readyz``: ``FRESHNESS_FACTOR`` × the longest of the tick
    period, ``interval_seconds`` and one slow request (connect + read timeouts).

    The last term matters because a tick ends only when its slowest poll does: with the
    defaults (0.25 s ticks, 10 s interval, 5 + 15 s timeouts) the bound is 60 s, so one provider
    timing out does not make the poller flap to not-ready.
    """
    slow_request = polling.connect_timeout_seconds + polling.read_timeout_seconds
    return FRESHNESS_FACTOR * max(tick_period_seconds, polling.interval_seconds, slow_request)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One readiness check: its name, whether it passed, and why not."""

    name: str
    ok: bool
    detail: str = ""


@dataclass(slots=True)
class Readiness:
    """The checks behind ``/readyz``: database, migrations, tick freshness.

    ``last_tick`` returns when the last tick recorded its results (``None``: none yet, which
    is not ready); usually ``PollerMetrics``'s ``last_successful_tick_at`` property getter.
    ``clock`` is injected so tests can age the last tick.
    """

    engine: Engine
    last_tick: Callable[[], datetime | None]
    max_tick_age_seconds: float
    clock: Callable[[], datetime] = utc_now
    head_revision: str | None = None
    """The migration head to expect (default: read once from the migration tree)."""
    store_problem: Callable[[], str | None] = lambda: None
    """Why the store must not be used although it answers (its SQLite file was replaced)."""
    spool_problem: Callable[[], str | None] = lambda: None
    """Why results wait in the spool (``poller.polling.pipeline``), or ``None``: none wait."""

    def check(self) -> list[CheckResult]:
        """Run every check (blocking: the database is queried) and return their results."""
        return [*self._database_checks(), self._tick_check(), self._spool_check()]

    def _spool_check(self) -> CheckResult:
        problem = self.spool_problem()
        return CheckResult("spool", True) if problem is None else CheckResult(
            "spool", False, problem)

    def _database_checks(self) -> list[CheckResult]:
        problem = self.store_problem()
        if problem is not None:
            return [CheckResult("database", False, f"{problem}: restart poller"),
                    CheckResult("migrations", False, "database file lost")]
        try:
            revision = migrate.revision_of(self.engine, "readiness check")
        except StoreUnavailable as error:
            return [CheckResult("database", False, str(error)),
                    CheckResult("migrations", False, "database unavailable")]
        database = CheckResult("database", True)
        if self.head_revision is None:
            try:
                self.head_revision = migrate.head()
            except StoreUnavailable as error:  # no migration scripts beside the package
                return [database, CheckResult("migrations", False, str(error))]
        if revision != self.head_revision:
            return [database, CheckResult(
                "migrations", False,
                f"schema at {revision or 'no revision'}, expected {self.head_revision}: "
                "run `poller db upgrade`")]
        return [database, CheckResult("migrations", True)]

    def _tick_check(self) -> CheckResult:
        last = self.last_tick()
        if last is None:
            return CheckResult("tick", False, "no tick has recorded its results yet")
        age = (self.clock() - last).total_seconds()
        if age > self.max_tick_age_seconds:
            return CheckResult("tick", False, f"last successful tick {age:.0f} s ago (limit "
                                              f"{self.max_tick_age_seconds:.0f} s)")
        return CheckResult("tick", True)


def create_observability_app(metrics: PollerMetrics | None, readiness: Readiness | None, *,
                             engine: Engine | None = None) -> Starlette:
    """An ASGI app with ``/healthz``, ``/metrics`` (if ``metrics``), ``/readyz`` (if ``readiness``).

    ``engine``: refresh ``poller_targets`` from this database on each scrape (a failure is
    logged and the previous values are served). Build one app per listener: pass ``None`` for
    what that listener should not serve.
    """
    routes = [Route("/healthz", _healthz, methods=["GET"])]
    if metrics is not None:
        routes.append(Route("/metrics", _metrics_endpoint(metrics, engine), methods=["GET"]))
    if readiness is not None:
        routes.append(Route("/readyz", _readyz_endpoint(readiness), methods=["GET"]))
    return Starlette(routes=routes)


async def _healthz(_request: Request) -> Response:
    return PlainTextResponse("ok\n")


def _metrics_endpoint(metrics: PollerMetrics, engine: Engine | None
                      ) -> Callable[[Request], Awaitable[Response]]:
    def scrape() -> bytes:
        if engine is not None:
            try:
                metrics.set_targets(count_targets(engine))
            except StoreUnavailable as error:
                log.warning("poller_targets not refreshed: %s", error)
        return generate_latest(metrics.registry)

    async def endpoint(_request: Request) -> Response:
        return Response(await run_in_threadpool(scrape), media_type=CONTENT_TYPE_LATEST)

    return endpoint


def _readyz_endpoint(readiness: Readiness) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(_request: Request) -> Response:
        results = await run_in_threadpool(readiness.check)
        failing = [r for r in results if not r.ok]
        body = {"ready": not failing,
                "checks": {r.name: ("ok" if r.ok else r.detail) for r in results},
                "failing": [r.name for r in failing]}
        return JSONResponse(body, status_code=503 if failing else 200)

    return endpoint


class ObservabilityServer(uvicorn.Server):
    """A uvicorn server that leaves the process's signal handlers alone.

    ``listening`` is set once the sockets are bound (:attr:`addresses` then says where, which
    matters with port 0). Stop it gracefully with ``should_exit = True``.
    """

    def __init__(self, config: uvicorn.Config, *, key: str | None = None) -> None:
        super().__init__(config)
        self.key = key
        self.listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Install nothing: the daemon owns SIGTERM / SIGINT / SIGHUP and stops us itself."""
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Bind and start serving, then set :attr:`listening`.

        uvicorn calls ``sys.exit`` when it cannot bind; that becomes a ``ConfigError`` naming
        the address (and ``key``, the setting it came from), so the daemon reports it like any
        other start-up error instead of dying of a stray ``SystemExit``.
        """
        try:
            await super().startup(sockets)
        except SystemExit as exit_:
            reason = exit_.__context__
            raise ConfigError(
                f"cannot listen on {self.config.host}:{self.config.port}"
                + (f": {reason}" if reason is not None else ""), key=self.key) from reason
        if self.started:
            self.listening.set()

    async def start(self) -> None:
        """Serve in a background task; return once listening (or raise its start-up error)."""
        self._task = asyncio.create_task(self.serve(), name=f"serve {self.key or 'http'}")
        listening = asyncio.create_task(self.listening.wait())
        try:
            await asyncio.wait({self._task, listening}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            listening.cancel()
        if self._task.done():
            self._task.result()  # the start-up error, e.g. ConfigError (address in use)

    async def stop(self) -> None:
        """Stop gracefully (open requests may finish) and wait for the task of :meth:`start`."""
        self.should_exit = True
        if self._task is not None:
            await self._task

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every bound socket (empty before :attr:`listening`)."""
        return [sock.getsockname()[:2] for server in self.servers for sock in server.sockets]


def build_server(app: Starlette, host: str, port: int, *, key: str | None = None,
                 limit_concurrency: int | None = None) -> ObservabilityServer:
    """A server for ``app`` on ``host:port`` (no signal handlers, no access log lines).

    ``key`` names the setting the address came from (``metrics.listen``) in errors; past
    ``limit_concurrency`` connections and requests at once uvicorn answers 503.
    """
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,
                            lifespan="off", limit_concurrency=limit_concurrency)
    return ObservabilityServer(config, key=key)


async def serve(app: Starlette, host: str, port: int, *, key: str | None = None) -> None:
    """Serve ``app`` on ``host:port`` until cancelled (uvicorn, no signal handlers).

    For a graceful stop (and the bound port) use :func:`build_server` and set
    ``should_exit = True`` instead of cancelling.
    """
    await build_server(app, host, port, key=key).serve()


async def start_servers(servers: list[ObservabilityServer], config: Config,
                        metrics: PollerMetrics, readiness: Readiness, engine: Engine) -> None:
    """Start the ``[metrics]`` / ``[health]`` servers ``config`` sets, appending each to
    ``servers`` once it listens; an address in use is a ``ConfigError`` naming the key."""
    listeners = [
        ("metrics.listen", config.metrics.address,
         create_observability_app(metrics, None, engine=engine), "/metrics"),
        ("health.listen", config.health.address,
         create_observability_app(None, readiness), "/healthz, /readyz"),
    ]
    for key, address, app, paths in listeners:
        if address is None:
            continue
        server = build_server(app, *address, key=key)
        try:
            await server.start()
        except ConfigError as error:  # name the setting: the CLI prints only the message
            raise ConfigError(f"{key}: {error}", key=key) from None
        servers.append(server)
        for host, port in server.addresses:
            shown = f"[{host}]" if ":" in host else host
            log.info("serving %s on http://%s:%d (%s)", paths, shown, port, key)


async def stop_servers(servers: list[ObservabilityServer]) -> None:
    """Stop ``servers`` in reverse order; a failure is logged, never raised (the process is
    on its way out)."""
    for server in reversed(servers):
        try:
            await server.stop()
        except Exception:  # never keep the process from exiting
            log.exception("stopping the %s server failed", server.key)
