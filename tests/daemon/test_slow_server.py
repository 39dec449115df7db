"""A provider that trickles its answers: each poll ends at its deadline as ``timeout``, and the
other account is polled and recorded as usual."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from databases import fetch
from sim_world import TELNYX_HOST, HostRouter, build_sim_world
from sqlalchemy import Engine

pytestmark = pytest.mark.anyio

DEADLINE = 1.0


class Trickle(httpx.AsyncByteStream):
    """A body that never ends: one byte every ``gap`` seconds (no read timeout fires)."""

    def __init__(self, gap: float = 0.05) -> None:
        self.gap = gap

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"{"
        while True:
            await asyncio.sleep(self.gap)
            yield b" "


class TricklingHost(httpx.AsyncBaseTransport):
    """Answers every request with a 200 whose body trickles forever."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "application/json"},
                              stream=Trickle())


async def test_a_trickling_server_fails_its_polls_at_the_deadline(engine: Engine) -> None:
    """Telnyx trickles one byte at a time: every Telnyx poll fails as ``timeout`` once its
    deadline has passed, while every Bandwidth poll of the same tick is recorded."""
    world = build_sim_world(conferences=3, polling={"poll_deadline_seconds": DEADLINE})
    router = HostRouter({**world.router.routes, TELNYX_HOST: TricklingHost()})
    poller = world.poller(engine, transport=router)
    await poller.sync(world.clock.now())
    started = time.monotonic()
    try:
        report = await asyncio.wait_for(poller.tick(world.clock.now()), timeout=30)
    finally:
        await poller.aclose()
    took = time.monotonic() - started
    telnyx = len(world.config.account("telnyx-sim").conferences)
    bandwidth = len(world.config.account("bandwidth-sim").conferences)
    assert report.failed["timeout"] == telnyx
    assert report.polled == telnyx + bandwidth
    assert DEADLINE <= took < DEADLINE + 10, "the tick ends soon after the deadline"
    errors = fetch(engine, "poll_error", kind="timeout")
    assert len(errors) == telnyx
    assert all("deadline" in e["detail"] for e in errors)
    polled = {t["conference_id"]: t for t in fetch(engine, "poll_target")}
    assert all(t["poll_count"] == 1 for t in polled.values())
