"""Several ``poller run`` processes on one real PostgreSQL database (DESIGN §8,
``docs/scaling.md``): identities, the split of the work, takeover after SIGKILL, exactly-once
history and rolling restarts. Each daemon is a real subprocess of the real CLI; the providers
are ``poller simulate`` over TCP."""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fleet import STARTUP_SECONDS as STARTUP
from fleet import FleetDaemon, Watch, wait_for, write_fleet_config
from test_cli_subprocess import poller
from test_history_vs_truth import compare
from test_run import serving_simulator

from poller.store.database import make_engine

pytestmark = pytest.mark.postgres


def test_a_live_identity_is_refused_with_exit_2(postgres_url: str, tmp_path: Path) -> None:
    """A second ``poller run`` under the identity of a running one exits 2 and says why; once
    the first has stopped, the identity is free again."""
    config = write_fleet_config(tmp_path / "a.toml", postgres_url, [], identity="poller-a",
                                interval=5, lease=10, heartbeat=1)
    watch = Watch(postgres_url)
    first = FleetDaemon("poller-a", config, {})
    try:
        wait_for("the first daemon to register", lambda: watch.live_daemons() == ["poller-a"])
        second = FleetDaemon("poller-a", config, {})
        try:
            assert second.process.wait(timeout=60) == 2, second.stderr()
            message = second.stderr()
        finally:
            second.close()
        assert "configuration error: daemon.identity: 'poller-a' is in use by a running " \
               "poller" in message
        assert f"pid {first.process.pid}" in message
        assert first.alive(), first.stderr()
        assert first.terminate() == 0, first.stderr()
        [(stopped,)] = watch.rows("select stopped_at from poller_daemon")
        assert stopped is not None
        again = FleetDaemon("poller-a", config, {})
        try:
            wait_for("the identity to be taken again",
                     lambda: watch.live_daemons() == ["poller-a"])
            assert again.terminate() == 0, again.stderr()
        finally:
            again.close()
    finally:
        first.close()
        watch.close()


# --- three daemons over the simulator -----------------------------------------------------------

IDENTITIES = ("fleet-a", "fleet-b", "fleet-c")


@dataclass(frozen=True)
class Scale:
    """One fleet run's size: conferences per provider (×2 targets) and timings (seconds)."""

    conferences: int
    interval: float
    lease: float
    heartbeat: float
    min_share: float
    """Each daemon's least share of the polls (a third would be perfectly even)."""


DEFAULT_SCALE = Scale(conferences=200, interval=6, lease=4, heartbeat=1, min_share=0.12)
"""400 targets every 6 s: about a minute of the default suite."""
SLOW_SCALE = Scale(conferences=1500, interval=60, lease=5, heartbeat=1,
                   min_share=0.25)
"""3,000 targets every 60 s (``./dev test -m slow``)."""


def duplicates(watch: Watch) -> dict[str, int]:
    """Rows that would only exist if one observation had been recorded twice."""
    return {
        "repeated transitions": watch.scalar(
            "select count(*) from status_transition where from_status = to_status"),
        "repeated snapshots": watch.scalar(
            "select count(*) from conference_snapshot a join conference_snapshot b "
            "on b.conference_pk = a.conference_pk and b.valid_from = a.valid_to "
            "and b.content_hash = a.content_hash"),
        "repeated member events": watch.scalar(
            "select count(*) from member_event a join member_event b "
            "on b.member_pk = a.member_pk and b.seq = a.seq + 1 and b.kind = a.kind "
            "where a.kind in ('joined', 'left', 'muted', 'unmuted', 'held', 'unheld')"),
        "sequence gaps": watch.scalar(
            "select (select count(*) from status_transition t where t.seq > 1 and not exists "
            "(select 1 from status_transition p where p.conference_pk = t.conference_pk "
            "and p.seq = t.seq - 1)) + (select count(*) from member_event e where e.seq > 1 "
            "and not exists (select 1 from member_event p where p.member_pk = e.member_pk "
            "and p.seq = e.seq - 1))"),
    }


