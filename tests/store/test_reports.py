"""The reporting views and every example query of ``docs/schema.md``, on known history.

One realistic history is recorded through the real ``Recorder`` (Telnyx and Bandwidth
conferences that complete, vanish, stay open and rejoin; mutes, holds, poll errors), then each
documented query is extracted from the docs, run on SQLite and PostgreSQL, and its rows are
compared with the answer worked out by hand below.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from factories import (
    T0,
    at,
    bandwidth_member,
    bandwidth_observation,
    bandwidth_target,
    failure,
    telnyx_member,
    telnyx_observation,
    telnyx_target,
)
from sqlalchemy import Engine, inspect, text

from poller.model import MemberState, Observation, PollResult
from poller.store import migrate
from poller.store.database import make_engine
from poller.store.recorder import Recorder
from poller.store.rows import ScheduleUpdate

DOCS = Path(__file__).resolve().parents[2] / "docs" / "schema.md"
DAY = 86_400
NOW = datetime.now(UTC).replace(microsecond=0)
"""Real time: only ``conf-recent`` lives near it (for the "last 24 hours" query)."""

STANDUP = telnyx_target("conf-standup")
SALES = telnyx_target("conf-sales")
VANISH = telnyx_target("conf-vanish")
MISSING = telnyx_target("conf-missing")
RECENT = telnyx_target("conf-recent")
OPEN = telnyx_target("conf-open", account="telnyx-eu")
BW_DAILY = bandwidth_target("conf-bw-1")
BW_REJOIN = bandwidth_target("conf-bw-2")


def recent(hours_ago: float) -> datetime:
    """A moment ``hours_ago`` before the real current time."""
    return NOW - timedelta(hours=hours_ago)


def history() -> list[list[PollResult]]:
    """The recorded history, as the batches a poller would have written."""
    def p1(**state: Any) -> MemberState:
        return telnyx_member("p1", created_at=-50, **state)

    def p2(**state: Any) -> MemberState:
        return telnyx_member("p2", created_at=-40, **state)

    def p3(**state: Any) -> MemberState:
        return telnyx_member("p3", created_at=85, **state)

    standup: list[PollResult] = [
        # p2 joins muted (no "muted" event: its "joined" event's detail says so).
        telnyx_observation(at=0, target=STANDUP, members=[
            p1(), p2(muted=True)]),
        telnyx_observation(at=30, target=STANDUP, members=[
            p1(muted=True, updated_at=28),
            p2(muted=True)]),
        telnyx_observation(at=60, target=STANDUP, members=[
            p1(updated_at=58),
            p2(muted=True, on_hold=True, updated_at=57)]),
        telnyx_observation(at=90, target=STANDUP, members=[
            p1(updated_at=58),
            p2(muted=True, updated_at=88),
            p3()]),
        telnyx_observation(at=120, target=STANDUP, members=[
            p1(updated_at=58),
            p2(status="left", muted=True, updated_at=115),
            p3()]),
        telnyx_observation(at=150, target=STANDUP, status="completed", updated_at=148,
                           end_reason="all_left", members=[
            p1(status="left", updated_at=146),
            p2(status="left", muted=True, updated_at=115),
            p3(status="left", updated_at=147)]),
        # It expired afterwards: gone, but not vanished.
        failure(at=400, target=STANDUP),
    ]
    def q1(**state: Any) -> MemberState:
        return telnyx_member("q1", created_at=DAY - 5, **state)

    sales: list[PollResult] = [
        telnyx_observation(at=DAY, target=SALES, created_at=DAY - 10,
                           members=[q1()]),
        failure(at=DAY + 100, target=SALES, kind="server_error", http_status=503,
                message="service unavailable"),
        telnyx_observation(at=DAY + 300, target=SALES, created_at=DAY - 10,
                           members=[q1(on_hold=True)]),
        # No updated_at: completed_at is the observation; q1 is closed by the completion.
        telnyx_observation(at=DAY + 600, target=SALES, created_at=DAY - 10, status="completed",
                           end_reason="ended_via_api",
                           members=[q1(on_hold=True)]),
    ]
    vanish: list[PollResult] = [
        telnyx_observation(at=200, target=VANISH,
                           members=[telnyx_member("v1", created_at=190)]),
        failure(at=230, target=VANISH),
        failure(at=260, target=VANISH),
    ]
    def o1(**state: Any) -> MemberState:
        return telnyx_member("o1", created_at=295, **state)

    still_open: list[PollResult] = [
        telnyx_observation(at=300, target=OPEN, members=[o1(muted=True)]),
        telnyx_observation(at=330, target=OPEN,
                           members=[o1(updated_at=325)]),
        telnyx_observation(at=360, target=OPEN,
                           members=[o1(muted=True, updated_at=355)]),
        failure(at=390, target=OPEN, kind="rate_limited", http_status=429,
                message="too many requests"),
        telnyx_observation(at=420, target=OPEN,
                           members=[o1(muted=True, updated_at=355)]),
    ]
    bw_daily: list[PollResult] = [
        bandwidth_observation(at=0, target=BW_DAILY, created_at=-120, members=[
            bandwidth_member("c1"), bandwidth_member("c2", mute=True)]),
        bandwidth_observation(at=40, target=BW_DAILY, created_at=-120, members=[
            bandwidth_member("c1", hold=True), bandwidth_member("c2", mute=True)]),
        bandwidth_observation(at=80, target=BW_DAILY, created_at=-120,
                              members=[bandwidth_member("c1")]),
        failure(at=100, target=BW_DAILY, kind="timeout", http_status=None,
                message="read timed out"),
        bandwidth_observation(at=120, target=BW_DAILY, created_at=-120, completed_at=118),
    ]
    r1 = bandwidth_member("r1", conference_id="conf-bw-2")
    bw_rejoin: list[PollResult] = [
        bandwidth_observation(at=500, target=BW_REJOIN, created_at=490, members=[r1]),
        bandwidth_observation(at=530, target=BW_REJOIN, created_at=490),
        bandwidth_observation(at=560, target=BW_REJOIN, created_at=490, members=[r1]),
        bandwidth_observation(at=590, target=BW_REJOIN, created_at=490, members=[
            bandwidth_member("r1", mute=True, conference_id="conf-bw-2")]),
        bandwidth_observation(at=620, target=BW_REJOIN, created_at=490, completed_at=615),
    ]
    missing = [failure(at=50, target=MISSING)]
    recent_conference = [
        telnyx_observation(at=recent(2), target=RECENT, status="init",
                           created_at=recent(2) - timedelta(minutes=1)),
        telnyx_observation(at=recent(1), target=RECENT,
                           created_at=recent(2) - timedelta(minutes=1),
                           members=[telnyx_member("z1", created_at=recent(1.1))]),
    ]
    everything: list[PollResult] = [*standup, *sales, *vanish, *still_open, *bw_daily,
                                    *bw_rejoin, *missing, *recent_conference]
    # One batch per poll time, like a poller's ticks.
    ticks: dict[datetime, list[PollResult]] = {}
    for result in everything:
        ticks.setdefault(result.observed_at, []).append(result)
    return [ticks[moment] for moment in sorted(ticks)]


@pytest.fixture
def recorded(database_url: str) -> Iterator[Engine]:
    """An engine on a database holding :func:`history`, recorded by the real recorder."""
    engine = make_engine(database_url)
    recorder = Recorder(engine)
    retire_vanished = {VANISH: ScheduleUpdate(next_poll_at=at(260), state="retired",
                                              retired_reason="gone")}
    for batch in history():
        last = batch[0].observed_at == at(260)
        recorder.record(batch, retire_vanished if last else None)
    yield engine
    engine.dispose()


# --- Reading the documented queries ----------------------------------------------------------

QUERY_BLOCK = re.compile(r"```sql\n(.*?)```", re.DOTALL)


def documented_queries() -> dict[str, dict[str, str]]:
    """Example queries in ``docs/schema.md``: heading → {dialect or "any": SQL}."""
    text_ = DOCS.read_text(encoding="utf-8")
    section = text_.split("\n## Example queries\n", 1)[1].split("\n## ", 1)[0]
    queries: dict[str, dict[str, str]] = {}
    for chunk in section.split("\n### ")[1:]:
        heading, body = chunk.split("\n", 1)
        blocks: dict[str, str] = {}
        for sql in QUERY_BLOCK.findall(body):
            first = sql.splitlines()[0].strip()
            dialect = first.removeprefix("-- dialect:").strip() if first.startswith(
                "-- dialect:") else "any"
            blocks[dialect] = sql
        queries[heading.strip()] = blocks
    return queries


def query_for(heading: str, dialect: str) -> str:
    """The documented SQL of ``heading`` for ``dialect``."""
    blocks = documented_queries()[heading]
    return blocks.get(dialect) or blocks["any"]


TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?$")


def normalise(value: Any) -> Any:
    """One comparable form for both databases: aware datetimes, floats rounded to ms."""
    if isinstance(value, str) and TIMESTAMP.match(value):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if isinstance(value, Decimal):
        return round(float(value), 3)
    if isinstance(value, float):
        return round(value, 3)
    return value


def run(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    """Rows of ``sql``, normalised."""
    with engine.connect() as conn:
        return [tuple(normalise(v) for v in row) for row in conn.execute(text(sql))]


# --- The answers -----------------------------------------------------------------------------

def split_by_day(start: datetime, end: datetime) -> dict[str, float]:
    """Seconds of [start, end) in each UTC day it overlaps."""
    pieces: dict[str, float] = {}
    while start < end:
        midnight = datetime.combine(start.date() + timedelta(days=1), datetime.min.time(), UTC)
        piece_end = min(end, midnight)
        pieces[start.strftime("%Y-%m-%d")] = (piece_end - start).total_seconds()
        start = piece_end
    return pieces


def recent_usage() -> list[tuple[str, int, int, float, float, int]]:
    """``usage_daily`` of conf-recent (open: its life ends at its last poll, recent(1); z1
    present from recent(1.1)): (day, conferences, active, conference and member minutes,
    peak), split at midnight when the real clock puts it across one."""
    life = split_by_day(recent(2) - timedelta(minutes=1), recent(1))
    z1 = split_by_day(recent(1.1), recent(1))
    first = min(life)
    return [(day, int(day == first), 1, round(seconds / 60, 3), round(z1.get(day, 0) / 60, 3),
             int(day in z1)) for day, seconds in sorted(life.items())]


def expected_answers() -> dict[str, list[tuple[Any, ...]]]:
    """Each documented query's rows for :func:`history`, worked out by hand."""
    recent_day = (recent(2) - timedelta(minutes=1)).strftime("%Y-%m-%d")
    tm = ("telnyx", "telnyx-main")
    return {
        # conf-bw-1 -120→118 and conf-bw-2 490→615: 363 s. c1 0→120 clipped to 118, c2 0→80,
        # r1 500→530 and 560→620 clipped to 615: 283 s. conf-open -60→420 (its last poll), o1
        # 295→420. conf-standup -60→148 and conf-vanish -60→200 (its last poll): 468 s; p1
        # -50→146, p2 -40→115, p3 85→147, v1 190→200: 423 s. conf-sales (the next day, from
        # 11:59:50) 610 s, q1 605 s.
        "Minutes per day per account": [
            ("2025-03-01", "bandwidth", "bandwidth-main", 2, 6.05, 4.717),
            ("2025-03-01", "telnyx", "telnyx-eu", 1, 8.0, 2.083),
            ("2025-03-01", *tm, 2, 7.8, 7.05),
            ("2025-03-02", *tm, 1, 10.167, 10.083),
            *((day, *tm, started, minutes, member_minutes)
              for day, started, _, minutes, member_minutes, _ in recent_usage()),
        ],
        # q1's ten minutes from 12:00 on 2025-03-02 beat conf-recent's z1 (six minutes).
        "The busy hour of each account": [
            ("bandwidth", "bandwidth-main", "2025-03-01 12:00", 4.717, 2),
            ("telnyx", "telnyx-eu", "2025-03-01 12:00", 2.083, 1),
            (*tm, "2025-03-02 12:00", 10.0, 1),
        ],
        # p1, p2 and p3 together from 85 to 115; c1 and c2 from 0.
        "Peak concurrent members per day": [
            ("2025-03-01", "bandwidth", "bandwidth-main", 2, 2),
            ("2025-03-01", "telnyx", "telnyx-eu", 1, 1),
            ("2025-03-01", *tm, 3, 2),
            ("2025-03-02", *tm, 1, 1),
            *((day, *tm, peak, active) for day, _, active, _, _, peak in recent_usage()),
        ],
        # 125 and 238 s: rank ceil(2 × 0.5) = 1 and ceil(2 × 0.95) = 2. conf-vanish and the
        # open ones have no duration.
        "Median and p95 conference duration per day": [
            ("2025-03-01", "bandwidth", "bandwidth-main", 2, 125.0, 238.0),
            ("2025-03-01", *tm, 2, 208.0, 208.0),
            ("2025-03-02", *tm, 1, 610.0, 610.0),
        ],
        "Conference durations by end reason": [
            # conf-bw-1: 118 - (-120); conf-bw-2: 615 - 490.
            ("bandwidth", "(not reported)", 2, 181.5, 125.0, 238.0),
            # conf-standup: updated_at 148 - created -60; conf-sales: observed 600 - (-10).
            ("telnyx", "all_left", 1, 208.0, 208.0, 208.0),
            ("telnyx", "ended_via_api", 1, 610.0, 610.0, 610.0),
        ],
        "Conferences per day": [
            ("2025-03-01", "bandwidth", 2),
            ("2025-03-01", "telnyx", 3),
            ("2025-03-02", "telnyx", 1),
            (recent_day, "telnyx", 1),
        ],
        "The longest conferences": [
            ("telnyx", "telnyx-main", "conf-sales", "standup", at(DAY - 10), at(DAY + 600),
             610.0, "ended_via_api"),
            ("bandwidth", "bandwidth-main", "conf-bw-1", "daily", at(-120), at(118), 238.0, None),
            ("telnyx", "telnyx-main", "conf-standup", "standup", at(-60), at(148), 208.0,
             "all_left"),
            ("bandwidth", "bandwidth-main", "conf-bw-2", "daily", at(490), at(615), 125.0, None),
        ],
        "How many people were in each conference": [
            ("telnyx", "conf-standup", "standup", 3, 3),
            ("bandwidth", "conf-bw-1", "daily", 2, 2),
            ("bandwidth", "conf-bw-2", "daily", 1, 1),
            ("telnyx", "conf-open", "standup", 1, 1),
            ("telnyx", "conf-recent", "standup", 1, 1),
            ("telnyx", "conf-sales", "standup", 1, 1),
            ("telnyx", "conf-vanish", "standup", 1, 1),
        ],
        "Time spent muted, per member": [
            # p2 joined muted at -40 (provider) and left at 115 (provider).
            ("conf-standup", "p2", 1, 1, 155.0, 155.0),
            # c2 joined muted at 0 and disappeared at 80 (poller's clock).
            ("conf-bw-1", "c2", 1, 1, 80.0, 80.0),
            # r1's second stay: 560 → 620, muted from 590.
            ("conf-bw-2", "r1", 2, 1, 30.0, 60.0),
            # o1: joined muted at 295, unmuted 325, muted again 355 and still is.
            ("conf-open", "o1", 1, 2, 30.0, None),
            # p1: muted at 28, unmuted at 58 (Telnyx updated_at).
            ("conf-standup", "p1", 1, 1, 30.0, 196.0),
        ],
        "Who was on hold longest": [
            # q1: held at DAY+300, closed by the completion observed at DAY+600.
            ("conf-sales", "q1", "cc-q1", 1, 300.0),
            ("conf-bw-1", "c1", "c1", 1, 40.0),
            ("conf-standup", "p2", "cc-p2", 1, 31.0),
        ],
        "Conferences that vanished": [
            ("telnyx", "telnyx-main", "conf-vanish", "in_progress", at(200), at(230), "gone"),
        ],
        "Conferences still open": [
            ("telnyx", "telnyx-eu", "conf-open", "in_progress", at(-60), 1, at(420)),
            ("telnyx", "telnyx-main", "conf-recent", "in_progress",
             recent(2) - timedelta(minutes=1), 1, recent(1)),
        ],
        "Poll errors per account and day": [
            ("2025-03-01", "bandwidth-main", 1, 1),
            ("2025-03-01", "telnyx-eu", 1, 1),
            ("2025-03-01", "telnyx-main", 4, 3),
            ("2025-03-02", "telnyx-main", 1, 1),
        ],
        "Error rate per account": [
            # conf-bw-1: 4 observations + 1 timeout; conf-bw-2: 5 observations.
            ("bandwidth", "bandwidth-main", 2, 10, 1, 0.1),
            # conf-open: 4 observations + 1 rate limit.
            ("telnyx", "telnyx-eu", 1, 5, 1, 0.2),
            # standup 6 + 1 failure, sales 3 + 1, vanish 1 + 2, missing 0 + 1, recent 2 + 0.
            ("telnyx", "telnyx-main", 5, 17, 5, 0.294),
        ],
        "Errors by kind": [
            ("not_found", 404, 4),
            ("rate_limited", 429, 1),
            ("server_error", 503, 1),
            ("timeout", None, 1),
        ],
        "Status transitions in the last 24 hours": [
            ("telnyx", "conf-recent", 1, None, "init", None, recent(2), None),
            ("telnyx", "conf-recent", 2, "init", "in_progress", recent(2), recent(1), None),
        ],
        "How completion times were obtained": [
            ("bandwidth", "provider", 2),
            ("telnyx", "observed", 1),
            ("telnyx", "provider_updated_at", 1),
        ],
        # r1 left conf-bw-2 after 30 s (seen by the polls at 30 and 60: bracketed).
        "Stays shorter than one polling interval": [
            ("bandwidth", "conf-bw-2", "r1", 1, "observed", "disappeared", 30.0),
        ],
        # Bandwidth gives no member times; Telnyx its created_at and updated_at (q1 closed by
        # the conference's completion: not its own time), three Telnyx members still present.
        "How much of the history is exact": [
            ("bandwidth", 4, 0, 0, 0),
            ("telnyx", 7, 7, 3, 3),
        ],
        "Everything that happened to one conference's members": [
            (at(0), "p1", 1, "joined", None, at(-50)),
            (at(0), "p2", 1, "joined", None, at(-40)),
            (at(30), "p1", 2, "muted", at(0), at(28)),
            (at(60), "p1", 3, "unmuted", at(30), at(58)),
            (at(60), "p2", 2, "held", at(30), at(57)),
            (at(90), "p2", 3, "unheld", at(60), at(88)),
            (at(90), "p3", 1, "joined", at(60), at(85)),
            (at(120), "p2", 4, "left", at(90), at(115)),
            (at(150), "p1", 4, "left", at(120), at(146)),
            (at(150), "p3", 2, "left", at(120), at(147)),
        ],
    }


