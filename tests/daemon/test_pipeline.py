"""The daemon's pipeline: claims while polls run, a slow poll holds only its own room, and
results the store cannot take wait in the spool and are replayed in order, exactly once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from databases import fetch
from sim_world import TELNYX_HOST, HostRouter, SimWorld, build_sim_world
from sqlalchemy import Engine
from test_history_vs_truth import compare
from test_slow_server import TricklingHost

import poller.polling.pipeline as pipeline_module
from poller.errors import StoreUnavailable
from poller.polling.pipeline import Pipeline
from poller.polling.poller import Poller
from poller.simulator import ground_truth
from poller.store.gateway import Store
from poller.store.spool import Spool

pytestmark = pytest.mark.anyio

WAIT_SECONDS = 30.0
BANDWIDTH_SECONDS = 10.0
"""Bound on a round's Bandwidth polls being recorded while Telnyx trickles: well inside the
Telnyx polls' 30 s deadline, so Bandwidth's polls waiting for them still fail the test."""


class SwitchableStore(Store):
    """A store that is down (every call fails as the database would) while ``down``."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailable("connection refused (the test's outage)")

    async def claim_due(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return await super().claim_due(*args, **kwargs)

    async def record(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return await super().record(*args, **kwargs)

    async def release(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return await super().release(*args, **kwargs)


async def settled(pipeline: Pipeline) -> None:
    """Wait until no poll runs and everything finished is recorded or spooled."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    await asyncio.sleep(0)
    while pipeline.in_flight or pipeline.unwritten:
        assert loop.time() < deadline, "the pipeline did not settle"
        await asyncio.sleep(0.005)


async def only_telnyx_left(pipeline: Pipeline) -> None:
    """Wait until every poll still running is a Telnyx one and every finished one is recorded
    (for at most ``BANDWIDTH_SECONDS``: Bandwidth's polls must not wait for Telnyx's)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BANDWIDTH_SECONDS
    await asyncio.sleep(0)
    while pipeline.unwritten or any(key.account != "telnyx-sim"
                                    for _, key in pipeline._in_flight.values()):
        assert loop.time() < deadline, "Bandwidth's polls were not recorded meanwhile"
        await asyncio.sleep(0.005)


def make_pipeline(world: SimWorld, store: Store, spool_dir: Path, *, max_bytes: int = 10 ** 8,
                  **settings: Any) -> tuple[Pipeline, Poller]:
    app = world.app(transport=settings.pop("transport", None))
    poller = app.poller(store, **settings)
    return Pipeline(poller, Spool(spool_dir, max_bytes=max_bytes)), poller


async def test_claims_only_as_much_as_there_is_room_for(engine: Engine, tmp_path: Path) -> None:
    """With room for 3 polls, each round claims what fits; every due target is polled once."""
    world = build_sim_world(conferences=5)  # 10 targets
    pipeline, poller = make_pipeline(world, Store(engine), tmp_path, batch_size=3)
    await poller.sync(world.clock.now())
    most = 0
    for _ in range(20):
        await pipeline.run_due()
        most = max(most, pipeline.in_flight)
        await settled(pipeline)
    await pipeline.stop(0, asyncio.Event())
    await poller.aclose()
    assert most <= 3
    assert [t["poll_count"] for t in fetch(engine, "poll_target")] == [1] * 10


async def test_a_round_with_time_left_claims_again_as_polls_end(engine: Engine,
                                                              tmp_path: Path) -> None:
    """Given time (``until``), one round whose claims come back full waits for polls to end and
    claims again, within the same room: fast polls are not held to one claim per tick (which
    capped 10,000 targets at 0 ms to 4 x 32 slots a quarter second, 512 polls/s)."""
    world = build_sim_world(conferences=5)  # 10 targets
    pipeline, poller = make_pipeline(world, Store(engine), tmp_path, batch_size=3)
    await poller.sync(world.clock.now())
    loop = asyncio.get_running_loop()
    await pipeline.run_due(until=loop.time() + WAIT_SECONDS)
    assert pipeline.in_flight <= 3
    await settled(pipeline)
    await pipeline.stop(0, asyncio.Event())
    await poller.aclose()
    assert [t["poll_count"] for t in fetch(engine, "poll_target")] == [1] * 10


async def test_a_slow_server_holds_only_its_own_polls(engine: Engine, tmp_path: Path) -> None:
    """Telnyx trickles its answers (each poll runs to its 30 s deadline); Bandwidth's polls are
    claimed, polled and recorded every interval meanwhile, on schedule."""
    world = build_sim_world(conferences=3, polling={"poll_deadline_seconds": 30})
    world.clock.advance(300)  # most conferences under way: polled every interval
    router = HostRouter({**world.router.routes, TELNYX_HOST: TricklingHost()})
    pipeline, poller = make_pipeline(world, Store(engine), tmp_path, transport=router)
    await poller.sync(world.clock.now())
    telnyx = len(world.config.account("telnyx-sim").conferences)
    for _ in range(4):
        await pipeline.run_due()
        await only_telnyx_left(pipeline)  # Bandwidth answers, Telnyx keeps trickling
        world.clock.advance(10)
    bandwidth = [t for t in fetch(engine, "poll_target") if t["account"] == "bandwidth-sim"]
    assert pipeline.in_flight == telnyx, "the Telnyx polls are still waiting for their bodies"
    abandoned = await pipeline.stop(0, asyncio.Event())
    await poller.aclose()
    assert abandoned == telnyx
    in_progress = [t for t in bandwidth if t["last_outcome"] in ("ok", "unchanged")
                   and t["state"] == "active"]
    assert in_progress
    assert all(t["poll_count"] == 4 for t in in_progress), in_progress
    assert not [t for t in fetch(engine, "poll_target") if t["account"] == "telnyx-sim"
                and t["poll_count"]], "nothing of Telnyx recorded"


async def drive(pipeline: Pipeline, world: SimWorld, seconds: float, step: float = 5.0) -> None:
    """Rounds every ``step`` virtual seconds for ``seconds``, each settled before the next."""
    for _ in range(int(seconds / step)):
        await pipeline.run_due()
        await settled(pipeline)
        world.clock.advance(step)


async def test_an_outage_loses_nothing_and_is_replayed_in_order(
        engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The store is away for five minutes of a lively world: the pipeline goes on polling the
    targets it knows, spools every result with its own observation time, and once the store
    is back replays them in order: the history matches the truth, inside the outage too, and
    nothing is recorded twice."""
    world = build_sim_world(conferences=6)
    store = SwitchableStore(engine)
    pipeline, poller = make_pipeline(world, store, tmp_path)
    start = world.clock.now()
    await poller.sync(start)
    caplog.set_level(logging.INFO, logger="poller")
    await drive(pipeline, world, 300)
    store.down = True
    outage = world.clock.now()
    await drive(pipeline, world, 300)
    spooled = pipeline.spool.results
    assert spooled > 0
    assert all(t["last_polled_at"] <= outage for t in fetch(engine, "poll_target"))
    store.down = False
    world.clock.advance(60)  # past the store's backoff
    await drive(pipeline, world, 300)
    await pipeline.stop(10, asyncio.Event())
    await poller.aclose()
    assert pipeline.spool.empty
    assert "the spool is replayed" in caplog.text
    end = world.clock.now() - timedelta(seconds=5)
    truth = ground_truth(world.telnyx, until_ms=world.telnyx.now_ms())
    counts = compare(engine, truth, (start, end), complete=True, expect_gone=False)
    assert counts["transitions"] > 0
    inside = [t for t in fetch(engine, "status_transition")
              if outage < t["observed_at"] <= outage + timedelta(seconds=300)]
    assert inside, "changes during the outage are recorded at their own observation times"
    assert_no_duplicates(fetch(engine, "member_event"), ("member_pk", "seq"))


def assert_no_duplicates(rows: Sequence[dict[str, Any]], key: tuple[str, ...]) -> None:
    seen = [tuple(row[k] for k in key) for row in rows]
    assert len(seen) == len(set(seen))


async def test_a_restart_replays_what_the_last_process_spooled(engine: Engine,
                                                               tmp_path: Path) -> None:
    """Results spooled by a process that then died are replayed by the next one (same spool
    directory) before it claims anything, once."""
    world = build_sim_world(conferences=3)
    store = SwitchableStore(engine)
    pipeline, poller = make_pipeline(world, store, tmp_path)
    await poller.sync(world.clock.now())
    await drive(pipeline, world, 20)
    store.down = True
    await drive(pipeline, world, 60)
    spooled = pipeline.spool.results
    assert spooled > 0
    pipeline.spool.close()  # the process dies: nothing more of it runs
    await poller.aclose()

    store.down = False
    before = sum(t["poll_count"] for t in fetch(engine, "poll_target"))
    again, poller = make_pipeline(world, Store(engine), tmp_path)
    assert again.spool.results == spooled
    await drive(again, world, 5)
    await again.stop(10, asyncio.Event())
    await poller.aclose()
    assert again.spool.empty
    after = sum(t["poll_count"] for t in fetch(engine, "poll_target"))
    assert after >= before + spooled, "every spooled result counted once"
    await_replay_twice_changes_nothing(engine, tmp_path)


def await_replay_twice_changes_nothing(engine: Engine, tmp_path: Path) -> None:
    assert_no_duplicates(fetch(engine, "status_transition"), ("conference_pk", "seq"))
    assert_no_duplicates(fetch(engine, "member_event"), ("member_pk", "seq"))


async def test_a_full_spool_keeps_changes_and_says_so(
        engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A spool too small for every poll of a long outage keeps the polls that saw something
    new, drops the unchanged ones, and says so at ERROR."""
    world = build_sim_world(conferences=4)
    store = SwitchableStore(engine)
    pipeline, poller = make_pipeline(world, store, tmp_path, max_bytes=1024 * 1024)
    await poller.sync(world.clock.now())
    await drive(pipeline, world, 20)
    store.down = True
    caplog.set_level(logging.ERROR, logger="poller")
    dropped = 0
    original = pipeline.on_report

    def count(report: Any) -> None:
        nonlocal dropped
        dropped += report.spool_dropped
        original(report)

    pipeline.on_report = count
    while not dropped:
        await drive(pipeline, world, 60)
    await pipeline.stop(0, asyncio.Event())
    await poller.aclose()
    assert pipeline.spool.bytes <= 1024 * 1024
    assert "the spool is full" in caplog.text
    assert dropped > 0
    assert pipeline.dropped == dropped
    problem = pipeline.problem()  # what /readyz says until the spool is replayed
    assert problem is not None
    assert "store unavailable, spooling" in problem
    assert f"the spool is full ({pipeline.spool.bytes} of {1024 * 1024} bytes)" in problem


def _at(engine: Engine) -> datetime:
    return max(t["last_polled_at"] for t in fetch(engine, "poll_target"))


class HangingStore(SwitchableStore):
    """While ``down``: claims fail, and a ``record`` (the spool's replay) hangs until
    ``release_record`` is set, as on a connection that died without a word, then fails."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.release_record = asyncio.Event()
        self.hanging = 0

    async def record(self, *args: Any, **kwargs: Any) -> Any:
        if not self.down:
            return await super().record(*args, **kwargs)
        self.hanging += 1
        await self.release_record.wait()
        raise StoreUnavailable("connection lost (the test's hang)")


async def test_a_hanging_store_does_not_make_the_pipeline_poll_twice(
        engine: Engine, tmp_path: Path) -> None:
    """While the writer waits on a store that hangs, polls that finished but are not written
    yet keep their targets busy: the pipeline does not poll them again meanwhile, however
    many intervals pass (each target has at most one result waiting)."""
    world = build_sim_world(conferences=3)
    store = HangingStore(engine)
    pipeline, poller = make_pipeline(world, store, tmp_path)
    await poller.sync(world.clock.now())
    await drive(pipeline, world, 20)  # the store works: the pipeline knows its targets
    store.down = True
    known = len(pipeline.known)
    assert known > 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    for _ in range(40):  # 200 virtual seconds: every target due many times
        await pipeline.run_due()
        await asyncio.sleep(0.02)
        world.clock.advance(5)
        assert loop.time() < deadline
    assert store.hanging, "the writer is waiting on the store"
    assert 0 < pipeline.unwritten <= known
    store.release_record.set()
    await pipeline.stop(10, asyncio.Event())
    await poller.aclose()
    assert pipeline.unwritten == 0
    assert pipeline.spool.results >= 1


class SlowStore(Store):
    """A store whose ``record`` waits until ``writes`` is set (a database that writes slowly)."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.writes = asyncio.Event()

    async def record(self, *args: Any, **kwargs: Any) -> Any:
        await self.writes.wait()
        return await super().record(*args, **kwargs)


async def test_a_writer_that_falls_behind_holds_claims_back(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Results waiting for the writer beyond ``WRITE_BACKLOG`` take from the claim room: while
    the store writes slowly, a round stops claiming once ``batch_size + WRITE_BACKLOG`` results
    wait (unbounded, 10,000 first polls piled up in memory); once it writes again, every
    target is polled, once."""
    monkeypatch.setattr(pipeline_module, "WRITE_BACKLOG", 4)
    world = build_sim_world(conferences=10)  # 20 targets
    store = SlowStore(engine)
    pipeline, poller = make_pipeline(world, store, tmp_path, batch_size=8)
    await poller.sync(world.clock.now())
    most = 0
    for _ in range(5):  # the store writes nothing meanwhile: what is polled waits
        await pipeline.run_due()
        await settled_polls(pipeline)
        most = max(most, pipeline.unwritten)
    assert most == 8 + 4  # not all 20
    store.writes.set()
    for _ in range(10):
        await pipeline.run_due()
        await settled(pipeline)
    await pipeline.stop(0, asyncio.Event())
    await poller.aclose()
    assert [t["poll_count"] for t in fetch(engine, "poll_target")] == [1] * 20


async def settled_polls(pipeline: Pipeline) -> None:
    """Wait until no poll runs (what finished may still wait for the writer)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while pipeline.in_flight:
        assert loop.time() < deadline, "the polls did not end"
        await asyncio.sleep(0.005)
