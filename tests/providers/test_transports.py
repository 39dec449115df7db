"""Both HTTP transports over real sockets: the same observations, the same error kinds.

``HttpSettings.transport`` (``[polling] http_transport``) picks aiohttp (called directly, the
default) or httpx's own transport when none is injected. Whichever sends the requests, a poll
of the simulator under uvicorn must give the same ``Observation``; a refused connection, a
dropped one and a slow answer must become ``NetworkError``, ``NetworkError`` and ``Timeout``;
and bodies (plain, gzip, chunked; too large, undecodable, cut short) read or fail alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import socket
from collections.abc import AsyncIterator
from contextlib import aclosing
from types import MappingProxyType
from typing import get_args

import pytest

from poller.config import PollingSettings
from poller.errors import BadResponse, NetworkError, ProviderError, Timeout
from poller.model import Provider, utc_now
from poller.providers import HttpSettings
from poller.providers.bandwidth import read_bandwidth_error
from poller.providers.http import ProviderHttp, TransportName
from poller.providers.redaction import Redactor
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


BODY = b'{"id": "c1", "members": ["' + b"m" * 3000 + b'"]}'


def _answer(headers: dict[str, str], body: bytes) -> bytes:
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return b"HTTP/1.1 200 OK\r\n" + head.encode() + b"Connection: close\r\n\r\n" + body


def _chunked(body: bytes) -> bytes:
    parts = (body[i:i + 1000] for i in range(0, len(body), 1000))
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"


ANSWERS: dict[str, bytes] = {
    "plain": _answer({"Content-Length": str(len(BODY))}, BODY),
    "gzip": _answer({"Content-Encoding": "gzip",
                     "Content-Length": str(len(gzip.compress(BODY)))}, gzip.compress(BODY)),
    "chunked": _answer({"Transfer-Encoding": "chunked"}, _chunked(BODY)),
    "declared too large": _answer({"Content-Length": "100000"}, BODY),
    "chunked too large": _answer({"Transfer-Encoding": "chunked"}, _chunked(BODY * 2)),
    "gzip inflating past the cap": _answer(
        {"Content-Encoding": "gzip", "Content-Length": str(len(gzip.compress(BODY * 4)))},
        gzip.compress(BODY * 4)),
    "bad gzip": _answer({"Content-Encoding": "gzip", "Content-Length": "40"}, b"x" * 40),
    "cut short": _answer({"Content-Length": str(len(BODY))}, BODY[:100]),
    "not HTTP": b"SSH-2.0-OpenSSH_9.2\r\n",
}
"""Canned answers, and what each must become under both transports (cap: 4,000 bytes)."""
EXPECTED: dict[str, type[ProviderError] | None] = {
    "plain": None, "gzip": None, "chunked": None,
    "declared too large": BadResponse, "chunked too large": BadResponse,
    "gzip inflating past the cap": BadResponse, "bad gzip": BadResponse,
    "cut short": NetworkError, "not HTTP": NetworkError,
}


@contextlib.asynccontextmanager
async def canned_server(answer: bytes) -> AsyncIterator[str]:
    """A local server that reads a request's head, writes ``answer`` and closes."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.anyio
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("case", list(ANSWERS))
async def test_bodies_over_real_sockets(transport: TransportName, case: str) -> None:
    """Bodies are decoded and capped alike by both transports; what cannot be read is the same
    error kind."""
    settings = HttpSettings(transport=transport, max_response_bytes=4000)
    async with canned_server(ANSWERS[case]) as url:
        http = ProviderHttp(provider="bandwidth", account="a", base_url=url, settings=settings,
                            clock=utc_now, read_error_detail=read_bandwidth_error,
                            redactor=Redactor())
        context = http.context("c1")
        try:
            expected = EXPECTED[case]
            if expected is None:
                response = await http.get_ok("/c1", context=context)
                assert http.decode_json(response, context) == json.loads(BODY)
            else:
                with pytest.raises(expected) as caught:
                    http.decode_json(await http.get_ok("/c1", context=context), context)
                assert type(caught.value) is expected
                assert caught.value.conference_id == "c1"
                if "too large" in case or "past the cap" in case:
                    assert "4000-byte cap" in caught.value.message
        finally:
            await http.aclose()