def test_every_documented_query_has_an_answer() -> None:
    """Each example query in docs/schema.md is checked here, and there are at least eight."""
    documented = documented_queries()
    assert set(documented) == set(expected_answers())
    assert len(documented) >= 8
    for heading, blocks in documented.items():
        assert set(blocks) in ({"any"}, {"sqlite", "postgresql"}), heading


@pytest.mark.parametrize("heading", sorted(expected_answers()))
def test_documented_query(recorded: Engine, heading: str) -> None:
    """The documented query gives the known answer on this database."""
    sql = query_for(heading, recorded.dialect.name)
    assert run(recorded, sql) == expected_answers()[heading]


# --- The views directly ----------------------------------------------------------------------

VIEW_COLUMNS = {
    "conference_summary": [
        "conference_pk", "provider", "account", "conference_id", "name", "status",
        "provider_status", "region", "created_at", "created_day", "completed_at",
        "completed_at_source", "duration_seconds", "end_reason", "ended_by_call_control_id",
        "peak_member_count", "member_count", "members_present", "snapshot_count",
        "transition_count", "first_observed_at", "last_observed_at", "last_changed_at", "gone",
        "gone_at", "vanished", "still_open", "target_state", "target_retired_reason",
    ],
    "member_session": [
        "member_pk", "conference_pk", "provider", "account", "conference_id", "member_id",
        "stay", "call_control_id", "call_leg_id", "status", "joined_at", "joined_at_source",
        "left_at", "left_at_source", "duration_seconds", "present", "muted", "on_hold",
        "times_muted", "seconds_muted", "times_held", "seconds_held", "first_observed_at",
        "last_observed_at",
    ],
    "poll_error_daily": [
        "provider", "account", "day", "kind", "errors", "conferences", "first_occurred_at",
        "last_occurred_at",
    ],
    **{view: ["provider", "account", bucket, "conferences", "active_conferences",
              "conference_minutes", "member_minutes", "peak_members", "median_duration_seconds",
              "p95_duration_seconds"]
       for view, bucket in (("usage_daily", "day"), ("usage_hourly", "hour"))},
}


