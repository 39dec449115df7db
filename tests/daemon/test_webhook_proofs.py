"""Proofs for provider events: ``poller run`` polling the simulator and taking its events at
once, compared with the ground truth, member stay by member stay.

Unlike the lockstep proofs, the simulated world runs on real time (``WallClock``): an event's
provider time and a poll's ``observed_at`` are on one clock, as with real providers, so the
poll brackets the events are matched against mean what they say. The scenario is short (a few
conferences over half a minute) with stays down to 0.4 s, while poller polls every
``INTERVAL`` (1.5 s): some stays begin and end between two polls, and only their events can
record them. The simulator pushes every event of the truth (:class:`EventDelivery`), with
faults where a test says so.

Per stay of the truth (a member's join to its leave) the figures count: recorded (a
``member_session`` row of that member), exact (both ends equal the truth's to the
millisecond), duplicates (more rows than stays) and fabricated (members the truth does not
have). Telnyx's REST answer already has exact join and leave times (``created_at``, and
``updated_at`` at the leave); Bandwidth's has none, so there the exact times are the events'.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from lockstep import (
    BANDWIDTH,
    TELNYX,
    WEBHOOK_ENVIRON,
    PollerRun,
    ServedSimulator,
    reader,
    wait_for,
    write_config,
)
from sqlalchemy import Engine, text

from poller.model import Provider
from poller.simulator import ScenarioConfig, WallClock
from poller.simulator.delivery import DeliveryFaults, EventDelivery
from poller.simulator.timeline import ConferenceTimeline

INTERVAL = 1.5
"""Real seconds between two polls of a conference."""
SCENARIO = ScenarioConfig(
    telnyx_conferences=2, bandwidth_conferences=4, created_from_seconds=1.0,
    created_until_seconds=6.0, typical_duration_seconds=12.0, telnyx_max_duration_seconds=18.0,
    bandwidth_max_duration_seconds=18.0, retention_seconds=60.0,
    activity_interval_seconds=1000.0, members_min=3, members_max=7, crowded_probability=0.0,
    min_stay_seconds=0.2, joining_seconds=0.3)
SEED = 3
"""32 stays over 22 s, ten of them Bandwidth stays under 0.8 s."""
LONG = 3 * INTERVAL
"""A stay this long is seen by polling alone (three polls: one late poll on a busy machine
must not make the proof flaky; the lockstep proofs show two intervals on a stepped clock)."""
POLLING = {"interval_seconds": INTERVAL, "idle_interval_seconds": INTERVAL,
           "completion_grace_seconds": 3.0}


@dataclass
class Stays:
    """The figures of one proof."""

    label: str
    truth: int = 0
    short: int = 0
    """Stays shorter than one polling interval."""
    recorded: int = 0
    short_recorded: int = 0
    bandwidth_short: int = 0
    """Bandwidth stays shorter than one interval: its REST answer lists present members only."""
    bandwidth_short_recorded: int = 0
    telnyx: int = 0
    telnyx_exact: int = 0
    exact: int = 0
    bracketed: int = 0
    """Recorded with a time no event gave: polling's, never earlier than the truth."""
    long: int = 0
    """Stays of at least ``LONG`` (polling alone must record them)."""
    long_recorded: int = 0
    duplicates: int = 0
    fabricated: int = 0
    problems: list[str] = field(default_factory=list)
    delivery: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    """Stored events by outcome."""

    def line(self) -> str:
        return (f"{self.label}: member stays in truth {self.truth} ({self.short} shorter than "
                f"one {INTERVAL:g} s interval), recorded {self.recorded} "
                f"({self.short_recorded} of the short, Bandwidth's {self.bandwidth_short_recorded}"
                f" of {self.bandwidth_short}, {self.long_recorded} of {self.long} "
                f"lasting {LONG:g} s or more), exact {self.exact}, bracketed {self.bracketed}, "
                f"duplicates "
                f"{self.duplicates}, fabricated {self.fabricated}; deliveries "
                + ", ".join(f"{k} {v}" for k, v in sorted(self.delivery.items()))
                + "; events " + (", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))
                                 or "none"))


