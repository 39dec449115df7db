"""List polling through one conference's life, request by request: what is fetched, what the
list serves alone (recorded as unchanged), and the fall-backs to a plain GET."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest
from sim_world import SimWorld, build_sim_world
from sqlalchemy import Engine, select
from test_discovery import CountingRouter

from poller.model import Provider
from poller.polling.poller import Poller
from poller.simulator.timeline import ConferenceTimeline
from poller.store.schema import PollTarget


class FailingLists(httpx.AsyncBaseTransport):
    """Answers 500 to every list request (the poller's own retries aside); the rest goes
    through."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/conferences"):
            return httpx.Response(500, json={"errors": [{"code": "10007"}]})
        return await self.inner.handle_async_request(request)


def _pick(world: SimWorld, provider: Provider) -> ConferenceTimeline:
    sim = world.telnyx if provider is Provider.TELNYX else world.bandwidth
    return next(t for t in sim.timelines(provider) if t.region in (None, "US"))


def _poller(world: SimWorld, engine: Engine, transport: httpx.AsyncBaseTransport) -> Poller:
    return world.poller(engine, transport=transport)


async def _tick_at(poller: Poller, world: SimWorld, at_ms: int, counting: CountingRouter
                   ) -> tuple[Counter[str], int]:
    world.clock.set(world.telnyx.to_datetime(at_ms))
    counting.counts.clear()
    report = await poller.tick(world.clock.now())
    return Counter(counting.counts), report.unchanged


LIVES = {
    # per tick (in progress, first seen completed, grace poll): requests by kind
    Provider.TELNYX: [{"list": 1, "participants": 1}, {"list": 1, "participants": 1},
                      {"list": 1}],
    Provider.BANDWIDTH: [{"get": 1}, {"get": 1}, {"list": 1}],
}


@pytest.mark.parametrize("provider", list(LIVES))
@pytest.mark.anyio
async def test_one_life_through_the_lists(engine: Engine, provider: Provider) -> None:
    """Telnyx: sightings that change fetch participants only (no GET); Bandwidth: GETs. The
    grace poll of a completed conference costs one list request and nothing else, and is
    recorded as unchanged before the target is retired ``completed``."""
    probe = build_sim_world(seed=13, conferences=6)
    life = _pick(probe, provider)
    account = "telnyx-sim" if provider is Provider.TELNYX else "bandwidth-sim"
    world = build_sim_world(seed=13, conferences=6, only=(life.conference_id,),
                            polling={"completion_grace_seconds": 10},
                            accounts={account: {"list_polling": True}})
    counting = CountingRouter(world.router)
    poller = _poller(world, engine, counting)
    moments = [life.in_progress_ms + 1000, life.ended_ms + 1000, life.ended_ms + 11_000]
    try:
        await poller.sync(world.clock.now())
        seen = []
        for index, at in enumerate(moments):
            if index < 2:  # the in-between polls do not matter here: jump to the moment
                with engine.begin() as conn:
                    conn.execute(PollTarget.__table__.update().values(
                        next_poll_at=world.telnyx.to_datetime(at)))
            counts, unchanged = await _tick_at(poller, world, at, counting)
            seen.append(({k.split(" ")[1]: n for k, n in counts.items()}, unchanged))
    finally:
        await poller.aclose()
    assert [c for c, _ in seen] == LIVES[provider]
    assert seen[2][1] == 1
    with engine.connect() as conn:
        rows = conn.execute(select(PollTarget.state, PollTarget.retired_reason)).all()
    assert [tuple(r) for r in rows] == [("retired", "completed")]


@pytest.mark.anyio
async def test_unlisted_targets_fall_back_to_get(engine: Engine) -> None:
    """Listed conferences are seen first through the list (participants only); a target
    missing from the list (not created yet, unknown) is polled with a GET, 404 as usual."""
    unknown = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
    world = build_sim_world(seed=13, conferences=6, extra_telnyx=(unknown,),
                            accounts={"telnyx-sim": {"list_polling": True}})
    counting = CountingRouter(world.router)
    poller = _poller(world, engine, counting)
    try:
        await poller.sync(world.clock.now())
        counts, _ = await _tick_at(poller, world, 0, counting)
    finally:
        await poller.aclose()
    existing = [t for t in world.telnyx.timelines(Provider.TELNYX) if t.exists_at(0)]
    absent = len(world.telnyx.conference_ids(Provider.TELNYX)) - len(existing) + 1
    regions = {t.region for t in world.telnyx.timelines(Provider.TELNYX)}
    assert existing
    assert absent >= 2
    assert counts["telnyx-sim participants"] == len(existing)
    assert counts["telnyx-sim get"] == absent
    assert counts["telnyx-sim list"] == len(regions)


@pytest.mark.anyio
async def test_failing_lists_fall_back_to_get(engine: Engine) -> None:
    """When the list request fails, every target is polled with a plain GET; nothing breaks."""
    world = build_sim_world(seed=13, conferences=6,
                            accounts={"telnyx-sim": {"list_polling": True}})
    counting = CountingRouter(FailingLists(world.router))
    poller = _poller(world, engine, counting)
    try:
        await poller.sync(world.clock.now())
        report = await poller.tick(world.clock.now())
    finally:
        await poller.aclose()
    targets = len(world.config.account("telnyx-sim").conferences)
    assert counting.counts["telnyx-sim get"] == targets
    assert report.polls_by_provider["telnyx", "ok"] + report.polls_by_provider[
        "telnyx", "not_found"] == targets