def row(engine: Engine, sql: str, **params: Any) -> dict[str, Any]:
    """The only row of ``sql``, normalised, by column name."""
    with engine.connect() as conn:
        rows = conn.execute(text(sql), params).mappings().all()
    assert len(rows) == 1, rows
    return {key: normalise(value) for key, value in rows[0].items()}


@pytest.mark.parametrize("view", sorted(VIEW_COLUMNS))
def test_view_columns(engine: Engine, view: str) -> None:
    """Each view has exactly the documented columns, in order, on both databases."""
    with engine.connect() as conn:
        assert list(conn.execute(text(f"SELECT * FROM {view}")).keys()) == VIEW_COLUMNS[view]


def test_views_documented() -> None:
    """docs/schema.md has a section and a row for every view column."""
    docs = DOCS.read_text(encoding="utf-8")
    for view, columns in VIEW_COLUMNS.items():
        section = docs.split(f"### `{view}`", 1)[1].split("\n### ", 1)[0]
        for column in columns:
            assert f"`{column}`" in section, (view, column)


def test_every_table_and_column_documented(engine: Engine) -> None:
    """docs/schema.md has a section for every table and mentions each of its columns."""
    docs = DOCS.read_text(encoding="utf-8")
    inspector = inspect(engine)
    for table in inspector.get_table_names():
        section = docs.split(f"### `{table}`", 1)[1].split("\n### ", 1)[0]
        if table == "alembic_version":
            continue
        for column in inspector.get_columns(table):
            assert f"`{column['name']}`" in section, (table, column["name"])