def _delivering(delivery: EventDelivery) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()

    async def main() -> None:
        task = asyncio.ensure_future(delivery.run(every=0.05))
        await asyncio.to_thread(stop.wait)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    thread = threading.Thread(target=lambda: asyncio.run(main()), name="delivery", daemon=True)
    thread.start()
    return thread, stop


@contextmanager
def proof_world(tmp_path: Path, faults: DeliveryFaults, *, detail_records: bool = False,
                scenario: ScenarioConfig = SCENARIO
                ) -> Iterator[tuple[ServedSimulator, EventDelivery, Engine]]:
    """The simulator on real time, ``poller run`` on it with its receiver, the events pushed;
    yields once every conference has ended, been polled to its end and its events applied
    (``detail_records``: and every Telnyx conference's detail records too)."""
    database = f"sqlite:///{tmp_path / 'proof.db'}"
    with ServedSimulator(seed=SEED, scenario=scenario, clock=WallClock()) as served, \
            tempfile.TemporaryFile() as log:
        config = tmp_path / "config.toml"
        write_config(config, database, served, webhooks=True, detail_records=detail_records,
                     **POLLING)
        daemon = PollerRun(config, {**served.environ(), **WEBHOOK_ENVIRON}, log)
        engine = reader(database)
        thread: threading.Thread | None = None
        stop: threading.Event | None = None
        try:
            def logged() -> str:
                log.seek(0)
                return log.read().decode(errors="replace")

            found: list[str] = []

            def listening() -> bool:
                assert daemon.alive(), logged()
                match = re.search(r"on (http://[^ ]+) \(webhooks\.listen\)", logged())
                found.extend([match.group(1)] if match else [])
                return bool(found)

            wait_for("the receiver to listen", listening)
            delivery = EventDelivery(served.sim, f"{found[0]}/webhooks",
                                     {Provider.TELNYX: TELNYX, Provider.BANDWIDTH: BANDWIDTH},
                                     faults=faults)
            thread, stop = _delivering(delivery)
            last_end = max(t.ended_ms for t in _timelines(served)) / 1000
            remaining = last_end - served.sim.now_ms() / 1000
            wait_for("every conference to end", lambda: served.sim.now_ms() / 1000 > last_end,
                     seconds=remaining + 30)
            wait_for("every target to be polled to its end and retired",
                     lambda: _all_retired(engine), seconds=60)
            wait_for("the events to be delivered", lambda: delivery.idle, seconds=60)
            if detail_records:
                wait_for("every Telnyx conference's detail records",
                         lambda: _rows(engine, "SELECT COUNT(*) FROM conference WHERE provider "
                                               "= 'telnyx' AND detail_records_at IS NULL")
                         == [(0,)], seconds=90)
            _wait_settled(engine)
            assert daemon.terminate() == 0, logged()
            assert "Traceback" not in logged(), logged()
            yield served, delivery, engine
        finally:
            if stop is not None and thread is not None:
                stop.set()
                thread.join(timeout=10)
            daemon.ensure_stopped()
            engine.dispose()


def _timelines(served: ServedSimulator) -> list[ConferenceTimeline]:
    found = []
    for provider in Provider:
        for cid in served.sim.conference_ids(provider):
            timeline = served.sim.timeline(provider, cid)
            assert timeline is not None
            found.append(timeline)
    return found


def _rows(engine: Engine, sql: str) -> list[Any]:
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql)))
    except Exception:  # not created yet
        return []


def _all_retired(engine: Engine) -> bool:
    rows = _rows(engine, "SELECT state FROM poll_target")
    return bool(rows) and all(state == "retired" for (state,) in rows)


def _wait_settled(engine: Engine) -> None:
    """Until reconciliation has nothing more to do: the pending events stop changing for a
    few seconds (one end of a stay whose other end was dropped waits longer: it stays)."""
    seen: list[tuple[float, Any]] = []

    def settled() -> bool:
        state = _rows(engine, "SELECT outcome, COUNT(*) FROM webhook_event GROUP BY outcome")
        now = time.monotonic()
        if not seen or seen[-1][1] != state:
            seen.append((now, state))
        return now - seen[-1][0] >= 3.0

    wait_for("reconciliation to settle", settled, seconds=60)


def _when(value: Any) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=None)


