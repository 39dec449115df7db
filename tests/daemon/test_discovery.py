"""Discovery and list polling against the simulator, on a virtual clock: with only
``discover = true`` configured, every conference the providers listed while the poller ran is
recorded, faithfully, short ones included; list polling spends far fewer requests."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sim_world import SimWorld, build_sim_world
from sqlalchemy import Engine, select
from test_history_vs_truth import compare, parse_time

from poller.model import Provider
from poller.polling.discovery import Discovery
from poller.providers import BandwidthClient
from poller.store.schema import Conference, PollTarget

DISCOVERY_SECONDS = 240.0
STEP_SECONDS = 5.0
ALL_REGIONS = ["US", "Europe", "Australia", "Middle East"]


class CountingRouter(httpx.AsyncBaseTransport):
    """Counts provider requests (token requests apart) by ``(host, kind)``."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.counts: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if not path.endswith("/token"):
            if path.endswith("/participants"):
                kind = "participants"
            elif path.endswith("/conferences"):
                kind = "list"
            else:
                kind = "get"
            self.counts[f"{request.url.host} {kind}"] += 1
        return await self.inner.handle_async_request(request)


@dataclass
class Run:
    world: SimWorld
    window: tuple[datetime, datetime]
    runs: list[datetime]
    """When discovery listed."""
    counts: Counter[str]


def discovering_world(*, list_polling: bool | None = None, conferences: int = 12,
                      seed: int = 11) -> SimWorld:
    extra = {} if list_polling is None else {"list_polling": list_polling}
    return build_sim_world(
        seed=seed, conferences=conferences, only=(),
        polling={"discovery_interval_seconds": DISCOVERY_SECONDS,
                 "idle_interval_seconds": 10},
        accounts={"telnyx-sim": {"discover": True, "discover_regions": ALL_REGIONS, **extra},
                  "bandwidth-sim": {"discover": True, **extra}})


async def drive_with_discovery(world: SimWorld, engine: Engine, seconds: float) -> Run:
    """Tick every step and discover every interval for ``seconds`` of virtual time."""
    counting = CountingRouter(world.router)
    poller = world.poller(engine, transport=counting)
    discovery = Discovery()
    start = world.clock.now()
    runs: list[datetime] = []
    next_discovery = start
    try:
        for _ in range(int(seconds / STEP_SECONDS) + 1):
            if world.clock.now() >= next_discovery:
                runs.append(world.clock.now())
                report = await discovery.run(poller)
                assert not report.failed, report.summary()
                next_discovery += timedelta(seconds=DISCOVERY_SECONDS)
            await poller.tick(world.clock.now())
            world.clock.advance(STEP_SECONDS)
    finally:
        await poller.aclose()
    return Run(world, (start, world.clock.now()), runs, counting.counts)


def listable(truth: dict[str, Any], runs: list[datetime]) -> list[dict[str, Any]]:
    """Conferences that existed (were listed by the provider) at some discovery run."""
    def exists(conf: dict[str, Any], at: datetime) -> bool:
        gone = parse_time(conf["gone_at"]) if conf["gone_at"] else None
        return parse_time(conf["created_at"]) <= at and (gone is None or at < gone)
    return [c for c in truth["conferences"] if any(exists(c, at) for at in runs)]


def recorded_ids(engine: Engine) -> set[tuple[str, str]]:
    with engine.connect() as conn:
        return {(r.account, r.conference_id)
                for r in conn.execute(select(Conference.account, Conference.conference_id))}


def account_of(conf: dict[str, Any]) -> str:
    return "telnyx-sim" if conf["provider"] == "telnyx" else "bandwidth-sim"


