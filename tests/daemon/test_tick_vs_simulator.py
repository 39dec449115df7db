"""Ticks of the real ``Poller`` against the simulator over ``httpx.ASGITransport``.

One ``VirtualClock`` drives the simulators, the clients and the poller; ticks run every five
virtual seconds and the recorded history is compared with the simulator's ground truth using
the helpers of ``tests/test_history_vs_truth.py``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from databases import fetch
from sim_world import BANDWIDTH_HOST, TELNYX_HOST, build_sim_world, drive
from sqlalchemy import Engine, update
from test_history_vs_truth import BANDWIDTH, TELNYX, compare, parse_time

from poller.app import App
from poller.model import Observation, Provider, TargetKey
from poller.providers import Pace
from poller.simulator import FaultConfig, FaultKind, ground_truth
from poller.store.schema import PollTarget

pytestmark = pytest.mark.anyio


def targets_by_id(engine: Engine) -> dict[str, dict[str, Any]]:
    return {r["conference_id"]: r for r in fetch(engine, "poll_target")}


async def test_history_matches_ground_truth_and_completed_are_retired(engine: Engine) -> None:
    """Ticks record every lasting change; completed conferences retire after a grace poll."""
    world = build_sim_world(seed=11, conferences=8)
    poller = world.poller(engine)
    start = world.clock.now()
    await poller.sync(start)
    try:
        report = await drive(poller, world.clock, seconds=3000)
    finally:
        await poller.aclose()
    end = world.clock.now() - timedelta(seconds=5)
    truth = ground_truth(world.telnyx, until_ms=world.telnyx.now_ms())
    counts = compare(engine, truth, (start, end), complete=True, expect_gone=False)
    assert counts["conferences"] >= 12
    assert counts["transitions"] >= 30
    assert counts["member_events"] >= 100
    assert report.failures == report.failed["not_found"]  # only not-yet-created / expired
    targets = targets_by_id(engine)
    conferences = {r["conference_id"]: r for r in fetch(engine, "conference")}
    completed = [c for c in truth["conferences"] if c["completed_at"] is not None
                 and c["conference_id"] in conferences
                 and parse_time(c["completed_at"]) < end - timedelta(seconds=60)]
    assert len(completed) >= 8
    for conf in completed:
        target = targets[conf["conference_id"]]
        assert (target["state"], target["retired_reason"]) == ("retired", "completed"), conf
        assert conferences[conf["conference_id"]]["status"] == "completed"
    assert report.retired["completed"] == len([t for t in targets.values()
                                                if t["retired_reason"] == "completed"])
    assert all(t["lease_owner"] is None for t in targets.values())


async def test_unknown_conferences_retire_never_found_with_backoff(engine: Engine) -> None:
    """A conference that never exists is polled with growing backoff, then retired."""
    world = build_sim_world(only=(), extra_bandwidth=("conf-does-not-exist",),
                            polling={"never_found_retire_seconds": 300,
                                     "backoff_max_seconds": 120})
    poller = world.poller(engine)
    start = world.clock.now()
    await poller.sync(start)
    await drive(poller, world.clock, seconds=600)
    await poller.aclose()
    target = targets_by_id(engine)["conf-does-not-exist"]
    assert (target["state"], target["retired_reason"]) == ("retired", "never_found")
    assert target["retired_at"] == start + timedelta(seconds=300)
    errors = fetch(engine, "poll_error")
    offsets = [(e["occurred_at"] - start).total_seconds() for e in errors]
    assert offsets == [0, 20, 60, 140, 260, 300]  # idle 20 s, doubling, capped, deadline


async def test_seen_conference_that_vanishes_is_retired_gone(engine: Engine) -> None:
    """A seen conference that expired during an outage is retired 'gone' after three 404s."""
    world = build_sim_world()
    full = ground_truth(world.bandwidth, until_ms=None)
    now = world.clock.now()
    conf = next(c for c in full["conferences"] if c["provider"] == "bandwidth"
                and parse_time(c["created_at"]) < now - timedelta(seconds=60)
                and c["gone_at"] is not None and parse_time(c["completed_at"]) > now)
    world = build_sim_world(only=(conf["conference_id"],))
    poller = world.poller(engine)
    await poller.sync(world.clock.now())
    await drive(poller, world.clock, seconds=0)
    world.router.down.add(BANDWIDTH_HOST)
    outage = (parse_time(conf["gone_at"]) - world.clock.now()).total_seconds() + 5
    await drive(poller, world.clock, seconds=outage)
    world.router.down.clear()
    report = await drive(poller, world.clock, seconds=120)
    await poller.aclose()
    target = targets_by_id(engine)[conf["conference_id"]]
    assert (target["state"], target["retired_reason"]) == ("retired", "gone")
    assert report.failed["not_found"] == 3
    [row] = fetch(engine, "conference")
    assert row["gone_at"] is not None
    assert row["status"] == "in_progress"  # the end was never observed: no fabrication


async def test_rate_limit_pauses_only_that_account(engine: Engine) -> None:
    """A 429 pauses the whole Telnyx account until Retry-After; Bandwidth keeps polling."""
    faults = FaultConfig(rates={FaultKind.RATE_LIMITED: 1.0}, retry_after_seconds=30)
    world = build_sim_world(telnyx_faults=faults, polling={"concurrency": 1})
    poller = world.poller(engine, batch_size=100)
    start = world.clock.now()
    await poller.sync(start)
    first = await poller.tick(start)
    assert world.telnyx.faults.requests == 1
    assert first.failed["rate_limited"] == 1
    assert first.deferred == len(world.config.account(TELNYX).conferences) - 1
    telnyx = [t for t in targets_by_id(engine).values() if t["account"] == TELNYX]
    assert {t["next_poll_at"] for t in telnyx} == {start + timedelta(seconds=30)}
    assert all(t["lease_owner"] is None for t in telnyx)
    world.clock.advance(5)
    during = await drive(poller, world.clock, seconds=20)  # ticks at 5 … 25 s
    assert world.telnyx.faults.requests == 1
    assert during.ok > 0
    assert poller.accounts.paused(start + timedelta(seconds=29)) == {TELNYX}
    world.clock.set(start + timedelta(seconds=30))
    await poller.tick(world.clock.now())
    await poller.aclose()
    assert world.telnyx.faults.requests == 2


async def test_auth_failure_pauses_one_account_with_one_error_log(
        engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    """A refused Telnyx key pauses that account with one error log; Bandwidth keeps polling."""
    world = build_sim_world(telnyx_api_key="KEYWRONG")
    poller = world.poller(engine)
    start = world.clock.now()
    await poller.sync(start)
    with caplog.at_level(logging.WARNING, logger="poller"):
        report = await drive(poller, world.clock, seconds=900)
    await poller.aclose()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "telnyx" in errors[0].getMessage()
    assert TELNYX in errors[0].getMessage()
    assert "KEYWRONG" not in caplog.text
    n_telnyx = len(world.config.account(TELNYX).conferences)
    # Once at the start and once the pause ended; requests still queued are handed back.
    assert 2 <= report.failed["auth"] <= 2 * n_telnyx
    auth_times = {e["occurred_at"] for e in fetch(engine, "poll_error", kind="auth")}
    assert auth_times == {start, start + timedelta(seconds=600)}
    bandwidth = [t for t in targets_by_id(engine).values() if t["account"] == BANDWIDTH]
    assert sum(t["poll_count"] for t in bandwidth) > 10 * len(bandwidth)


class ExplodingClient:
    """Wraps a client; one conference makes it raise something no one expected."""

    def __init__(self, inner: Any, conference_id: str) -> None:
        self.inner, self.conference_id = inner, conference_id
        self.provider, self.account = inner.provider, inner.account

    async def fetch(self, target: TargetKey, pace: Pace | None = None) -> Observation:
        if target.conference_id == self.conference_id:
            raise RuntimeError("parser bug")
        result: Observation = await self.inner.fetch(target, pace)
        return result

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_unexpected_exception_is_one_internal_failure(
        engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    """An unexpected exception for one target is our own bug: logged with its context and
    recorded as one ``internal`` failure, never as the provider's ``bad_response``."""
    world = build_sim_world()
    poller = world.poller(engine)
    victim = world.config.account(TELNYX).targets()[0].conference_id
    account = poller.accounts[TELNYX]
    account.client = ExplodingClient(account.client, victim)
    await poller.sync(world.clock.now())
    with caplog.at_level(logging.ERROR, logger="poller"):
        report = await poller.tick(world.clock.now())
    await poller.aclose()
    assert report.failed["internal"] == 1
    assert "bad_response" not in report.failed
    assert report.polled == len(world.config.targets())
    assert victim in caplog.text
    assert "telnyx" in caplog.text
    [error] = fetch(engine, "poll_error", kind="internal")
    assert "RuntimeError" in error["detail"]