def test_conference_summary_completed(recorded: Engine) -> None:
    """A completed Telnyx conference: times, duration, reason, counts, and no longer open."""
    summary = row(recorded, "SELECT * FROM conference_summary WHERE conference_id = :c",
                  c="conf-standup")
    pk = summary.pop("conference_pk")
    assert isinstance(pk, int)
    assert summary == {
        "provider": "telnyx", "account": "telnyx-main", "conference_id": "conf-standup",
        "name": "standup", "status": "completed", "provider_status": "completed",
        "region": "sv1", "created_at": at(-60), "created_day": "2025-03-01",
        "completed_at": at(148), "completed_at_source": "provider_updated_at",
        "duration_seconds": 208.0, "end_reason": "all_left", "ended_by_call_control_id": None,
        "peak_member_count": 3, "member_count": 3, "members_present": 0, "snapshot_count": 6,
        "transition_count": 2, "first_observed_at": at(0), "last_observed_at": at(150),
        "last_changed_at": at(400), "gone": True, "gone_at": at(400), "vanished": False,
        "still_open": False, "target_state": "active", "target_retired_reason": None,
    }


def test_conference_summary_bandwidth(recorded: Engine) -> None:
    """A Bandwidth conference: provider completion time, no status or end reason reported."""
    summary = row(recorded, "SELECT provider_status, completed_at, completed_at_source, "
                  "duration_seconds, end_reason, peak_member_count, member_count, gone, "
                  "still_open FROM conference_summary WHERE conference_id = 'conf-bw-1'")
    assert summary == {
        "provider_status": None, "completed_at": at(118), "completed_at_source": "provider",
        "duration_seconds": 238.0, "end_reason": None, "peak_member_count": 2,
        "member_count": 2, "gone": False, "still_open": False,
    }


