"""``poller once`` (burst mode) and the tick's handling of an unavailable store."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from databases import fetch
from sim_world import build_sim_world
from sqlalchemy import Engine

from poller.commands import CliState
from poller.commands.once import once, run_once
from poller.config import DatabaseSettings
from poller.errors import ConfigError, StoreUnavailable
from poller.model import PollResult, TargetKey
from poller.store.bootstrap import open_database
from poller.store.gateway import Store
from poller.store.recorder import Recorder, RecordStats
from poller.store.rows import ScheduleUpdate


@pytest.mark.anyio
async def test_once_polls_every_target_once_and_stops(engine: Engine) -> None:
    """A burst run polls each due target exactly once, then a second run finds nothing due."""
    world = build_sim_world(conferences=4)
    app = world.app()
    report = await run_once(app, app.store(engine))
    n = len(world.config.targets())
    assert report.polled == n
    assert report.ok + report.failures == n
    assert report.ok > 0
    assert all(t["poll_count"] == 1 for t in fetch(engine, "poll_target"))
    again = await run_once(app, app.store(engine))
    assert again.polled == 0
    assert "polled 0: 0 ok" in again.summary()


@pytest.mark.anyio
async def test_once_migrates_a_fresh_sqlite_file(tmp_path: Path) -> None:
    """On a new SQLite file ``once`` builds the schema first (auto_migrate)."""
    engine = open_database(DatabaseSettings(url=f"sqlite:///{tmp_path / 'new.db'}"))
    world = build_sim_world(conferences=2)
    try:
        app = world.app()
        report = await run_once(app, app.store(engine))
    finally:
        engine.dispose()
    assert report.polled == len(world.config.targets())


def test_database_not_at_head_is_refused(empty_database_url: str) -> None:
    """Without auto_migrate, a database not at the newest schema is refused clearly."""
    settings = DatabaseSettings(url=empty_database_url, auto_migrate=False)
    with pytest.raises(StoreUnavailable, match="poller db upgrade"):
        open_database(settings)


def test_once_command_missing_credential_is_a_config_error(tmp_path: Path) -> None:
    """An unset credential variable stops ``once`` with a ConfigError naming it (exit 2)."""
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "c.db"}"\n'
                      '[[accounts]]\nname = "t"\nprovider = "telnyx"\n'
                      'api_key_env = "POLLER_TEST_UNSET_KEY"\nconferences = ["abc"]\n')
    result = CliRunner().invoke(once, obj=CliState(config_path=config),
                                env={"POLLER_TEST_UNSET_KEY": None,
                                     "POLLER_DATABASE_URL": None})
    assert isinstance(result.exception, ConfigError)
    assert "POLLER_TEST_UNSET_KEY" in str(result.exception)


def test_once_command_with_nothing_to_poll_exits_0(tmp_path: Path) -> None:
    """With no accounts configured, ``once`` migrates, polls nothing and exits 0."""
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "c.db"}"\n')
    result = CliRunner().invoke(once, obj=CliState(config_path=config),
                                env={"POLLER_DATABASE_URL": None})
    assert result.exit_code == 0, result.output
    assert result.output.startswith("polled 0: 0 ok")


class FlakyRecorder(Recorder):
    """A recorder whose first ``failures`` calls find the database unavailable."""

    def __init__(self, engine: Engine, failures: int) -> None:
        super().__init__(engine)
        self.failures = failures

    def record(self, batch: Sequence[PollResult],
               schedule: Mapping[TargetKey, ScheduleUpdate] | None = None, *,
               owner: str | None = None) -> RecordStats:
        if self.failures > 0:
            self.failures -= 1
            raise StoreUnavailable("recording poll results: connection refused")
        return super().record(batch, schedule, owner=owner)


@pytest.mark.anyio
async def test_store_unavailable_is_retried_with_backoff(engine: Engine) -> None:
    """A briefly unavailable store is retried with growing waits and the tick succeeds."""
    world = build_sim_world(conferences=2)
    poller = world.poller(engine, recorder=FlakyRecorder(engine, failures=2))
    await poller.sync(world.clock.now())
    report = await poller.tick(world.clock.now())
    await poller.aclose()
    assert report.store_error is None
    assert world.sleeps == [1.0, 2.0]
    assert sum(t["poll_count"] for t in fetch(engine, "poll_target")) == report.polled


@pytest.mark.anyio
async def test_store_down_loses_nothing(engine: Engine) -> None:
    """When the store stays down the tick reports it and the targets stay due."""
    world = build_sim_world(conferences=2)
    poller = world.poller(engine, recorder=FlakyRecorder(engine, failures=99), lease_seconds=30)
    start = world.clock.now()
    await poller.sync(start)
    report = await poller.tick(start)
    assert report.store_error is not None
    assert "NOT RECORDED" in report.summary()
    assert {t["next_poll_at"] for t in fetch(engine, "poll_target")} == {start}
    poller.store.recorder = Recorder(engine, clock=world.clock.now)
    world.clock.advance(31)  # the leases of the lost tick expire
    retry = await poller.tick(world.clock.now())
    await poller.aclose()
    assert retry.polled == report.polled
    assert retry.store_error is None


@pytest.mark.anyio
async def test_an_unrecorded_batch_is_polled_again_at_the_next_tick(engine: Engine) -> None:
    """The targets of a batch that could not be recorded are handed back at once: the next
    tick polls them again, long before their leases would expire."""
    world = build_sim_world(conferences=2)
    poller = world.poller(engine, recorder=FlakyRecorder(engine, failures=99),
                          lease_seconds=300)
    start = world.clock.now()
    await poller.sync(start)
    report = await poller.tick(start)
    assert report.store_error is not None
    assert report.polled > 0
    targets = fetch(engine, "poll_target")
    assert all(t["lease_owner"] is None for t in targets)
    assert {t["next_poll_at"] for t in targets} == {start}
    assert not poller.leases_stranded
    poller.store.recorder = Recorder(engine, clock=world.clock.now)
    world.clock.advance(1)
    retry = await poller.tick(world.clock.now())
    await poller.aclose()
    assert retry.store_error is None
    assert retry.polled == report.polled
    assert sum(t["poll_count"] for t in fetch(engine, "poll_target")) == retry.polled


class DownStore(Store):
    """A store whose claims fail while ``down`` (a read-only or vanished database)."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.down = True
        self.claims = 0

    async def claim_due(self, *args: Any, **kwargs: Any) -> Any:
        self.claims += 1
        if self.down:
            raise StoreUnavailable("claiming due poll targets: attempt to write a readonly "
                                   "database")
        return await super().claim_due(*args, **kwargs)


