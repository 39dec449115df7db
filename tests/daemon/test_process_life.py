"""Process life of ``poller run`` / ``poller once``, in-process: early signals, a second stop
signal, the SQLite lock for ``once``, stale leases after a kill, and scheduled pruning."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from databases import fetch
from sim_world import SimWorld, build_sim_world
from sqlalchemy import Engine, insert, update

from poller.app import App
from poller.commands import CliState
from poller.commands.once import once as once_command
from poller.config import Config, DatabaseSettings, RetentionSettings
from poller.daemon.service import Daemon
from poller.daemon.signals import EarlySignals
from poller.errors import AlreadyRunning
from poller.store.bootstrap import SqliteLock, open_database
from poller.store.database import make_engine
from poller.store.gateway import Store
from poller.store.retention import PruneStats
from poller.store.schema import PollError, PollTarget
from poller.store.spool import Spool

WAIT_SECONDS = 30.0
"""Bound on waiting for something the daemon does at once (a loaded machine is slow)."""


class StallingTransport(httpx.AsyncBaseTransport):
    """Never answers: every request waits until the poll is cancelled."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requested.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


def make_daemon(world: SimWorld, engine: Engine, *, config: Config | None = None,
                transport: httpx.AsyncBaseTransport | None = None,
                load: Callable[[], tuple[Config, object]] | None = None) -> Daemon:
    config = config or world.config
    credentials = world.credentials(config)
    app = App(config, credentials, transport=transport or world.router, clock=world.clock.now)
    spool = Spool(Path(tempfile.mkdtemp(prefix="poller-spool-")), max_bytes=10 ** 8)
    reload = load or (lambda: (config, credentials))
    return app.daemon(app.store(engine), reload, spool=spool)  # type: ignore[arg-type]


