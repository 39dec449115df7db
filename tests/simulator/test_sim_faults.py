"""Fault injection: seeded rates, and how each fault reaches an in-process client."""

from __future__ import annotations

import json
from collections import Counter
from types import MappingProxyType

import anyio
import httpx
import pytest

from poller.commands.simulate import simulate
from poller.model import Provider
from poller.providers import HttpSettings
from poller.simulator import FaultConfig, FaultKind, Simulator, VirtualClock, create_app
from poller.simulator.faults import FaultInjector

TELNYX_AUTH = {"Authorization": "Bearer KEYSIMULATOR0000TELNYX"}


def _only(kind: FaultKind, slow_delay_seconds: float = 15.0) -> FaultConfig:
    return FaultConfig(rates=MappingProxyType({kind: 1.0}),
                       slow_delay_seconds=slow_delay_seconds)


def test_fault_rates_are_roughly_honoured() -> None:
    """Over 7,000 seeded draws each fault comes up within 20 % of its configured rate."""
    rates = {kind: 0.04 for kind in FaultKind}
    injector = FaultInjector(FaultConfig(rates=MappingProxyType(rates), seed=5))
    draws = Counter(injector.draw() for _ in range(7000))
    for kind in FaultKind:
        assert 0.8 * 280 <= draws[kind] <= 1.2 * 280, (kind, draws[kind])
    assert 0.9 * 5040 <= draws[None] <= 1.1 * 5040
    assert injector.stats()["requests"] == 7000
    assert injector.stats()["faults"] == {kind.value: draws[kind] for kind in FaultKind}


def test_fault_sequences_are_deterministic() -> None:
    """The same fault seed gives the same sequence of faults; another seed another one."""
    def sequence(seed: int) -> list[FaultKind | None]:
        injector = FaultInjector(FaultConfig.spread(0.5, seed=seed))
        return [injector.draw() for _ in range(200)]
    assert sequence(1) == sequence(1)
    assert sequence(1) != sequence(2)


def test_fault_config_is_validated() -> None:
    """Negative rates, or rates adding up past 1, are refused; ``spread`` splits evenly."""
    with pytest.raises(ValueError, match="at most 1"):
        FaultConfig(rates=MappingProxyType({FaultKind.SLOW: 0.6, FaultKind.RESET: 0.6}))
    with pytest.raises(ValueError, match="negative"):
        FaultConfig(rates=MappingProxyType({FaultKind.SLOW: -0.1}))
    spread = FaultConfig.spread(0.7)
    assert set(spread.rates) == set(FaultKind)
    assert sum(spread.rates.values()) == pytest.approx(0.7)


async def _fetch_pair(config: FaultConfig, clock: VirtualClock
                      ) -> tuple[httpx.Response, bytes]:
    """A faulty answer for a live Telnyx conference, and the fault-free body for comparison."""
    faulty = Simulator(seed=4, clock=clock, faults=config)
    clean = Simulator(seed=4, clock=clock)
    life = next(t for t in clean.timelines(Provider.TELNYX) if t.region == "US")
    clock.set(clean.to_datetime(life.in_progress_ms))
    url = f"/v2/conferences/{life.conference_id}"
    bodies = []
    for sim in (clean, faulty):
        transport = httpx.ASGITransport(app=create_app(sim))
        async with httpx.AsyncClient(transport=transport, base_url="http://sim.test") as client:
            response = await client.get(url, headers=TELNYX_AUTH)
            bodies.append(response)
    return bodies[1], bodies[0].content


@pytest.mark.anyio
async def test_malformed_body_is_not_json(clock: VirtualClock) -> None:
    """A malformed answer is a 200 ``application/json`` whose body does not parse."""
    response, _ = await _fetch_pair(_only(FaultKind.MALFORMED), clock)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        response.json()


@pytest.mark.anyio
async def test_truncated_body_is_the_start_of_the_real_one(clock: VirtualClock) -> None:
    """A truncated answer is the real JSON body cut short, with a matching Content-Length."""
    response, whole = await _fetch_pair(_only(FaultKind.TRUNCATED), clock)
    assert response.status_code == 200
    assert 0 < len(response.content) < len(whole)
    assert whole.startswith(response.content)
    assert int(response.headers["content-length"]) == len(response.content)
    with pytest.raises(json.JSONDecodeError):
        response.json()


@pytest.mark.anyio
async def test_reset_raises_a_read_error_in_process(clock: VirtualClock) -> None:
    """In-process, a connection reset surfaces as ``httpx.ReadError`` from the client call."""
    with pytest.raises(httpx.ReadError, match="simulated connection reset"):
        await _fetch_pair(_only(FaultKind.RESET), clock)


@pytest.mark.anyio
async def test_slow_answer_outlasts_a_client_deadline(clock: VirtualClock) -> None:
    """A slow answer is not there before the client's deadline (the call is cancelled)."""
    with pytest.raises(TimeoutError), anyio.fail_after(0.05):
        await _fetch_pair(_only(FaultKind.SLOW, slow_delay_seconds=30.0), clock)


@pytest.mark.anyio
async def test_slow_answer_is_the_normal_answer_late(clock: VirtualClock) -> None:
    """Given time, a slow answer is the normal one."""
    response, whole = await _fetch_pair(_only(FaultKind.SLOW, slow_delay_seconds=0.01), clock)
    assert response.status_code == 200
    assert response.content == whole


@pytest.mark.anyio
async def test_faults_spare_token_and_sim_endpoints(clock: VirtualClock) -> None:
    """Faults hit provider endpoints only: the token endpoint and ``/_sim`` always answer."""
    sim = Simulator(seed=4, clock=clock, faults=_only(FaultKind.SERVER_ERROR))
    transport = httpx.ASGITransport(app=create_app(sim))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim.test") as client:
        token = await client.post("/api/v1/oauth2/token",
                                  auth=("sim-client-id", "sim-client-secret"),
                                  data={"grant_type": "client_credentials"})
        assert token.status_code == 200
        for path in ("/_sim/clock", "/_sim/conferences", "/_sim/stats"):
            assert (await client.get(path)).status_code == 200
        unauthenticated = await client.get("/v2/conferences/x")
        assert unauthenticated.status_code == 401
    assert sim.faults.stats()["requests"] == 0


def test_default_slow_delay_outlasts_the_client_read_timeout() -> None:
    """By default a slow answer comes clearly after poller's read timeout, in-process and on
    the command line, so it is seen as a timeout and not as a race with one."""
    read_timeout = HttpSettings().read_timeout_seconds
    option = next(p for p in simulate.params if p.name == "slow_seconds")
    for delay in (FaultConfig().slow_delay_seconds, FaultConfig.spread(0.1).slow_delay_seconds,
                  option.default):
        assert isinstance(delay, float)
        assert delay >= read_timeout + 5