@pytest.mark.anyio
async def test_discovery_alone_records_every_listed_conference(engine: Engine) -> None:
    """Nothing but ``discover = true`` configured: every conference listed at some discovery
    run is recorded (short ones that completed between two runs too), faithfully, and every
    target is ``discovered``."""
    world = discovering_world()
    run = await drive_with_discovery(world, engine, seconds=3000)
    truth = _truth(world, run)
    expected = listable(truth, run.runs)
    got = recorded_ids(engine)
    missing = [c["conference_id"] for c in expected if (account_of(c), c["conference_id"])
               not in got]
    assert not missing, f"{len(missing)} of {len(expected)} listed conferences not recorded"
    assert len(expected) >= 15
    short = [c for c in expected if c["completed_at"] and (
        parse_time(c["completed_at"]) - parse_time(c["created_at"])).total_seconds()
        < DISCOVERY_SECONDS]
    assert short, "the scenario has conferences shorter than the discovery interval"
    print(f"\ndiscovery completeness (in-process): {len(expected) - len(missing)}/"
          f"{len(expected)} listed conferences recorded, {len(short)} shorter than the "
          "discovery interval")
    compare(engine, truth, run.window, complete=False, expect_gone=False)
    with engine.connect() as conn:
        sources = Counter(conn.execute(select(PollTarget.source)).scalars())
    assert set(sources) == {"discovered"}


def _truth(world: SimWorld, run: Run) -> dict[str, Any]:
    """Both simulators' ground truth up to the end of the run (one provider each)."""
    from poller.simulator import ground_truth

    telnyx = ground_truth(world.telnyx, until_ms=world.telnyx.now_ms())
    bandwidth = ground_truth(world.bandwidth, until_ms=world.bandwidth.now_ms())
    return {"conferences": [c for c in telnyx["conferences"] if c["provider"] == "telnyx"]
            + [c for c in bandwidth["conferences"] if c["provider"] == "bandwidth"]}


@pytest.mark.slow
@pytest.mark.anyio
async def test_list_polling_costs_fewer_requests_for_the_same_history(
        engine: Engine, tmp_path: Any) -> None:
    """The same world polled with and without list polling records the same conferences, and
    list polling sends markedly fewer Telnyx requests."""
    from poller.store.database import make_engine
    from poller.store.migrate import upgrade

    other_url = f"sqlite:///{tmp_path / 'single.db'}"
    upgrade(other_url)
    single_engine = make_engine(other_url)
    try:
        listed = await drive_with_discovery(discovering_world(list_polling=True), engine, 1800)
        single = await drive_with_discovery(discovering_world(list_polling=False),
                                            single_engine, 1800)
        assert recorded_ids(engine) == recorded_ids(single_engine)
    finally:
        single_engine.dispose()
    telnyx_listed = sum(n for k, n in listed.counts.items() if k.startswith("telnyx"))
    telnyx_single = sum(n for k, n in single.counts.items() if k.startswith("telnyx"))
    # Mostly in_progress conferences here: their participants are still fetched every
    # interval, the conference GETs go (bench/api_calls.py measures each state apart).
    assert telnyx_listed < 0.8 * telnyx_single, (listed.counts, single.counts)
    assert listed.counts["telnyx-sim get"] < single.counts["telnyx-sim get"] / 3
    bw_listed = sum(n for k, n in listed.counts.items() if k.startswith("bandwidth"))
    bw_single = sum(n for k, n in single.counts.items() if k.startswith("bandwidth"))
    assert bw_listed <= bw_single


@pytest.mark.anyio
async def test_discover_name_filters_and_cli_rows_survive_sync(engine: Engine) -> None:
    """``discover_name`` discovers only that name; a config sync keeps discovered rows."""
    world = discovering_world()
    some = next(t for t in world.bandwidth.timelines(Provider.BANDWIDTH))
    config = world.config.model_copy(update={"accounts": tuple(
        a.model_copy(update={"discover_name": some.name}) if a.name == "bandwidth-sim" else a
        for a in world.config.accounts)})
    world.config = config
    world.clock.set(world.bandwidth.to_datetime(some.created_ms + 1000))
    poller = world.poller(engine)
    try:
        report = await Discovery().run(poller)
        assert not report.failed
        with engine.connect() as conn:
            bw = list(conn.execute(select(PollTarget.conference_id).where(
                PollTarget.account == "bandwidth-sim")).scalars())
        assert bw == [some.conference_id]
        await poller.sync()
        with engine.connect() as conn:
            states = set(conn.execute(select(PollTarget.state)).scalars())
        assert states == {"active"}
    finally:
        await poller.aclose()


