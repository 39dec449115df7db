"""Several daemons on one database: ``[daemon]`` settings, registration, heartbeats, leases,
status queries and the jittered tick gap (both databases; the three-process runs are in
``test_fleet_postgres.py``)."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import threading
from datetime import timedelta
from typing import Any

import pytest
from databases import fetch
from factories import T0, at, telnyx_target
from sim_world import build_sim_world
from sqlalchemy import Engine, select, update
from test_process_life import WAIT_SECONDS, StallingTransport, make_daemon, wait_until

from poller.config import DaemonSettings, parse_config
from poller.daemon.ticker import JitteredInterval
from poller.errors import ConfigError, IdentityInUse, IdentityLost
from poller.store.fleet import (
    fleet_status,
    heartbeat,
    mark_stopped,
    register,
)
from poller.store.schema import PollerDaemon, PollTarget
from poller.store.targets import claim_due, sync_targets


def daemons(engine: Engine) -> list[dict[str, Any]]:
    """Every ``poller_daemon`` row, by identity."""
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(
            select(PollerDaemon).order_by(PollerDaemon.identity))]


# --- [daemon] ------------------------------------------------------------------------------


def daemon_config(daemon: dict[str, Any], polling: dict[str, Any] | None = None) -> Any:
    return parse_config({"daemon": daemon, "polling": polling or {}}, environ={})


def test_daemon_defaults_follow_host_pid_and_read_timeout() -> None:
    """No [daemon]: identity host:pid, lease max(60, 2 × read timeout), heartbeat lease / 4."""
    config = daemon_config({})
    assert config.daemon.effective_identity() == f"{socket.gethostname()}:{os.getpid()}"
    assert config.daemon.effective_lease_seconds(config.polling) == 60
    assert config.daemon.effective_heartbeat_seconds(config.polling) == 15
    slow = daemon_config({}, {"read_timeout_seconds": 45})
    assert slow.daemon.effective_lease_seconds(slow.polling) == 90
    assert slow.daemon.effective_heartbeat_seconds(slow.polling) == 22.5


def test_daemon_settings_given() -> None:
    config = daemon_config({"identity": "poller-a", "lease_seconds": 8, "heartbeat_seconds": 2})
    assert config.daemon.effective_identity() == "poller-a"
    assert config.daemon.effective_lease_seconds(config.polling) == 8
    assert config.daemon.effective_heartbeat_seconds(config.polling) == 2


@pytest.mark.parametrize(("daemon", "key", "fragment"), [
    ({"identity": ""}, "daemon.identity", "1 to 200 characters"),
    ({"identity": "poller a"}, "daemon.identity", "without spaces"),
    ({"identity": 7}, "daemon.identity", "string"),
    ({"lease_seconds": 0}, "daemon.lease_seconds", "greater than 0"),
    ({"lease_seconds": "60"}, "daemon.lease_seconds", "must be a number"),
    ({"heartbeat_seconds": -1}, "daemon.heartbeat_seconds", "greater than 0"),
    ({"lease_seconds": 10, "heartbeat_seconds": 6}, "daemon.heartbeat_seconds",
     "at most half of daemon.lease_seconds (10 s)"),
    ({"heartbeat_seconds": 31}, "daemon.heartbeat_seconds",
     "at most half of the default daemon.lease_seconds (60 s)"),
    ({"lease_secs": 10}, "daemon.lease_secs", "did you mean 'lease_seconds'"),
])
def test_daemon_errors_name_the_key(daemon: dict[str, Any], key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"daemon": daemon}, environ={}, source="config.toml")
    assert caught.value.key == key
    assert str(caught.value).startswith(f"config.toml: {key}: ")
    assert fragment in str(caught.value)


# --- registration and heartbeats -------------------------------------------------------------


def test_register_refuses_an_identity_a_live_daemon_holds(engine: Engine) -> None:
    """A second registration while the first daemon's heartbeat is fresh is refused, naming
    the key, the host and pid of the holder; a stopped or lost holder is replaced."""
    first = register(engine, "poller-a", host="h1", pid=11, now=T0, lease_seconds=30)
    assert (first.replaced, first.released, first.live) == (None, 0, 1)
    with pytest.raises(IdentityInUse) as caught:
        register(engine, "poller-a", host="h2", pid=22, now=at(29), lease_seconds=30)
    assert isinstance(caught.value, ConfigError)
    assert caught.value.key == "daemon.identity"
    message = str(caught.value)
    assert "'poller-a' is in use by a running poller (host h1, pid 11" in message
    assert "last heartbeat 29 s ago" in message
    [row] = daemons(engine)
    assert (row["host"], row["pid"]) == ("h1", 11), "the refused one changed nothing"
    # Another identity is fine meanwhile.
    assert register(engine, "poller-b", host="h2", pid=22, now=at(29), lease_seconds=30
                    ).live == 2

    mark_stopped(engine, "poller-a", now=at(40), polls_total=5, polls_last_minute=1)
    again = register(engine, "poller-a", host="h3", pid=33, now=at(41), lease_seconds=30)
    assert again.replaced == "stopped"
    row = next(r for r in daemons(engine) if r["identity"] == "poller-a")
    assert (row["host"], row["pid"], row["started_at"], row["stopped_at"],
            row["polls_total"]) == ("h3", 33, at(41), None, 0)


def test_a_process_registering_again_is_not_refused_by_its_own_row(engine: Engine) -> None:
    """A registration whose commit the process never heard of (the connection dropped after
    it, or the attempt was cancelled) leaves a live row of this very process: registering
    again takes it back instead of refusing this process as "another running poller"."""
    register(engine, "poller-a", host="h1", pid=11, now=T0, lease_seconds=30)
    again = register(engine, "poller-a", host="h1", pid=11, now=at(5), lease_seconds=30)
    assert again.replaced == "live"
    with pytest.raises(IdentityInUse):
        register(engine, "poller-a", host="h1", pid=12, now=at(6), lease_seconds=30)


def test_a_lost_identity_is_taken_over_with_its_leases_released(engine: Engine) -> None:
    """A daemon killed without a stop: after its lease its identity is free again, and the
    leases it left are dropped so its targets are due at once."""
    sync_targets(engine, [telnyx_target(f"c{i}") for i in range(4)], T0)
    register(engine, "poller-a", host="h1", pid=11, now=T0, lease_seconds=30)
    assert len(claim_due(engine, T0, 3, "poller-a", 30)) == 3
    with pytest.raises(IdentityInUse):
        register(engine, "poller-a", host="h1", pid=12, now=at(30), lease_seconds=30)
    again = register(engine, "poller-a", host="h1", pid=12, now=at(31), lease_seconds=30)
    assert (again.replaced, again.released) == ("lost", 3)
    assert all(t["lease_owner"] is None for t in fetch(engine, "poll_target"))


def test_register_forgets_daemons_gone_for_a_week(engine: Engine) -> None:
    register(engine, "old-stopped", host="h", pid=1, now=T0, lease_seconds=30)
    mark_stopped(engine, "old-stopped", now=at(10), polls_total=0, polls_last_minute=0)
    register(engine, "old-lost", host="h", pid=2, now=T0, lease_seconds=30)
    register(engine, "recent", host="h", pid=3, now=at(86_400), lease_seconds=30)
    register(engine, "new", host="h", pid=4, now=at(7 * 86_400 + 60), lease_seconds=30)
    assert sorted(r["identity"] for r in daemons(engine)) == ["new", "recent"]


def test_concurrent_registrations_of_one_identity_admit_one(engine: Engine) -> None:
    """Eight threads register one identity at once: exactly one wins."""
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def attempt(pid: int) -> None:
        barrier.wait()
        try:
            register(engine, "same", host="h", pid=pid, now=T0, lease_seconds=30)
        except IdentityInUse:
            outcomes.append("refused")
        else:
            outcomes.append("registered")

    threads = [threading.Thread(target=attempt, args=(pid,)) for pid in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["refused"] * 7 + ["registered"]


def test_heartbeat_renews_only_its_own_leases(engine: Engine) -> None:
    sync_targets(engine, [telnyx_target(f"c{i}") for i in range(5)], T0)
    register(engine, "a", host="h", pid=1, now=T0, lease_seconds=10)
    register(engine, "b", host="h", pid=2, now=T0, lease_seconds=10)
    claim_due(engine, T0, 2, "a", 10)
    claim_due(engine, T0, 2, "b", 10)
    beat = heartbeat(engine, "a", now=at(8), lease_seconds=10, polls_total=7,
                     polls_last_minute=3)
    assert (beat.renewed, beat.live) == (2, 2)
    leases = {t["conference_id"]: (t["lease_owner"], t["lease_expires_at"])
              for t in fetch(engine, "poll_target")}
    assert sorted(v for v in leases.values() if v[0] == "a") == [("a", at(18))] * 2
    assert sorted(v for v in leases.values() if v[0] == "b") == [("b", at(10))] * 2
    row = next(r for r in daemons(engine) if r["identity"] == "a")
    assert (row["heartbeat_at"], row["polls_total"], row["polls_last_minute"]) == (at(8), 7, 3)
    assert heartbeat(engine, "a", now=at(11), lease_seconds=10, polls_total=8,
                     polls_last_minute=3).live == 1, "b's heartbeat is older than its lease"


def test_an_expired_lease_is_taken_over_and_flagged(engine: Engine) -> None:
    """Targets whose holder died are claimed by another after the lease, marked taken over;
    fresh claims are not."""
    sync_targets(engine, [telnyx_target(f"c{i}") for i in range(4)], T0)
    dead = claim_due(engine, T0, 2, "dead", 10)
    assert not any(t.taken_over for t in dead)
    assert [t.key.conference_id for t in claim_due(engine, at(5), 4, "alive", 10)] == [
        "c2", "c3"], "unexpired leases are skipped"
    with engine.begin() as conn:  # 'alive' recorded its two: free again, due later
        conn.execute(update(PollTarget).where(PollTarget.lease_owner == "alive").values(
            lease_owner=None, lease_expires_at=None, next_poll_at=at(100)))
    taken = claim_due(engine, at(11), 4, "alive", 10)
    assert [(t.key.conference_id, t.taken_over) for t in taken] == [("c0", True), ("c1", True)]


def test_fleet_status_shows_live_daemons_their_leases_and_overdue_targets(
        engine: Engine) -> None:
    sync_targets(engine, [telnyx_target(f"c{i}") for i in range(6)], T0)
    register(engine, "a", host="h1", pid=1, now=T0, lease_seconds=30)
    register(engine, "b", host="h2", pid=2, now=T0, lease_seconds=30)
    register(engine, "gone", host="h3", pid=3, now=T0, lease_seconds=30)
    mark_stopped(engine, "gone", now=at(1), polls_total=4, polls_last_minute=4)
    claim_due(engine, at(2), 2, "a", 30)
    heartbeat(engine, "a", now=at(10), lease_seconds=30, polls_total=9, polls_last_minute=6)
    with engine.begin() as conn:
        conn.execute(update(PollTarget).where(PollTarget.conference_id.in_(["c4", "c5"]))
                     .values(next_poll_at=at(100)))
    status = fleet_status(engine, at(20), overdue_after_seconds=10)
    assert [(d.identity, d.state, d.targets_held, d.polls_last_minute, d.polls_total)
            for d in status.daemons] == [("a", "live", 2, 6, 9), ("b", "live", 0, 0, 0)]
    assert status.daemons[0].heartbeat_age_seconds == 10
    assert (status.active_targets, status.overdue) == (6, 4)
    assert [t.conference_id for t in status.overdue_targets] == ["c0", "c1", "c2", "c3"]
    assert status.overdue_targets[0].late_seconds == 20
    assert status.overdue_targets[0].lease_owner == "a"
    # b's heartbeat is now older than its lease: lost, and only shown with include_gone.
    later = fleet_status(engine, at(35), overdue_after_seconds=10, include_gone=True)
    assert [(d.identity, d.state) for d in later.daemons] == [
        ("a", "live"), ("b", "lost"), ("gone", "stopped")]
    assert [d.identity for d in fleet_status(engine, at(35), overdue_after_seconds=10).daemons
            ] == ["a"]


# --- the tick gap ------------------------------------------------------------------------------


def test_tick_gaps_are_spread_between_half_and_one_and_a_half_periods() -> None:
    trigger = JitteredInterval(2.0, random.Random(5))
    gaps = []
    for _ in range(2000):
        fire = trigger.get_next_fire_time(T0, T0)
        gaps.append((fire - T0) / timedelta(seconds=1))
    assert 1.0 <= min(gaps) < 1.05
    assert 2.95 < max(gaps) <= 3.0
    assert 1.95 < sum(gaps) / len(gaps) < 2.05
    assert len({round(g, 6) for g in gaps}) > 1900, "independent draws"


# --- the daemon's heartbeat, in-process ----------------------------------------------------------


@pytest.mark.anyio
async def test_daemon_heartbeat_renews_leases_of_stalled_polls_and_stop_marks_it(
        engine: Engine) -> None:
    """While its polls hang the daemon's heartbeat keeps moving their leases (on the clock it
    is given); the stop releases them and marks the daemon stopped."""
    world = build_sim_world(conferences=2, polling={"shutdown_grace_seconds": 600})
    config = world.config.model_copy(update={"daemon": DaemonSettings(
        identity="stalled", lease_seconds=10, heartbeat_seconds=0.05)})
    stalling = StallingTransport()
    daemon = make_daemon(world, engine, config=config, transport=stalling)
    task = asyncio.ensure_future(daemon.run())
    await asyncio.wait_for(stalling.requested.wait(), WAIT_SECONDS)
    first = {t["lease_expires_at"] for t in fetch(engine, "poll_target")
             if t["lease_owner"] == "stalled"}
    assert first, "the polls in flight hold leases"
    world.clock.advance(100)
    renewed_to = world.clock.now() + timedelta(seconds=10)

    def renewed() -> bool:
        leases = [t for t in fetch(engine, "poll_target") if t["lease_owner"] == "stalled"]
        return bool(leases) and all(t["lease_expires_at"] == renewed_to for t in leases)

    def counted() -> bool:  # the metric moves just after the renewal is committed
        value = daemon.metrics.registry.get_sample_value(
            "poller_leases_total", {"event": "renewed"})
        return value is not None and value >= len(first)

    await wait_until("the heartbeat to renew the leases", renewed)
    await wait_until("the renewals to be counted in poller_leases_total", counted)
    [row] = daemons(engine)
    assert (row["identity"], row["stopped_at"], row["lease_seconds"]) == ("stalled", None, 10)
    daemon.request_stop("test")
    daemon.request_stop("test")
    await asyncio.wait_for(task, WAIT_SECONDS)
    [row] = daemons(engine)
    assert row["stopped_at"] == world.clock.now()
    assert all(t["lease_owner"] is None for t in fetch(engine, "poll_target"))


@pytest.mark.anyio
async def test_daemon_claims_smaller_batches_while_others_are_live(
        engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    """Alone a daemon claims 4 × concurrency at a time; with another live daemon registered,
    concurrency; once the other's heartbeat is older than its lease, 4 × again (logged
    without a "1 daemons live")."""
    caplog.set_level(logging.INFO, logger="poller.daemon")
    world = build_sim_world(conferences=2, polling={"shutdown_grace_seconds": 600,
                                                    "concurrency": 8})
    config = world.config.model_copy(update={"daemon": DaemonSettings(
        identity="me", lease_seconds=10, heartbeat_seconds=0.05)})
    register(engine, "other", host="h", pid=1, now=world.clock.now(), lease_seconds=10)
    stalling = StallingTransport()
    daemon = make_daemon(world, engine, config=config, transport=stalling)
    assert daemon.poller.batch_size == 32
    task = asyncio.ensure_future(daemon.run())
    await asyncio.wait_for(stalling.requested.wait(), WAIT_SECONDS)
    assert daemon.poller.batch_size == 8
    world.clock.advance(11)
    await wait_until("the other daemon to count as lost", lambda: daemon.poller.batch_size == 32)
    daemon.request_stop("test")
    daemon.request_stop("test")
    await asyncio.wait_for(task, WAIT_SECONDS)
    assert "2 daemons live: claiming up to 8 targets at a time" in caplog.text
    assert "no other daemon live: claiming up to 32 targets at a time" in caplog.text
    assert "1 daemons" not in caplog.text


def test_a_heartbeat_after_the_identity_was_taken_over_writes_nothing(engine: Engine) -> None:
    sync_targets(engine, [telnyx_target("c0")], T0)
    register(engine, "a", host="h1", pid=1, now=T0, lease_seconds=10)
    register(engine, "a", host="h2", pid=2, now=at(11), lease_seconds=10)
    claim_due(engine, at(11), 1, "a", 10)
    beat = heartbeat(engine, "a", now=at(12), lease_seconds=10, polls_total=50,
                     polls_last_minute=5, host="h1", pid=1)
    assert (beat.owned, beat.renewed, beat.live) == (False, 0, 1)
    [row] = daemons(engine)
    assert (row["pid"], row["heartbeat_at"], row["polls_total"]) == (2, at(11), 0)
    [target] = fetch(engine, "poll_target")
    assert target["lease_expires_at"] == at(21), "the new holder's lease is left alone"
    assert heartbeat(engine, "a", now=at(12), lease_seconds=10, polls_total=1,
                     polls_last_minute=1, host="h2", pid=2).owned


@pytest.mark.anyio
async def test_daemon_stops_when_its_identity_is_taken_over(engine: Engine) -> None:
    """A daemon whose identity another process registered (it missed heartbeats for longer
    than its lease) stops by itself, leaving the row and the leases to the new holder, and
    ``run`` raises ``IdentityLost`` (exit 1) rather than returning as after a graceful stop."""
    world = build_sim_world(conferences=2, polling={"shutdown_grace_seconds": 600})
    config = world.config.model_copy(update={"daemon": DaemonSettings(
        identity="twin", lease_seconds=10, heartbeat_seconds=0.05)})
    stalling = StallingTransport()
    daemon = make_daemon(world, engine, config=config, transport=stalling)
    task = asyncio.ensure_future(daemon.run())
    await asyncio.wait_for(stalling.requested.wait(), WAIT_SECONDS)
    later = world.clock.now() + timedelta(seconds=100)
    await asyncio.to_thread(register, engine, "twin", host="elsewhere", pid=99, now=later,
                            lease_seconds=10)
    with pytest.raises(IdentityLost, match="'twin' was taken over"):  # the CLI exits 1
        await asyncio.wait_for(task, WAIT_SECONDS)
    [row] = daemons(engine)
    assert (row["host"], row["pid"], row["stopped_at"]) == ("elsewhere", 99, None)
