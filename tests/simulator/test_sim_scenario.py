"""Scenario generation: determinism, realistic lives, every ending, limits and expiry."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest

from poller.model import Provider
from poller.simulator import (
    BANDWIDTH_MEMBER_LIMIT,
    EndCause,
    ScenarioConfig,
    Simulator,
    VirtualClock,
    WallClock,
    ground_truth,
)
from poller.simulator.scenario import build_timeline


def test_same_seed_same_truth() -> None:
    """Two worlds built from the same seed tell exactly the same story; another seed does not."""
    first = ground_truth(Simulator(seed=11, clock=VirtualClock()), None)
    second = ground_truth(Simulator(seed=11, clock=VirtualClock()), None)
    other = ground_truth(Simulator(seed=12, clock=VirtualClock()), None)
    assert first == second
    assert first["conferences"] != other["conferences"]


@pytest.mark.parametrize("scenario", [ScenarioConfig(), ScenarioConfig.lively()],
                         ids=["default", "lively"])
def test_every_ending_occurs(scenario: ScenarioConfig) -> None:
    """Default and lively worlds hold every kind of ending each provider has."""
    sim = Simulator(seed=1, scenario=scenario)
    telnyx = {life.end_cause for life in sim.timelines(Provider.TELNYX)}
    bandwidth = {life.end_cause for life in sim.timelines(Provider.BANDWIDTH)}
    assert telnyx == set(EndCause)
    assert bandwidth == {EndCause.ALL_LEFT, EndCause.ENDED_VIA_API, EndCause.TIME_EXCEEDED}


def test_endings_are_coherent(simulator: Simulator) -> None:
    """Who ends a conference, when, and who is still there, fit its ending."""
    scenario = simulator.scenario
    for life in simulator.timelines():
        last_leave = max(member.left_ms for member in life.members)
        assert last_leave == life.ended_ms
        assert all(member.left_ms <= life.ended_ms for member in life.members)
        assert life.created_ms < life.in_progress_ms < life.ended_ms < life.gone_ms
        removed = [m for m in life.members if m.left_because_ended]
        assert all(m.left_ms == life.ended_ms for m in removed)
        hosts = [m for m in life.members
                 if m.end_conference_on_exit or m.soft_end_conference_on_exit]
        if life.end_cause is EndCause.ALL_LEFT:
            assert life.ended_by is life.members[0]
            assert not removed
            assert not hosts
            assert [m for m in life.members if m.left_ms == life.ended_ms] == [life.ended_by]
        elif life.end_cause is EndCause.HOST_LEFT:
            assert hosts == [life.ended_by]
            assert life.ended_by is not None
            assert not life.ended_by.left_because_ended
            assert removed, "someone is still there when the host leaves"
        else:
            assert life.ended_by is None
            assert not hosts
        if life.end_cause is EndCause.TIME_EXCEEDED:
            limit = (scenario.telnyx_max_duration_seconds if life.provider is Provider.TELNYX
                     else scenario.bandwidth_max_duration_seconds)
            assert life.ended_ms - life.created_ms == round(limit * 1000)
        for member in life.members:
            times = [change.at_ms for change in member.changes]
            assert times == sorted(times)
            assert all(member.connected_ms < t < member.left_ms for t in times)


def test_bandwidth_never_exceeds_twenty_members(make_simulator: Callable[..., Simulator]
                                                ) -> None:
    """Crowded Bandwidth conferences fill up to 20 simultaneous members and never beyond."""
    sim = make_simulator(scenario=ScenarioConfig(telnyx_conferences=0, bandwidth_conferences=30,
                                                 crowded_probability=1.0))
    peaks = []
    for life in sim.timelines(Provider.BANDWIDTH):
        peak = max(len(life.active_members_at(member.joined_ms)) for member in life.members)
        assert peak <= BANDWIDTH_MEMBER_LIMIT
        peaks.append(peak)
    assert BANDWIDTH_MEMBER_LIMIT in peaks


@pytest.mark.anyio
async def test_completed_conferences_turn_404_after_retention(
        client: httpx.AsyncClient, simulator: Simulator, clock: VirtualClock,
        telnyx_auth: dict[str, str], bandwidth_basic: httpx.BasicAuth) -> None:
    """A conference is 404 before it is created, served until retention runs out, then 404."""
    assert simulator.scenario.retention_seconds > 0
    for life in simulator.timelines():
        if life.provider is Provider.TELNYX:
            request = client.build_request(
                "GET", f"/v2/conferences/{life.conference_id}", params={"region": life.region},
                headers=telnyx_auth)
        else:
            request = client.build_request(
                "GET", f"/api/v2/accounts/9900000/conferences/{life.conference_id}")
        expected = [(life.created_ms - 1, 404), (life.created_ms, 200), (life.ended_ms, 200),
                    (life.gone_ms - 1, 200), (life.gone_ms, 404)]
        for at_ms, status in expected:
            clock.set(simulator.to_datetime(at_ms))
            auth = bandwidth_basic if life.provider is Provider.BANDWIDTH else None
            response = await client.send(request, auth=auth)
            assert response.status_code == status, (life.provider, at_ms - life.created_ms)


@pytest.mark.anyio
async def test_telnyx_times_follow_the_life(
        client: httpx.AsyncClient, simulator: Simulator, clock: VirtualClock,
        telnyx_auth: dict[str, str]) -> None:
    """Telnyx ``updated_at`` moves with each status change; ``expires_at`` is the 4 h limit."""
    life = next(simulator.timelines(Provider.TELNYX))
    limit_ms = round(simulator.scenario.telnyx_max_duration_seconds * 1000)
    for at_ms, status, updated_ms in ((life.created_ms, "init", life.created_ms),
                                      (life.ended_ms - 1, "in_progress", life.in_progress_ms),
                                      (life.ended_ms, "completed", life.ended_ms)):
        clock.set(simulator.to_datetime(at_ms))
        response = await client.get(f"/v2/conferences/{life.conference_id}",
                                    params={"region": life.region}, headers=telnyx_auth)
        data = response.json()["data"]
        assert data["status"] == status
        assert data["updated_at"] == simulator.iso(updated_ms)
        assert data["expires_at"] == simulator.iso(life.created_ms + limit_ms)


def test_worlds_are_built_lazily_and_cached_within_bounds() -> None:
    """A 10,000-conference world builds no life up front and keeps at most ``cache_size``."""
    scenario = ScenarioConfig(telnyx_conferences=5000, bandwidth_conferences=5000,
                              cache_size=8)
    sim = Simulator(seed=2, scenario=scenario)
    assert len(sim.conference_ids(Provider.TELNYX)) == 5000
    assert len(set(sim.conference_ids(Provider.BANDWIDTH))) == 5000
    wanted = sim.conference_ids(Provider.BANDWIDTH)[:20]
    first = [sim.timeline(Provider.BANDWIDTH, cid) for cid in wanted]
    again = [sim.timeline(Provider.BANDWIDTH, cid) for cid in wanted]
    assert first == again
    assert sim.timeline(Provider.TELNYX, wanted[0]) is None
    assert sim.timeline(Provider.BANDWIDTH, "conf-unknown") is None


def test_clocks() -> None:
    """A virtual clock moves only forward when told; a wall clock starts where it is told."""
    clock = VirtualClock()
    start = clock.now()
    assert clock.advance(90) - start == timedelta(seconds=90)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)
    wall = WallClock(speed=60, start=start)
    assert wall.now() >= start
    with pytest.raises(ValueError, match="positive"):
        WallClock(speed=0)


def test_a_compressed_scenario_is_the_same_world_played_faster() -> None:
    """``compressed(30)`` (``poller demo``) divides every duration: each conference is created
    at 1/30 of its time and lasts 1/30 as long, to the millisecond."""
    plain, fast = ScenarioConfig.lively(6), ScenarioConfig.lively(6).compressed(30)
    assert fast.shortest_duration_seconds == 2.0
    assert fast.first_join_seconds == (1 / 30, 20 / 30)
    for provider in Provider:
        for index in range(6):
            slow_life = build_timeline(1, provider, index, plain)
            fast_life = build_timeline(1, provider, index, fast)
            assert abs(fast_life.created_ms - slow_life.created_ms / 30) <= 1
            assert abs((fast_life.ended_ms - fast_life.created_ms)
                       - (slow_life.ended_ms - slow_life.created_ms) / 30) <= 2
            assert fast_life.end_cause is slow_life.end_cause
    with pytest.raises(ValueError, match="positive"):
        plain.compressed(0)