class RecordingRouter(httpx.AsyncBaseTransport):
    """Keeps every list request's URL."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.lists: list[httpx.URL] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/conferences"):
            self.lists.append(request.url)
        return await self.inner.handle_async_request(request)


@pytest.mark.anyio
async def test_bandwidth_cursor_and_rate_limiter(engine: Engine) -> None:
    """Telnyx lists every region without a status filter each run; Bandwidth lists from the
    previous run's start minus the margin; every request (pages, OAuth2 token) takes a token
    of the account."""
    world = discovering_world()
    recording = RecordingRouter(world.router)
    poller = world.poller(engine, transport=recording)
    discovery = Discovery()
    try:
        first_at = world.clock.now()
        tokens = {a.name: a.gate.bucket.tokens(first_at) for a in poller.accounts}
        await discovery.run(poller)
        used = {a.name: tokens[a.name] - a.gate.bucket.tokens(first_at)
                for a in poller.accounts}
        first = list(recording.lists)
        world.clock.advance(DISCOVERY_SECONDS)
        recording.lists.clear()
        await discovery.run(poller)
        second = list(recording.lists)
    finally:
        await poller.aclose()
    telnyx_first = [u for u in first if u.path.startswith("/v2")]
    assert sorted(u.params["region"] for u in telnyx_first) == sorted(ALL_REGIONS)
    assert all("filter[status]" not in u.params for u in telnyx_first + second)
    bandwidth_first = [u for u in first if u.path.startswith("/api")]
    bandwidth_second = [u for u in second if u.path.startswith("/api")]
    assert ["minCreatedTime" in u.params for u in bandwidth_first] == [False]
    since = datetime.fromisoformat(bandwidth_second[0].params["minCreatedTime"].replace(
        "Z", "+00:00"))
    assert since == first_at - timedelta(seconds=300)
    # Bandwidth's first page needed an OAuth2 token first: that request takes a token too.
    assert used == {"telnyx-sim": len(telnyx_first), "bandwidth-sim": len(bandwidth_first) + 1}


@pytest.mark.anyio
async def test_once_discovers_first_then_polls_what_it_found(engine: Engine) -> None:
    """``poller once`` with only ``discover = true``: the conferences listed are recorded in
    the same run."""
    from poller.commands.once import run_once

    world = discovering_world()
    world.clock.set(world.telnyx.to_datetime(600_000))
    discovery = Discovery()
    app = world.app()
    report = await run_once(app, app.store(engine), discovery=discovery)
    assert discovery.last_report is not None
    found = discovery.last_report.added
    assert len(found) >= 4
    assert report.polled == len(found)
    assert {(t.account, t.conference_id) for t in found} <= recorded_ids(engine)


class SmallPagesRouter(httpx.AsyncBaseTransport):
    """Asks Bandwidth for one conference per page (the next links keep ``pageSize``), so a
    few dozen conferences exceed the 40-page cap of a listing."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.path.startswith("/api") and url.path.endswith("/conferences") and (
                "pageSize" not in url.params):
            request.url = url.copy_merge_params({"pageSize": "1"})
        return await self.inner.handle_async_request(request)


@pytest.mark.anyio
async def test_bandwidth_listing_cut_at_the_page_cap_still_moves_on(engine: Engine) -> None:
    """Bandwidth lists oldest first: a listing cut at the page cap has seen every conference
    up to the newest it got, so the next run starts from there (minus the margin) instead of
    listing the same oldest pages again and never reaching the newer conferences."""
    world = build_sim_world(conferences=150, only=(), accounts={
        "telnyx-sim": {"conferences": []}, "bandwidth-sim": {"discover": True}})
    world.clock.advance(1800)  # more than 40 conferences listed
    poller = world.poller(engine, transport=SmallPagesRouter(world.router))
    discovery = Discovery()
    client = poller.accounts["bandwidth-sim"].client
    try:
        first = await discovery.run(poller)
        assert first.incomplete == ["bandwidth-sim"], first.summary()
        for _ in range(3):
            world.clock.advance(30)
            await discovery.run(poller)
        assert isinstance(client, BandwidthClient)
        everything = await client.list_conferences(max_pages=1000)
    finally:
        await poller.aclose()
    assert everything.complete
    assert len(everything.conferences) > 40
    found = {cid for account, cid in recorded_targets(engine) if account == "bandwidth-sim"}
    assert {c.conference_id for c in everything.conferences} <= found


def recorded_targets(engine: Engine) -> set[tuple[str, str]]:
    with engine.connect() as conn:
        return {(t.account, t.conference_id) for t in conn.execute(select(PollTarget))}
