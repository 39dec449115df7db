"""The benchmark world: ``ScenarioConfig.steady`` stands still, ``POST /_sim/churn`` moves it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from poller.model import Provider
from poller.simulator import ScenarioConfig, Simulator, VirtualClock, create_app, ground_truth

TELNYX = {"Authorization": "Bearer KEYSIMULATOR0000TELNYX"}
BASIC = httpx.BasicAuth("sim-api-user", "sim-api-password")
N = 10


async def served(http: httpx.AsyncClient, sim: Simulator) -> dict[str, Any]:
    """Every conference as served now: Telnyx conference + participants, Bandwidth conference."""
    seen: dict[str, Any] = {}
    for cid in sim.conference_ids(Provider.TELNYX):
        conference = (await http.get(f"/v2/conferences/{cid}", headers=TELNYX)).json()
        members = (await http.get(f"/v2/conferences/{cid}/participants",
                                  headers=TELNYX)).json()
        seen[cid] = (conference, members)
    for cid in sim.conference_ids(Provider.BANDWIDTH):
        seen[cid] = (await http.get(f"/api/v2/accounts/9900000/conferences/{cid}",
                                    auth=BASIC)).json()
    return seen


def muted(document: Any) -> bool:
    """The mute of the one member of a served conference (either provider)."""
    if isinstance(document, tuple):
        [participant] = document[1]["data"]
        return bool(participant["muted"])
    [member] = document["activeMembers"]
    return bool(member["mute"])


@pytest.fixture
def steady(make_simulator: Callable[..., Simulator]) -> Simulator:
    return make_simulator(scenario=ScenarioConfig.steady(N))


@pytest.fixture
async def http(steady: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(steady))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim.test") as client:
        yield client


@pytest.mark.anyio
async def test_steady_world_stands_still(steady: Simulator, clock: VirtualClock,
                                         http: httpx.AsyncClient) -> None:
    """Every conference is in progress with one joined member, and an hour changes nothing."""
    before = await served(http, steady)
    assert len(before) == 2 * N
    for document in before.values():
        if isinstance(document, tuple):
            assert document[0]["data"]["status"] == "in_progress"
            assert [p["status"] for p in document[1]["data"]] == ["joined"]
        else:
            assert document["completedTime"] is None
            assert len(document["activeMembers"]) == 1
    clock.advance(3600)
    assert await served(http, steady) == before
    truth = ground_truth(steady, steady.now_ms())
    assert all(len(c["status_changes"]) == 2 and [e["kind"] for e in c["member_events"]]
               in (["joining", "joined"], ["joined"]) for c in truth["conferences"])


@pytest.mark.anyio
async def test_churn_flips_a_tenth_per_call_round_the_world(
        steady: Simulator, clock: VirtualClock, http: httpx.AsyncClient) -> None:
    start = await served(http, steady)
    changed_at: dict[str, list[int]] = {}
    for round_ in range(10):
        clock.advance(10)
        answer = await http.post("/_sim/churn", json={"fraction": 0.1})
        assert answer.status_code == 200
        assert answer.json() == {"changed": 2, "at": steady.iso(steady.now_ms())}
        now = await served(http, steady)
        flipped = {cid for cid in now if muted(now[cid]) != muted(start[cid])}
        assert set(changed_at) <= flipped  # none flipped back
        assert len(flipped - set(changed_at)) == 2
        changed_at.update(dict.fromkeys(flipped - set(changed_at), round_))
    assert sorted(changed_at) == sorted(start)  # ten calls of 10 %: each conference once
    stats = (await http.get("/_sim/stats")).json()
    assert stats["churn_changes"] == 2 * N

    # The ground truth has each flip, at the time it was made.
    truth = ground_truth(steady, steady.now_ms())
    flips = [(c["conference_id"], e["at"]) for c in truth["conferences"]
             for e in c["member_events"] if e["kind"] in ("muted", "unmuted")]
    assert len(flips) == 2 * N
    assert {cid for cid, _ in flips} == set(start)

    clock.advance(10)  # an eleventh call starts the second round: back to the first two
    assert steady.churn(0.1) == 2
    again = await served(http, steady)
    assert sum(muted(again[cid]) != muted(start[cid]) for cid in again) == 2 * N - 2


@pytest.mark.anyio
@pytest.mark.parametrize("body", [{"fraction": 0}, {"fraction": 1.5}, {"fraction": "x"}, {},
                                  {"fraction": "NaN"}, [0.1],
                                  {"fraction": 0.1, "provider": "zoom"}])
async def test_churn_refuses_bad_fractions(http: httpx.AsyncClient, steady: Simulator,
                                           body: Any) -> None:
    answer = await http.post("/_sim/churn", json=body)
    assert answer.status_code == 400
    assert "fraction" in answer.json()["error"]
    assert steady.churn_changes == 0


def test_churn_passes_over_conferences_not_in_progress() -> None:
    """In a world where nothing exists yet, churn changes nothing (and says so)."""
    sim = Simulator(seed=2, clock=VirtualClock(), scenario=ScenarioConfig(
        telnyx_conferences=3, bandwidth_conferences=3, created_from_seconds=600,
        created_until_seconds=1200))
    assert sim.churn(1.0) == 0
    assert sim.churn_changes == 0


@pytest.mark.anyio
async def test_churn_of_one_provider(http: httpx.AsyncClient, steady: Simulator) -> None:
    """``"provider"`` restricts churn to that provider's conferences, with its own round."""
    start = await served(http, steady)
    for _ in range(5):
        answer = await http.post("/_sim/churn", json={"fraction": 0.2, "provider": "bandwidth"})
        assert answer.json()["changed"] == 2
    now = await served(http, steady)
    flipped = {cid for cid in now if muted(now[cid]) != muted(start[cid])}
    assert flipped == set(steady.conference_ids(Provider.BANDWIDTH))