def measure(label: str, served: ServedSimulator, delivery: EventDelivery, engine: Engine
            ) -> Stays:
    """Compare the recorded member stays with the truth (see the module docstring)."""
    sim, figures = served.sim, Stays(label, delivery=dict(delivery.stats))
    figures.outcomes = dict(_rows(engine, "SELECT outcome, COUNT(*) FROM webhook_event "
                                          "GROUP BY outcome"))
    recorded: dict[tuple[str, str], list[Any]] = {}
    for row in _rows(engine, "SELECT conference_id, member_id, stay, joined_at, left_at "
                             "FROM member_session ORDER BY conference_id, member_id, stay"):
        recorded.setdefault((row[0], row[1]), []).append(row)
    known: set[tuple[str, str]] = set()
    for timeline in _timelines(served):
        telnyx = timeline.provider is Provider.TELNYX
        for member in timeline.members:
            short = member.left_ms - member.joined_ms < INTERVAL * 1000
            long = member.left_ms - member.connected_ms >= LONG * 1000
            figures.truth += 1
            figures.telnyx += telnyx
            figures.short += short
            figures.bandwidth_short += short and not telnyx
            figures.long += long
            keys = [(timeline.conference_id, member.member_id),
                    (timeline.conference_id, member.call_id)]
            known.update(keys)
            rows = [row for key in dict.fromkeys(keys) for row in recorded.get(key, [])]
            if not rows:
                figures.problems.append(f"missing: {timeline.conference_id} {member.member_id}")
                continue
            figures.recorded += 1
            figures.short_recorded += short
            figures.bandwidth_short_recorded += short and not telnyx
            figures.long_recorded += long
            figures.duplicates += len(rows) - 1
            joined, left = _when(rows[0][3]), rows[0][4] and _when(rows[0][4])
            by_poll = rows[0][1] == member.member_id
            join_ms = member.joined_ms if telnyx and by_poll else member.connected_ms
            # The truth as the providers render it: to the millisecond.
            truth_join, truth_left = _when(sim.iso(join_ms)), _when(sim.iso(member.left_ms))
            if joined == truth_join and left == truth_left:
                figures.exact += 1
                figures.telnyx_exact += telnyx
            elif exact_where_told(delivery, timeline, member.call_id, (joined, truth_join),
                                  (left, truth_left)):
                figures.bracketed += 1
            else:
                figures.problems.append(
                    f"inexact: {timeline.conference_id} {member.member_id}: recorded "
                    f"{joined}..{left}, truth {sim.iso(join_ms)}..{sim.iso(member.left_ms)}")
    figures.fabricated = sum(1 for key in recorded if key not in known)
    return figures


def exact_where_told(delivery: EventDelivery, timeline: ConferenceTimeline, call: str,
                     join: tuple[datetime, datetime], leave: tuple[datetime | None, datetime]
                     ) -> bool:
    """Whether an inexact stay is honest: each end an event told of (delivered) is exact, and
    each other end is polling's time, never before the truth's."""
    told = {event.kind.value for event in delivery.delivered
            if event.conference_id == timeline.conference_id and event.call_id == call}
    for kind, (recorded, truth) in (("member_joined", join), ("member_left", leave)):
        if recorded is None:
            return False
        if recorded != truth and ((kind in told and timeline.provider is Provider.BANDWIDTH)
                                  or recorded < truth):
            return False
    return True


def report(figures: Stays, record_property: Callable[[str, object], None]) -> None:
    print(figures.line())
    record_property("proof", figures.line())


def test_every_stay_is_recorded_exactly_when_every_event_arrives(
        tmp_path: Path, record_property: Callable[[str, object], None]) -> None:
    """All events delivered: 100 % of member stays recorded, the short ones included, with
    join and leave times equal to the truth's; nothing twice, nothing invented; forged copies
    refused."""
    faults = DeliveryFaults(forged=0.2, seed=3)
    with proof_world(tmp_path, faults) as (served, delivery, engine):
        figures = measure("events all delivered, run, SQLite", served, delivery, engine)
        stored = _rows(engine, "SELECT outcome, COUNT(*) FROM webhook_event GROUP BY outcome")
    report(figures, record_property)
    assert figures.bandwidth_short > 0, "the scenario has stays shorter than one interval"
    assert figures.problems == []
    assert (figures.recorded, figures.exact) == (figures.truth, figures.truth)
    assert (figures.duplicates, figures.fabricated) == (0, 0)
    assert figures.delivery.get("forged_accepted", 0) == 0
    assert figures.delivery.get("forged_refused", 0) > 0
    assert dict(stored).get("conflict", 0) == 0, stored