@pytest.mark.anyio
async def test_an_unavailable_store_is_asked_less_and_less_often(
        engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    """Ticks every 0.25 s against a store that keeps failing try it after 0.5 s, 1 s, 2 s, …
    (at most every 30 s), with one ERROR and then WARNINGs; once it works, one INFO line."""
    world = build_sim_world(conferences=2)
    app = world.app()
    store = DownStore(engine)
    poller = app.poller(store)
    await poller.sync(world.clock.now())
    caplog.set_level(logging.INFO, logger="poller")
    for _ in range(int(120 / 0.25)):
        report = await poller.tick(world.clock.now())
        assert report.store_error is not None
        world.clock.advance(0.25)
    # Attempts at 0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5, 61.5, 91.5 s: not 480.
    assert store.claims == 9
    failures = [r for r in caplog.records if "nothing claimed" in r.getMessage()]
    assert [r.levelno for r in failures] == [logging.ERROR] + [logging.WARNING] * 8
    assert "the next in 30 s" in failures[-1].getMessage()
    store.down = False
    world.clock.advance(30)
    recovered = await poller.tick(world.clock.now())
    await poller.aclose()
    assert recovered.store_error is None
    assert recovered.polled > 0
    assert "the store works again (after 9 failed attempts)" in caplog.text
