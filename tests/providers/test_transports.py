"""Both HTTP transports over real sockets: the same observations, the same error kinds.

``HttpSettings.transport`` (``[polling] http_transport``) picks aiohttp (httpx-aiohttp, the
default) or httpx's own transport when none is injected. Whichever sends the requests, a poll
of the simulator under uvicorn must give the same ``Observation``, and a refused connection, a
dropped one and a slow answer must become ``NetworkError``, ``NetworkError`` and ``Timeout``.
"""

from __future__ import annotations

import socket
from contextlib import aclosing
from types import MappingProxyType
from typing import get_args

import pytest

from poller.config import PollingSettings
from poller.errors import NetworkError, ProviderError, Timeout
from poller.model import Provider
from poller.providers import HttpSettings
from poller.providers.http import TransportName
from poller.simulator import FaultConfig, FaultKind, ScenarioConfig, Simulator, VirtualClock

from .test_clients_vs_simulator import BASIC, TELNYX, make_client, target_of, uvicorn_serving

TRANSPORTS: tuple[TransportName, ...] = get_args(TransportName)


def test_aiohttp_is_the_default() -> None:
    assert HttpSettings().transport == "aiohttp"
    assert HttpSettings.for_polling(PollingSettings()).transport == "aiohttp"
    assert HttpSettings.for_polling(PollingSettings(http_transport="httpx")).transport == "httpx"


@pytest.mark.anyio
@pytest.mark.parametrize("kind", [TELNYX, BASIC])
async def test_both_transports_observe_the_same(kind: str) -> None:
    sim = Simulator(seed=3, clock=VirtualClock(), scenario=ScenarioConfig.lively(6))
    lives = [life for life in sim.timelines() if life.exists_at(sim.now_ms())
             and (life.region is not None) == (kind == TELNYX)]
    assert lives
    seen = {}
    with uvicorn_serving(sim) as url:
        for transport in TRANSPORTS:
            client = make_client(kind, sim, None, base_url=url,
                                 settings=HttpSettings(transport=transport))
            async with aclosing(client):
                seen[transport] = [await client.fetch(target_of(kind, life)) for life in lives]
    assert seen["aiohttp"] == seen["httpx"]
    assert {o.conference.conference_id for o in seen["aiohttp"]} == {
        life.conference_id for life in lives}


@pytest.mark.anyio
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_refused_connection_is_a_network_error(transport: TransportName) -> None:
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sim = Simulator(seed=3, clock=VirtualClock(), scenario=ScenarioConfig.lively(2))
    life = next(sim.timelines())
    client = make_client(TELNYX, sim, None, base_url=f"http://127.0.0.1:{port}",
                         settings=HttpSettings(transport=transport))
    async with aclosing(client):
        with pytest.raises(NetworkError) as caught:
            await client.fetch(target_of(TELNYX, life))
    assert "connection failed" in caught.value.message
    assert caught.value.conference_id == life.conference_id


@pytest.mark.anyio
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(("fault", "error"), [(FaultKind.RESET, NetworkError),
                                              (FaultKind.SLOW, Timeout)])
async def test_dropped_and_slow_answers(transport: TransportName, fault: FaultKind,
                                        error: type[ProviderError]) -> None:
    sim = Simulator(seed=3, clock=VirtualClock(), scenario=ScenarioConfig.lively(2),
                    faults=FaultConfig(rates=MappingProxyType({fault: 1.0}),
                                       slow_delay_seconds=2.0))
    life = next(sim.timelines(Provider.BANDWIDTH))
    settings = HttpSettings(transport=transport, read_timeout_seconds=0.3)
    with uvicorn_serving(sim) as url:
        client = make_client(BASIC, sim, None, base_url=url, settings=settings)
        async with aclosing(client):
            with pytest.raises(error) as caught:
                await client.fetch(target_of(BASIC, life))
    assert caught.value.conference_id == life.conference_id