def test_lost_duplicated_and_late_events_invent_nothing(
        tmp_path: Path, record_property: Callable[[str, object], None]) -> None:
    """30 % of events dropped, 10 % delivered twice, half of them late by up to 3 s (so out of
    order), 10 % with a forged copy: nothing twice, nothing invented, every stay of three
    intervals or more (``LONG``) recorded, each end exact where its event arrived and polling's time
    (never earlier than the truth) where it did not."""
    faults = DeliveryFaults(drop=0.3, duplicate=0.1, delay=0.5, max_delay_seconds=3.0,
                            forged=0.1, seed=5)
    with proof_world(tmp_path, faults) as (served, delivery, engine):
        figures = measure("30 % of events dropped, 10 % twice, late and reordered, run, SQLite",
                          served, delivery, engine)
    report(figures, record_property)
    assert figures.delivery["dropped"] > 0
    assert figures.delivery["duplicated"] > 0
    assert figures.delivery["delayed"] > 0
    assert [p for p in figures.problems if not p.startswith("missing")] == []
    assert figures.long_recorded == figures.long
    assert figures.recorded == figures.exact + figures.bracketed
    assert (figures.duplicates, figures.fabricated) == (0, 0)
    assert figures.delivery.get("forged_accepted", 0) == 0


@pytest.mark.slow
def test_polling_alone_for_comparison(tmp_path: Path,
                                      record_property: Callable[[str, object], None]) -> None:
    """No event delivered: the history is polling's. Stays shorter than an interval are lost
    (Bandwidth lists present members only), Bandwidth times are bracketed: the baseline the
    events improve on."""
    with proof_world(tmp_path, DeliveryFaults(drop=1.0)) as (served, delivery, engine):
        figures = measure("no events (polling alone), run, SQLite", served, delivery, engine)
    report(figures, record_property)
    assert figures.long_recorded == figures.long
    assert (figures.duplicates, figures.fabricated) == (0, 0)
    assert figures.recorded == figures.exact + figures.bracketed


def test_telnyx_detail_records_without_events(
        tmp_path: Path, record_property: Callable[[str, object], None]) -> None:
    """No event delivered, ``detail_records = true``, and conferences that answer 404 0.1 s
    after their end, so polling misses the end of most (their members left open): once each
    Telnyx conference completed or was retired as gone, its records are fetched
    and every Telnyx participant is recorded with exact times (Bandwidth, with neither events
    nor records, keeps polling's)."""
    fleeting = replace(SCENARIO, retention_seconds=0.1, detail_records_delay_seconds=2.0)
    with proof_world(tmp_path, DeliveryFaults(drop=1.0), detail_records=True,
                     scenario=fleeting) as (served, delivery, engine):
        figures = measure("Telnyx detail records, no events, run, SQLite", served, delivery,
                          engine)
        sources = _rows(engine, "SELECT c.provider, s.joined_at_source, s.left_at_source, "
                                "COUNT(*) FROM member_session s JOIN conference c "
                                "ON c.id = s.conference_pk GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")
        unseen_ends = _rows(engine, "SELECT COUNT(*) FROM conference WHERE provider = 'telnyx' "
                                    "AND status <> 'completed'")[0][0]
    filled = sum(row[3] for row in sources if row[0] == "telnyx" and "detail_record" in row[1:3])
    figures.label += (f" (Telnyx participants {figures.telnyx}, exact "
                      f"{figures.telnyx_exact}, {filled} with an end from a detail record)")
    report(figures, record_property)
    telnyx = [p for p in figures.problems if " conf-" not in p]  # Bandwidth's IDs: conf-…
    assert telnyx == [], "every Telnyx participant is recorded, exactly"
    assert figures.telnyx_exact == figures.telnyx
    assert (figures.duplicates, figures.fabricated) == (0, 0)
    # A conference gone before a poll saw it completed left its members open: the records
    # closed them (with 0.1 s between end and 404, polling nearly always misses some end).
    assert (filled > 0) == (unseen_ends > 0), (unseen_ends, sources)