def test_conference_summary_open_has_no_duration(recorded: Engine) -> None:
    """A conference still in progress has no completion, no duration, and is open.

    Its last poll (420) was unchanged: ``last_observed_at`` is that poll, exactly, while
    ``last_changed_at`` stays at the last change (360), the last write of its ``conference`` row.
    """
    summary = row(recorded, "SELECT completed_at, duration_seconds, still_open, gone, "
                  "members_present, last_observed_at, last_changed_at FROM conference_summary "
                  "WHERE conference_id = 'conf-open'")
    assert summary == {"completed_at": None, "duration_seconds": None, "still_open": True,
                       "gone": False, "members_present": 1, "last_observed_at": at(420),
                       "last_changed_at": at(360)}


def test_member_session_rejoin_has_two_stays(recorded: Engine) -> None:
    """A call that disappears and comes back has two stays, each with its own times."""
    with recorded.connect() as conn:
        stays = conn.execute(text(
            "SELECT stay, joined_at, joined_at_source, left_at, left_at_source, "
            "duration_seconds, present, times_muted, seconds_muted FROM member_session "
            "WHERE conference_id = 'conf-bw-2' ORDER BY stay")).all()
    assert [tuple(normalise(v) for v in stay) for stay in stays] == [
        (1, at(500), "observed", at(530), "disappeared", 30.0, False, 0, 0.0),
        (2, at(560), "observed", at(620), "disappeared", 60.0, False, 1, 30.0),
    ]


