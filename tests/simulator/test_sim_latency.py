"""Simulated latency: every provider answer waits its round trip, and requests wait together."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from test_sim_cli import running_simulator

from poller.model import Provider
from poller.simulator import LatencyConfig, ScenarioConfig, Simulator, VirtualClock, create_app

TELNYX_AUTH = {"Authorization": "Bearer KEYSIMULATOR0000TELNYX"}
LATENCY = 0.08


def _client(sim: Simulator) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(sim)),
                             base_url="http://sim.test", headers=TELNYX_AUTH)


def _steady(latency: LatencyConfig) -> Simulator:
    return Simulator(seed=2, clock=VirtualClock(), scenario=ScenarioConfig.steady(30),
                     latency=latency)


@pytest.mark.anyio
async def test_every_provider_answer_waits_the_latency() -> None:
    """A conference, its participants, a 401 and a token each take at least the latency;
    ``/_sim`` answers at once."""
    sim = _steady(LatencyConfig(LATENCY))
    conference = sim.conference_ids(Provider.TELNYX)[0]
    async with _client(sim) as client:
        for call in (lambda: client.get(f"/v2/conferences/{conference}"),
                     lambda: client.get(f"/v2/conferences/{conference}/participants"),
                     lambda: client.get("/v2/conferences/x", headers={"Authorization": "no"}),
                     lambda: client.post("/api/v1/oauth2/token",
                                         auth=("sim-client-id", "sim-client-secret"),
                                         data={"grant_type": "client_credentials"})):
            started = time.perf_counter()
            response = await call()
            assert time.perf_counter() - started >= LATENCY, response.request.url
    slow = _steady(LatencyConfig(30.0))  # /_sim is never held back, however long the latency
    async with _client(slow) as client:
        started = time.perf_counter()
        assert (await client.get("/_sim/stats")).status_code == 200
        assert time.perf_counter() - started < 30.0


@pytest.mark.anyio
async def test_concurrent_requests_wait_together() -> None:
    """30 requests at once at 80 ms take less than 30 round trips (about one on a quiet
    machine): the wait does not block the event loop."""
    sim = _steady(LatencyConfig(LATENCY))
    ids = sim.conference_ids(Provider.TELNYX)
    async with _client(sim) as client:
        started = time.perf_counter()
        answers = await asyncio.gather(*(client.get(f"/v2/conferences/{cid}") for cid in ids))
        elapsed = time.perf_counter() - started
    assert all(answer.status_code == 200 for answer in answers)
    # Waiting in turn would take len(ids) round trips at least; a loaded machine may stretch
    # the wait together, but never to that.
    assert LATENCY <= elapsed < len(ids) * LATENCY


def test_jitter_is_uniform_within_bounds_and_seeded() -> None:
    """With jitter J each wait is within latency +- J, spread over both sides; the same seed
    gives the same waits."""
    config = LatencyConfig.ms(80, 20, seed=3)
    sim, again = _steady(config), _steady(config)
    waits = [sim.response_delay() for _ in range(2000)]
    assert waits == [again.response_delay() for _ in range(2000)]
    assert all(0.06 <= wait <= 0.1 for wait in waits)
    assert min(waits) < 0.065
    assert max(waits) > 0.095
    assert abs(sum(waits) / len(waits) - 0.08) < 0.002
    assert _steady(LatencyConfig()).response_delay() == 0


def test_latency_config_is_validated() -> None:
    """Negative latency, and jitter beyond the latency (a negative wait), are refused."""
    for bad in ((-0.01, 0.0), (0.05, 0.06), (0.05, -0.01), (float("inf"), 0.0)):
        with pytest.raises(ValueError, match="latency"):
            LatencyConfig(*bad)


def test_simulate_latency_option_under_uvicorn() -> None:
    """``poller simulate --latency-ms 80``: each answer over TCP takes the round trip, and
    answers to concurrent requests (one connection each) overlap."""
    with running_simulator("--steady", "--conferences", "20", "--latency-ms", "80",
                           "--latency-jitter-ms", "10") as sim:
        assert "latency 80 ms (+-10)" in sim.output
        conferences = sim.config()["accounts"][0]["conferences"]

        async def fetch_all() -> tuple[float, list[int]]:
            limits = httpx.Limits(max_connections=len(conferences))
            async with httpx.AsyncClient(base_url=sim.url, headers=TELNYX_AUTH,
                                         limits=limits, timeout=10) as client:
                await _when_up(client)
                started = time.perf_counter()
                one = await client.get(f"/v2/conferences/{conferences[0]}")
                assert time.perf_counter() - started >= 0.07
                started = time.perf_counter()
                answers = await asyncio.gather(*(client.get(f"/v2/conferences/{cid}")
                                                 for cid in conferences))
                return time.perf_counter() - started, [one.status_code] + [
                    a.status_code for a in answers]

        elapsed, statuses = asyncio.run(fetch_all())
        assert set(statuses) == {200}
        assert 0.07 <= elapsed < len(conferences) * 0.08  # less than one after the other


async def _when_up(client: httpx.AsyncClient) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            await client.get("/_sim/clock")
            return
        except httpx.ConnectError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


def test_jitter_beyond_latency_is_refused_on_the_command_line() -> None:
    """``--latency-jitter-ms`` above ``--latency-ms`` is a usage error."""
    from click.testing import CliRunner

    from poller.commands.simulate import simulate

    result = CliRunner().invoke(simulate, ["--latency-ms", "10", "--latency-jitter-ms", "20"])
    assert result.exit_code == 2
    assert "--latency-jitter-ms" in result.output