async def wait_until(what: str, condition: Callable[[], bool]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def test_early_signals_are_noted_not_fatal() -> None:
    """A SIGHUP before the loop handles signals is noted (its default would kill us)."""
    early = EarlySignals().install()
    try:
        os.kill(os.getpid(), signal.SIGHUP)
        os.kill(os.getpid(), signal.SIGTERM)
    finally:
        early.restore()
    assert early.received == [signal.SIGHUP, signal.SIGTERM]
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL


@pytest.mark.anyio
async def test_early_stop_signal_stops_before_the_first_tick(engine: Engine) -> None:
    """A SIGTERM received while starting up: targets synced, nothing polled, clean return."""
    world = build_sim_world(conferences=2)
    daemon = make_daemon(world, engine)
    await asyncio.wait_for(daemon.run([signal.SIGTERM]), WAIT_SECONDS)
    targets = fetch(engine, "poll_target")
    assert len(targets) == len(world.config.targets())
    assert all(t["poll_count"] == 0 and t["lease_owner"] is None for t in targets)


@pytest.mark.anyio
async def test_early_sighup_reloads_once_running(engine: Engine) -> None:
    """A SIGHUP received while starting up reloads the config once the daemon runs."""
    world = build_sim_world(conferences=2)
    loads: list[int] = []
    credentials = world.credentials()

    def load() -> tuple[Config, object]:
        loads.append(1)
        return world.config, credentials

    daemon = make_daemon(world, engine, load=load)
    task = asyncio.ensure_future(daemon.run([signal.SIGHUP]))
    await wait_until("the reload", lambda: bool(loads))
    daemon.request_stop("test")
    await asyncio.wait_for(task, WAIT_SECONDS)
    assert loads == [1]


@pytest.mark.anyio
async def test_second_stop_signal_abandons_inflight_polls_at_once(
        engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    """With a 10-minute grace, a second SIGINT still ends the stop at once; the abandoned
    targets keep no lease and stay due."""
    world = build_sim_world(conferences=2, polling={"shutdown_grace_seconds": 600})
    stalling = StallingTransport()
    daemon = make_daemon(world, engine, transport=stalling)
    task = asyncio.ensure_future(daemon.run())
    await asyncio.wait_for(stalling.requested.wait(), WAIT_SECONDS)
    daemon.request_stop("SIGINT")
    await asyncio.sleep(0)
    assert not task.done(), "the first signal waits for the grace"
    with caplog.at_level(logging.WARNING, logger="poller.daemon"):
        daemon.request_stop("SIGINT")
        await asyncio.wait_for(task, WAIT_SECONDS)
    assert "abandoning in-flight polls at once" in caplog.text
    targets = fetch(engine, "poll_target")
    assert all(t["lease_owner"] is None and t["poll_count"] == 0 for t in targets)


@pytest.mark.anyio
async def test_daemon_prunes_old_poll_errors_after_its_first_tick(engine: Engine) -> None:
    """``[retention]`` is applied by the running daemon: a poll_error older than
    ``poll_error_days`` is deleted after the first tick; a recent one stays."""
    world = build_sim_world(conferences=2)
    config = world.config.model_copy(update={"retention": RetentionSettings(
        poll_error_days=30, prune_interval_seconds=3600)})
    daemon = make_daemon(world, engine, config=config)
    await daemon.poller.sync(world.clock.now())
    now = world.clock.now()
    [target_pk] = [t["id"] for t in fetch(engine, "poll_target")][:1]
    with engine.begin() as conn:
        conn.execute(insert(PollError), [
            {"target_pk": target_pk, "occurred_at": now - timedelta(days=40), "kind": "timeout",
             "detail": "old"},
            {"target_pk": target_pk, "occurred_at": now - timedelta(days=1), "kind": "timeout",
             "detail": "recent"}])
    task = asyncio.ensure_future(daemon.run())
    await wait_until("the old poll error to be pruned", lambda: "old" not in {
        e["detail"] for e in fetch(engine, "poll_error")})
    daemon.request_stop("test")
    await asyncio.wait_for(task, WAIT_SECONDS)
    assert "recent" in {e["detail"] for e in fetch(engine, "poll_error")}


def _sqlite_settings(tmp_path: Path) -> DatabaseSettings:
    return DatabaseSettings(url=f"sqlite:///{tmp_path / 'p.db'}")


def test_once_is_refused_while_another_poller_holds_the_sqlite_file(tmp_path: Path) -> None:
    """``poller once`` takes the same SQLite lock as ``poller run``: refused, exit 1."""
    settings = _sqlite_settings(tmp_path)
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "{settings.url}"\n')
    lock = SqliteLock.for_database(settings)
    assert lock is not None
    lock.acquire()
    try:
        result = CliRunner().invoke(once_command, obj=CliState(config_path=config),
                                    env={"POLLER_DATABASE_URL": None})
    finally:
        lock.release()
    assert isinstance(result.exception, AlreadyRunning)
    assert "already using this SQLite database" in str(result.exception)
    after = CliRunner().invoke(once_command, obj=CliState(config_path=config),
                               env={"POLLER_DATABASE_URL": None})
    assert after.exit_code == 0, after.output


@pytest.mark.parametrize("exclusive", [True, False])
def test_leases_of_a_killed_poller_are_dropped_by_the_lock_holder(
        tmp_path: Path, exclusive: bool) -> None:
    """Whoever holds the SQLite lock knows other leases are stale and drops them; without the
    lock (a shared database) they are left to expire."""
    settings = _sqlite_settings(tmp_path)
    engine = open_database(settings)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(insert(PollTarget), [
            {"provider": "telnyx", "account": "a", "conference_id": f"c{i}",
             "next_poll_at": now, "created_at": now} for i in range(3)])
        conn.execute(update(PollTarget).values(lease_owner="dead-host:1:x",
                                               lease_expires_at=now + timedelta(hours=1)))
    engine.dispose()
    engine = open_database(settings, exclusive=exclusive)
    try:
        owners = {t["lease_owner"] for t in fetch(engine, "poll_target")}
    finally:
        engine.dispose()
    assert owners == ({None} if exclusive else {"dead-host:1:x"})


@pytest.mark.anyio
async def test_a_reload_keeps_the_leases_still_to_hand_back(engine: Engine) -> None:
    """A SIGHUP while the database is down must not forget that the poller still holds the
    leases of a batch it could not record: the reloaded poller hands them back."""
    world = build_sim_world(conferences=2)
    daemon = make_daemon(world, engine)
    daemon.poller.leases_stranded = True
    await daemon.reload()
    assert daemon.poller.leases_stranded
    await daemon.poller.aclose()


@pytest.mark.anyio
async def test_a_reload_that_breaks_keeps_the_running_configuration_whole(
        engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    """Whatever goes wrong while reloading (here: loading raises something unexpected), the
    running poller, its accounts and its schedule stay as they were; one traceback, counted."""
    world = build_sim_world(conferences=2)

    def load() -> tuple[Config, object]:
        raise RuntimeError("a bug in loading")

    daemon = make_daemon(world, engine, load=load)
    poller, accounts = daemon.poller, list(daemon.poller.accounts)
    with caplog.at_level(logging.ERROR, logger="poller"):
        await daemon.reload()
        await daemon.reload()
    assert daemon.poller is poller
    assert list(daemon.poller.accounts) == accounts
    assert daemon.config is world.config
    [logged] = [r for r in caplog.records if r.exc_info]
    assert "internal error in reload" in logged.getMessage()
    assert daemon.metrics.registry.get_sample_value(
        "poller_internal_errors_total", {"where": "reload"}) == 2
    await daemon.poller.aclose()


class BrokenPruneStore(Store):
    """A store whose pruning meets a bug."""

    async def prune(self, **_kwargs: object) -> PruneStats:
        raise ValueError("a bug in pruning")


@pytest.mark.anyio
async def test_a_bug_in_pruning_is_logged_once_and_the_daemon_carries_on(
        engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Pruning that raises something unexpected costs that prune only: ticks go on recording,
    and the traceback is logged once however often it happens."""
    world = build_sim_world(conferences=2, polling={"interval_seconds": 0.5})
    config = world.config.model_copy(update={"retention": RetentionSettings(
        prune_interval_seconds=0.01)})
    credentials = world.credentials(config)
    app = App(config, credentials, transport=world.router, clock=world.clock.now)
    daemon = app.daemon(BrokenPruneStore(engine), lambda: (config, credentials),
                        spool=Spool(tmp_path / "spool", max_bytes=10 ** 8))

    def pruned() -> float:
        value = daemon.metrics.registry.get_sample_value("poller_internal_errors_total",
                                                         {"where": "prune"})
        return value or 0.0

    with caplog.at_level(logging.ERROR, logger="poller"):
        task = asyncio.ensure_future(daemon.run())
        for attempt in range(1, 4):  # the virtual clock moves on: every tick may prune
            await wait_until(f"prune attempt {attempt}", lambda n=attempt: pruned() >= n)
            world.clock.advance(1)
        daemon.request_stop("test")
        await asyncio.wait_for(task, WAIT_SECONDS)
    assert len([r for r in caplog.records if r.exc_info
                and "internal error in prune" in r.getMessage()]) == 1
    assert sum(t["poll_count"] for t in fetch(engine, "poll_target")) > 0


@pytest.mark.anyio
@pytest.mark.parametrize("swap", ["deleted", "replaced"])
async def test_a_sqlite_file_swapped_under_the_daemon_stops_recording(
        swap: str, sqlite_template: Path, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """The SQLite file deleted or replaced while the daemon runs (SQLite would go on writing to
    the unlinked file): one ERROR naming it, no more ticks, and ``/readyz`` says why."""
    path = tmp_path / "swapped.db"
    shutil.copy(sqlite_template, path)
    engine = make_engine(f"sqlite:///{path}")
    world = build_sim_world(conferences=2)
    daemon = make_daemon(world, engine)

    def recorded_ticks() -> float:
        value = daemon.metrics.registry.get_sample_value("poller_ticks_total", {"result": "ok"})
        return value or 0.0

    task = asyncio.ensure_future(daemon.run())
    try:
        await wait_until("a tick to record", lambda: recorded_ticks() > 0)
        path.unlink()
        if swap == "replaced":
            shutil.copy(sqlite_template, path)
        await wait_until("the loss to be noticed", lambda: daemon._store_lost is not None)
        stopped_at = recorded_ticks()
        readiness = {r.name: r for r in await asyncio.to_thread(daemon.readiness.check)}
        for _ in range(8):  # two tick periods: none records
            await asyncio.sleep(0.25)
        assert recorded_ticks() == stopped_at
    finally:
        daemon.request_stop("test")
        await asyncio.wait_for(task, WAIT_SECONDS)
        engine.dispose()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert [e for e in errors if "nothing more is recorded" in e] == [
        next(e for e in errors if "nothing more is recorded" in e)], "said once"
    assert f"was {swap}" in caplog.text
    assert not readiness["database"].ok
    assert f"was {swap}" in readiness["database"].detail
