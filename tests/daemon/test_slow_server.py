"""A provider that trickles its answers: each poll ends at its deadline as ``timeout``, and the
other account is polled and recorded as usual."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from databases import fetch
from lockstep import ServedSimulator, compact_scenario, reader, run_once, write_config
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


class TricklingServer:
    """A real HTTP server, in a thread, answering every request with a 200 whose body comes
    one byte a second, for ever (until the client hangs up)."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._closed = threading.Event()
        self.requests = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> TricklingServer:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._closed.set()
        self._thread.join(timeout=5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.requests += 1
            threading.Thread(target=self._trickle, args=(client,), daemon=True).start()

    def _trickle(self, client: socket.socket) -> None:
        with client:
            try:
                client.recv(65536)
                client.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                               b"content-length: 100000\r\n\r\n{")
                while not self._closed.wait(1.0):
                    client.sendall(b" ")
            except OSError:
                return  # the client gave up


def test_once_ends_within_the_deadline_of_a_trickling_server(tmp_path: Path) -> None:
    """``poller once`` (the real CLI) with Telnyx trickling one byte a second beside a healthy
    Bandwidth: it ends soon after the 3 s poll deadline (exit 1: polls failed), every
    Bandwidth conference recorded, every Telnyx poll failed as ``timeout``."""
    database_url = f"sqlite:///{tmp_path / 'once.db'}"
    config = tmp_path / "config.toml"
    with ServedSimulator(seed=3, scenario=compact_scenario(3)) as served, \
            TricklingServer() as trickling:
        served.advance(120)
        write_config(config, database_url, served, poll_deadline_seconds=3,
                     read_timeout_seconds=30)
        config.write_text(config.read_text().replace(f'"{served.url}/v2"',
                                                     f'"{trickling.url}/v2"'))
        started = time.monotonic()
        result = run_once(config, served.environ())
        took = time.monotonic() - started
        assert trickling.requests > 0
    assert result.returncode == 1, result.stderr  # polls failed: said, and in poll_error
    assert "poll took longer than its 3 s deadline" in result.stderr
    assert took < 3 + 15, f"once took {took:.1f} s"
    engine = reader(database_url)
    try:
        targets = fetch(engine, "poll_target")
        errors = fetch(engine, "poll_error")
    finally:
        engine.dispose()
    telnyx = [t for t in targets if t["provider"] == "telnyx"]
    bandwidth = [t for t in targets if t["provider"] == "bandwidth"]
    assert telnyx
    assert all(t["last_outcome"] == "timeout" for t in telnyx), telnyx
    assert all("deadline" in e["detail"] for e in errors if e["kind"] == "timeout")
    assert bandwidth
    assert all(t["last_outcome"] in ("ok", "not_found") for t in bandwidth)
    assert any(t["last_outcome"] == "ok" for t in bandwidth)