class OverdueSampler(threading.Thread):
    """Samples the most overdue active target every 0.2 s until stopped; keeps the maximum."""

    def __init__(self, watch: Watch) -> None:
        super().__init__(daemon=True)
        self.watch = watch
        self.worst = 0.0
        self.samples = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.worst = max(self.worst, self.watch.max_overdue_seconds())
            self.samples += 1
            self._stop_event.wait(0.2)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=30)


def run_fleet(scale: Scale, database_url: str, tmp_path: Path) -> dict[str, Any]:
    """Three daemons over ``2 × scale.conferences`` simulated conferences: the split, a SIGKILL
    and its takeover, a rolling restart, then the history against ground truth."""
    figures: dict[str, Any] = {"targets": 2 * scale.conferences}
    with serving_simulator("--lively", "--speed", "1", "--seed", "3", "--conferences",
                           str(scale.conferences)) as sim:
        accounts = [{**a, "requests_per_second": 1000} for a in sim.accounts]
        configs = {who: write_fleet_config(
            tmp_path / f"{who}.toml", database_url, accounts, identity=who,
            interval=scale.interval, lease=scale.lease, heartbeat=scale.heartbeat)
            for who in IDENTITIES}
        watch = Watch(database_url)
        daemons = {who: FleetDaemon(who, configs[who], sim.env) for who in IDENTITIES}
        sim_http = httpx.Client(base_url=sim.url, timeout=60)

        def sim_now() -> datetime:
            return datetime.fromisoformat(sim_http.get("/_sim/clock").json()["now"])

        def totals() -> dict[str, int]:
            return dict(watch.rows("select identity, polls_total from poller_daemon"))

        def check_alive() -> None:
            for daemon in daemons.values():
                assert daemon.alive(), f"{daemon.identity} died:\n{daemon.stderr()}"

        try:
            # 1. All three up, every target polled once.
            def first_round_done() -> bool:
                check_alive()
                return (watch.live_daemons() == list(IDENTITIES) and watch.scalar(
                    "select count(*) from poll_target") == 2 * scale.conferences
                    and watch.scalar("select count(*) from poll_target where poll_count = 0 "
                                     "and state = 'active'") == 0)

            wait_for("three daemons and a first round", first_round_done,
                     seconds=STARTUP + 2 * scale.interval)
            window_start = sim_now()

            # 2. The split over five full rounds (over three, one in a few loaded runs fell
            # just under the share asked: 10.9 %).
            before = totals()
            active = watch.scalar("select count(*) from poll_target where state = 'active'")
            wait_for("five rounds of polls", lambda: check_alive() or sum(
                totals()[w] - before[w] for w in IDENTITIES) >= 5 * active,
                seconds=7 * scale.interval + 30)
            after = totals()
            split = {w: after[w] - before[w] for w in IDENTITIES}
            figures["split"] = split
            figures["split_percent"] = {w: round(100 * n / sum(split.values()))
                                        for w, n in split.items()}
            # Targets polled together fall due together, and a clump goes to whichever daemon
            # ticks first: over a few rounds the shares vary (see docs/scaling.md).
            for who, n in split.items():
                assert n >= scale.min_share * sum(split.values()), f"{who}: {split}"

            status = poller("--config", str(configs["fleet-b"]), "status", "--format", "json")
            assert status.returncode == 0, status.stderr
            shown = json.loads(status.stdout)
            assert [d["identity"] for d in shown["daemons"]] == list(IDENTITIES)
            assert all(d["state"] == "live" and d["polls_last_minute"] > 0
                       for d in shown["daemons"]), shown["daemons"]

            # 3. SIGKILL one while it holds leases: the others take them over in time.
            victim = daemons["fleet-a"]
            held = victim.kill_holding_leases(watch)
            killed = time.monotonic()
            figures["leases_held_at_kill"] = len(held)

            def taken_over() -> bool:
                counts = watch.poll_counts()
                return all(counts[pk] > n for pk, n in held.items())

            figures["takeover_seconds"] = round(wait_for(
                "the killed daemon's targets to be polled again", taken_over,
                seconds=scale.lease + scale.interval + 30), 1)
            figures["takeover_bound_seconds"] = scale.lease + scale.interval
            assert time.monotonic() - killed <= scale.lease + scale.interval, figures
            took = sum(int(n) for d in ("fleet-b", "fleet-c") for n in re.findall(
                r"took over (\d+) targets", daemons[d].stderr()))
            assert took >= len(held), daemons["fleet-b"].stderr()[-3000:]
            victim.close()
            wait_for("the killed daemon to count as lost",
                     lambda: "fleet-a" not in watch.live_daemons(), seconds=scale.lease + 10)
            daemons["fleet-a"] = FleetDaemon("fleet-a", configs["fleet-a"], sim.env)
            wait_for("fleet-a back", lambda: check_alive() or "fleet-a" in watch.live_daemons())

            # 4. Rolling restart: SIGTERM each in turn, start it again; no slot lost.
            sampler = OverdueSampler(watch)
            sampler.start()
            try:
                for who in IDENTITIES:
                    assert daemons[who].terminate() == 0, daemons[who].stderr()
                    daemons[who].close()
                    daemons[who] = FleetDaemon(who, configs[who], sim.env)
                    wait_for(f"{who} restarted and polling", lambda who=who: check_alive() or (
                        totals().get(who, 0) > 0 and who in watch.live_daemons()),
                        seconds=STARTUP + 2 * scale.interval)
            finally:
                sampler.stop()
            figures["rolling_restart_max_overdue_seconds"] = round(sampler.worst, 1)
            assert sampler.samples > 10
            assert sampler.worst <= scale.interval, figures
            window_end = sim_now() - timedelta(seconds=scale.interval)

            # 5. Graceful stop of all; history against ground truth.
            for daemon in daemons.values():
                assert daemon.terminate() == 0, daemon.stderr()
            truth = sim_http.get("/_sim/truth").json()
        finally:
            for daemon in daemons.values():
                daemon.close()
            sim_http.close()
        try:
            assert watch.scalar("select count(*) from poll_target where lease_owner is not "
                                "null") == 0
            assert watch.scalar("select count(*) from poller_daemon where stopped_at is "
                                "null") == 0
            figures["duplicates"] = duplicates(watch)
            assert sum(figures["duplicates"].values()) == 0, figures
            engine = make_engine(database_url)
            try:
                # A state lasting two intervals (and a takeover's extra lease) is never
                # missed; the simulator runs in real time.
                figures["compared"] = compare(
                    engine, truth, (window_start, window_end), complete=True,
                    expect_gone=False,
                    significant_seconds=max(30.0, 2 * scale.interval + scale.lease + 5))
            finally:
                engine.dispose()
        finally:
            watch.close()
    return figures


def test_three_daemons_split_take_over_and_restart(postgres_url: str, tmp_path: Path) -> None:
    """400 targets, three daemons: each polls about a third; a SIGKILLed one's targets are
    polled again within lease + interval; a rolling restart leaves no target overdue by more
    than an interval; the history is true to the simulator, with zero duplicates."""
    figures = run_fleet(DEFAULT_SCALE, postgres_url, tmp_path)
    print(f"\nfleet figures: {json.dumps(figures)}")
    assert figures["compared"]["member_events"] > 0


@pytest.mark.slow
def test_three_daemons_over_3000_targets(postgres_url: str, tmp_path: Path) -> None:
    """The same at 3,000 targets polled every 60 s (``./dev test -m slow``)."""
    figures = run_fleet(SLOW_SCALE, postgres_url, tmp_path)
    print(f"\nfleet figures: {json.dumps(figures)}")
    assert figures["compared"]["member_events"] > 0