def _sessions(engine: Engine, conference_id: str, columns: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        rows = conn.execute(text(
            f"SELECT member_id, stay, {columns} FROM member_session "
            "WHERE conference_id = :c ORDER BY member_id, stay"), {"c": conference_id}).all()
    return [tuple(normalise(v) for v in r) for r in rows]


def test_member_session_rejoin_keeps_mute_and_hold(engine: Engine) -> None:
    """A member who rejoins muted (or on hold) has that time counted in its new stay, once.

    c1 leaves muted and on hold and rejoins so; c2 leaves unmuted and rejoins muted; c3 leaves
    muted and rejoins unmuted.
    """
    def poll(seconds: float, *members: MemberState) -> None:
        Recorder(engine).record([bandwidth_observation(at=seconds, members=members)])

    poll(0, bandwidth_member("c1", mute=True, hold=True), bandwidth_member("c2"),
         bandwidth_member("c3", mute=True))
    poll(10)  # all three disappear
    poll(20, bandwidth_member("c1", mute=True, hold=True), bandwidth_member("c2", mute=True),
         bandwidth_member("c3"))
    poll(30, bandwidth_member("c1", hold=True), bandwidth_member("c2", mute=True),
         bandwidth_member("c3"))
    poll(40)
    assert _sessions(engine, "conf-bw-1", "left_at_source, times_muted, seconds_muted, "
                     "times_held, seconds_held") == [
        ("c1", 1, "disappeared", 1, 10.0, 1, 10.0),
        ("c1", 2, "disappeared", 1, 10.0, 1, 20.0),
        ("c2", 1, "disappeared", 0, 0.0, 0, 0.0),
        ("c2", 2, "disappeared", 1, 20.0, 0, 0.0),
        ("c3", 1, "disappeared", 1, 10.0, 0, 0.0),
        ("c3", 2, "disappeared", 0, 0.0, 0, 0.0),
    ]


def test_member_session_left_source_of_every_stay(engine: Engine) -> None:
    """Each stay reports how its own end was known, not only the last one."""
    def poll(seconds: float, *members: MemberState, **kwargs: Any) -> None:
        Recorder(engine).record([telnyx_observation(at=seconds, members=members, **kwargs)])

    poll(0, telnyx_member("p1", created_at=-5), telnyx_member("p2", created_at=-3))
    poll(10, telnyx_member("p1", status="left", updated_at=8),
         telnyx_member("p2", status="left"))
    poll(20, telnyx_member("p1", updated_at=18), telnyx_member("p2"))
    poll(30, telnyx_member("p2"))  # p1 disappears
    poll(40, telnyx_member("p1", updated_at=18), telnyx_member("p2"))
    poll(50, telnyx_member("p1", updated_at=18), telnyx_member("p2"), status="completed",
         updated_at=48)
    columns = "joined_at, joined_at_source, left_at, left_at_source"
    assert _sessions(engine, "conf-1", columns) == [
        ("p1", 1, at(-5), "provider", at(8), "provider"),
        ("p1", 2, at(18), "provider", at(30), "disappeared"),
        ("p1", 3, at(40), "observed", at(48), "conference_completed"),
        ("p2", 1, at(-3), "provider", at(10), "observed"),
        ("p2", 2, at(20), "observed", at(48), "conference_completed"),
    ]


def test_member_session_matches_member_rows(recorded: Engine) -> None:
    """For single-stay members the session's times are exactly the member row's."""
    with recorded.connect() as conn:
        mismatches = conn.execute(text(
            "SELECT s.member_id FROM member_session s JOIN member m ON m.id = s.member_pk "
            "WHERE s.stay = 1 AND m.member_id <> 'r1' AND NOT ("
            " s.joined_at = m.joined_at AND s.joined_at_source = m.joined_at_source"
            " AND (s.left_at = m.left_at OR (s.left_at IS NULL AND m.left_at IS NULL))"
            " AND (s.left_at_source = m.left_at_source"
            "      OR (s.left_at_source IS NULL AND m.left_at_source IS NULL)))")).all()
        counts = conn.execute(text(
            "SELECT (SELECT COUNT(*) FROM member_session), (SELECT COUNT(*) FROM member)")).one()
    assert mismatches == []
    assert tuple(counts) == (11, 10)


def test_member_session_open_member(recorded: Engine) -> None:
    """A member still present has no end or duration, and its running mute is not summed."""
    session = row(recorded, "SELECT left_at, left_at_source, duration_seconds, present, muted, "
                  "times_muted, seconds_muted, times_held, seconds_held FROM member_session "
                  "WHERE member_id = 'o1'")
    assert session == {"left_at": None, "left_at_source": None, "duration_seconds": None,
                       "present": True, "muted": True, "times_muted": 2, "seconds_muted": 30.0,
                       "times_held": 0, "seconds_held": 0.0}


def test_member_session_closed_by_completion(recorded: Engine) -> None:
    """A member still present at completion is closed at the completion time."""
    session = row(recorded, "SELECT joined_at, joined_at_source, left_at, left_at_source, "
                  "duration_seconds FROM member_session WHERE member_id = 'q1'")
    assert session == {"joined_at": at(DAY - 5), "joined_at_source": "provider",
                       "left_at": at(DAY + 600), "left_at_source": "conference_completed",
                       "duration_seconds": 605.0}


def test_durations_are_floats(recorded: Engine) -> None:
    """Durations come back as floating point seconds on both databases."""
    session = row(recorded, "SELECT duration_seconds, seconds_muted FROM member_session "
                  "WHERE member_id = 'p1'")
    assert session == {"duration_seconds": 196.0, "seconds_muted": 30.0}
    with recorded.connect() as conn:
        values = conn.execute(text("SELECT duration_seconds, seconds_held FROM member_session "
                                   "WHERE member_id = 'p2'")).one()
    assert all(isinstance(value, float) for value in values)


def test_poll_error_daily(recorded: Engine) -> None:
    """Failures per account, UTC day and kind, with distinct conferences and the time span."""
    with recorded.connect() as conn:
        rows = conn.execute(text("SELECT * FROM poll_error_daily ORDER BY day, account, kind"))
        found = [tuple(normalise(v) for v in r) for r in rows]
    assert found == [
        ("bandwidth", "bandwidth-main", "2025-03-01", "timeout", 1, 1, at(100), at(100)),
        ("telnyx", "telnyx-eu", "2025-03-01", "rate_limited", 1, 1, at(390), at(390)),
        ("telnyx", "telnyx-main", "2025-03-01", "not_found", 4, 3, at(50), at(400)),
        ("telnyx", "telnyx-main", "2025-03-02", "server_error", 1, 1, at(DAY + 100),
         at(DAY + 100)),
    ]


def test_day_is_utc_on_postgresql_whatever_the_session_zone(recorded: Engine) -> None:
    """The ``*_day`` columns are UTC days even when the session time zone is not UTC."""
    late = telnyx_target("conf-late")
    Recorder(recorded).record([telnyx_observation(at=T0.replace(hour=23, minute=30),
                                                  target=late, created_at=None)])
    with recorded.connect() as conn:
        if recorded.dialect.name == "postgresql":
            conn.execute(text("SET TIME ZONE 'Asia/Tokyo'"))
        day = conn.execute(text("SELECT created_day FROM conference_summary "
                                "WHERE conference_id = 'conf-late'")).scalar_one()
    assert day == "2025-03-01"


def test_views_empty_database(engine: Engine) -> None:
    """On an empty database every view answers with no rows."""
    with engine.connect() as conn:
        for view in VIEW_COLUMNS:
            assert conn.execute(text(f"SELECT COUNT(*) FROM {view}")).scalar_one() == 0


def _views(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_view_names())
    finally:
        engine.dispose()


def test_downgrade_drops_views_and_keeps_data(database_url: str) -> None:
    """Downgrading 0002 drops only the views; upgrading again brings them back over the data."""
    engine = make_engine(database_url)
    try:
        Recorder(engine).record(history()[0])
        assert _views(database_url) == set(VIEW_COLUMNS)
        migrate.downgrade(database_url, "0001_initial")
        assert _views(database_url) == set()
        migrate.upgrade(database_url)
        assert _views(database_url) == set(VIEW_COLUMNS)
        with engine.connect() as conn:
            count = conn.execute(text("SELECT COUNT(*) FROM member_session")).scalar_one()
        assert count == sum(len(result.members) for result in history()[0]
                            if isinstance(result, Observation))
    finally:
        engine.dispose()