async def test_a_bug_in_one_schedule_costs_that_schedule_only(
        engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    """Deciding one target's next poll raises (a hand-edited ``not_found_since`` at the end of
    time overflows the date arithmetic): that poll is still recorded and polled again an
    interval later, the others are scheduled as usual, and the traceback is logged once however
    often it happens."""
    world = build_sim_world(only=(), extra_bandwidth=("conf-broken", "conf-fine"))
    poller = world.poller(engine)
    await poller.sync(world.clock.now())
    with engine.begin() as conn:
        conn.execute(update(PollTarget).where(PollTarget.conference_id == "conf-broken")
                     .values(not_found_since=datetime.max.replace(tzinfo=UTC)))
    with caplog.at_level(logging.WARNING, logger="poller"):
        for _ in range(3):
            report = await poller.tick(world.clock.now())
            assert report.polled == report.failed["not_found"] >= 1
            world.clock.advance(20)
    await poller.aclose()
    targets = targets_by_id(engine)
    broken, fine = targets["conf-broken"], targets["conf-fine"]
    assert (broken["poll_count"], broken["last_outcome"]) == (3, "not_found")
    assert broken["next_poll_at"] - broken["last_polled_at"] == timedelta(seconds=10), (
        "the fallback: an interval later")
    assert fine["poll_count"] == 3
    assert fine["next_poll_at"] - fine["last_polled_at"] == timedelta(seconds=20), (
        "never found: the idle interval as usual")
    tracebacks = [r for r in caplog.records if r.exc_info and "internal error in schedule"
                  in r.getMessage()]
    assert len(tracebacks) == 1
    assert poller.internal.counts == {("schedule", "OverflowError",
                                       "date value out of range"): 3}


async def test_token_bucket_paces_requests(engine: Engine) -> None:
    """Requests are paced by the account's bucket (OAuth2 token requests included); polls
    that would wait too long for their first token are handed back for later."""
    world = build_sim_world(accounts={BANDWIDTH: {"requests_per_second": 2}},
                            extra_bandwidth=tuple(f"conf-x{i}" for i in range(20)), only=())
    poller = world.poller(engine, max_rate_wait_seconds=3)
    await poller.sync(world.clock.now())
    report = await poller.tick(world.clock.now())
    await poller.aclose()
    # Every request takes a token, the OAuth2 token request too: the first poll's token
    # request and conference request take the 2 tokens at hand, then the next polls wait
    # 0.5, 1.0, … 3.0 s: 7 polled (8 requests in 3 s), 13 handed back.
    assert report.polled == 7
    assert report.deferred == 13
    assert (world.bandwidth.faults.requests, world.bandwidth.tokens.issued) == (7, 1)
    assert world.sleeps == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.5, 3.0])
    assert Provider.BANDWIDTH.value in {t["provider"] for t in targets_by_id(engine).values()}


class TimedRouter(httpx.AsyncBaseTransport):
    """Passes requests on, noting the monotonic time each one was sent at, by host."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.sent: dict[str, list[float]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.setdefault(request.url.host, []).append(time.monotonic())
        return await self.inner.handle_async_request(request)


def most_in_window(times: list[float], rate: float) -> float:
    """The largest excess of requests over ``rate · span`` in any window of ``times``: a token
    bucket of capacity ``c`` keeps it at most ``c`` (plus timing slack)."""
    times = sorted(times)
    return max(j - i + 1 - rate * (times[j] - times[i])
               for i in range(len(times)) for j in range(i, len(times)))


async def test_every_request_takes_a_token_in_real_time(engine: Engine) -> None:
    """``requests_per_second`` bounds HTTP requests, not polls: a Telnyx poll's conference and
    participant requests each take a token, so at 5 per second over any window of ``t``
    seconds at most 5 + 5·t requests reach the provider (the real clock and real sleeps)."""
    world = build_sim_world(accounts={TELNYX: {"requests_per_second": 5},
                                      BANDWIDTH: {"conferences": []}})
    world.clock.advance(300)  # most conferences under way
    router = TimedRouter(world.router)
    app = App(world.config, world.credentials(), transport=router)  # the real clock
    poller = app.poller(app.store(engine), max_rate_wait_seconds=10)
    await poller.sync()
    report = await poller.tick(poller.clock())
    await poller.aclose()
    sent = router.sent[TELNYX_HOST]
    assert report.polled == len(world.config.account(TELNYX).conferences) >= 6
    assert report.ok >= 4
    assert len(sent) >= report.polled + report.ok  # participants of each conference found
    # Capacity 5 plus slack for a busy event loop bunching sends; sending every request
    # through at a poll's token (the bug this guards against) gives about 10 here.
    assert most_in_window(sent, 5) <= 5 + 1.5
    assert sent[-1] - sent[0] >= (len(sent) - 5) / 5 - 0.2


async def test_waiting_for_a_later_token_frees_the_concurrency_slot(engine: Engine) -> None:
    """Each request waits for its own token; a poll waiting for the token of a later request
    (participants) does so without holding one of the ``concurrency`` slots."""
    world = build_sim_world(polling={"concurrency": 1},
                            accounts={TELNYX: {"requests_per_second": 1},
                                      BANDWIDTH: {"conferences": []}})
    world.clock.advance(300)  # most conferences under way
    slot_free_while_sleeping: list[bool] = []

    async def sleep(seconds: float) -> None:
        slot_free_while_sleeping.append(poller.pacer.slots_in_use == 0)

    poller = world.poller(engine, sleep=sleep, max_rate_wait_seconds=1000)
    await poller.sync(world.clock.now())
    report = await poller.tick(world.clock.now())
    await poller.aclose()
    requests = world.telnyx.faults.requests
    assert report.polled == 4  # a batch is 4 · concurrency
    assert report.ok >= 1
    assert requests >= report.polled + report.ok
    # One token at hand (capacity 1), the clock stands still: every later request waits.
    assert len(slot_free_while_sleeping) == requests - 1
    assert all(slot_free_while_sleeping)


class SlowRouter(httpx.AsyncBaseTransport):
    """Passes requests on after a short real pause (network latency: other polls run)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.01)
        return await self.inner.handle_async_request(request)


async def test_token_renewal_waiting_for_a_token_does_not_deadlock(engine: Engine) -> None:
    """A poll renewing the OAuth2 token after a 401 holds the token lock while its token
    request waits for the bucket; polls that take the concurrency slot meanwhile wait on that
    lock, so the renewing poll must keep its slot while it waits (or nobody moves again)."""
    world = build_sim_world(polling={"concurrency": 1},
                            accounts={BANDWIDTH: {"requests_per_second": 1},
                                      TELNYX: {"conferences": []}})
    world.clock.advance(300)  # most conferences under way
    async def sleep(seconds: float) -> None:  # virtual time, but other tasks get to run
        await asyncio.sleep(0)

    poller = world.poller(engine, transport=SlowRouter(world.router), sleep=sleep,
                          max_rate_wait_seconds=1000)
    await poller.sync(world.clock.now())
    first = await poller.tick(world.clock.now())
    assert first.ok >= 2
    assert world.bandwidth.tokens.issued == 1
    # The provider revokes every token issued so far (as a credential rotation would): the
    # client's cached token, still valid by its own clock, now meets a 401.
    world.bandwidth.tokens._key = b"rotated"
    try:
        second = await asyncio.wait_for(poller.tick(world.clock.now()), timeout=10)
    finally:
        await poller.aclose()
    assert second.polled == 4
    assert world.bandwidth.tokens.issued == 2
    assert second.failed.get("auth", 0) == 0
