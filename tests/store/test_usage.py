"""The usage views (``usage_hourly``, ``usage_daily``) on known histories, worked out by hand.

Each history is recorded through the real ``Recorder`` on SQLite and PostgreSQL; times are
seconds after ``T0`` (2025-03-01 12:00 UTC), so 3600 is 13:00 and 41400 is 23:30. The
documented example queries on these views are checked in ``test_reports.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from databases import copy_sqlite
from factories import (
    bandwidth_member,
    bandwidth_observation,
    bandwidth_target,
    telnyx_member,
    telnyx_observation,
    telnyx_target,
)
from sqlalchemy import Engine, text

from poller.model import PollResult
from poller.store import migrate
from poller.store.database import make_engine
from poller.store.recorder import Recorder

MIN = 60
HOUR = 3_600

COLUMNS = ("provider, account, {bucket}, conferences, active_conferences, conference_minutes,"
           " member_minutes, peak_members, median_duration_seconds, p95_duration_seconds")


def record(engine: Engine, results: Iterable[PollResult]) -> None:
    """Record ``results`` one poll at a time, in time order (stable per conference)."""
    recorder = Recorder(engine)
    for result in sorted(results, key=lambda r: r.observed_at):
        recorder.record([result])


def usage(engine: Engine, view: str = "usage_daily") -> list[tuple[Any, ...]]:
    """Every row of ``view``, ordered by provider, account and bucket."""
    bucket = "hour" if view == "usage_hourly" else "day"
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT {COLUMNS.format(bucket=bucket)} FROM {view} "
                                 f"ORDER BY provider, account, {bucket}")).all()
    return [tuple(round(v, 3) if isinstance(v, float) else v for v in row) for row in rows]


# --- Histories -------------------------------------------------------------------------------

NIGHT = telnyx_target("conf-night")


def over_midnight() -> list[PollResult]:
    """23:30 → 00:30 (completed, 1 h); a1 from 23:30 to 00:15."""
    def a1(**state: Any) -> Any:
        return telnyx_member("a1", created_at=41_400, **state)

    return [
        telnyx_observation(at=41_400, target=NIGHT, created_at=41_400, members=[a1()]),
        telnyx_observation(at=44_160, target=NIGHT, created_at=41_400,
                           members=[a1(status="left", updated_at=44_100)]),
        telnyx_observation(at=45_000, target=NIGHT, created_at=41_400, status="completed",
                           updated_at=45_000, members=[a1(status="left", updated_at=44_100)]),
    ]


CONF_A, CONF_B = telnyx_target("conf-a"), telnyx_target("conf-b")
CONF_EU = telnyx_target("conf-eu", account="telnyx-eu")
CONF_BW = bandwidth_target("conf-bw-1")


def overlapping() -> list[PollResult]:
    """In the 13:00 hour, telnyx-main has two conferences whose members overlap:

    conf-a 13:00-13:30 with m1 13:00-13:20 and m4 13:05-13:25 (alone: 2 at once);
    conf-b 13:00-13:40 with m2 13:10-13:30 and m3 13:20-13:40 (alone: 2 at once).
    Together m1, m4, m2 are present from 13:10 to 13:20: 3. At 13:20 m1 leaves as m3 joins:
    still 3, not 4. telnyx-eu (e1 13:00-13:30) and Bandwidth (c1 13:00-13:30) beside it.
    """
    def m(member_id: str, joined: float, left: float | None = None) -> Any:
        if left is None:
            return telnyx_member(member_id, created_at=joined)
        return telnyx_member(member_id, created_at=joined, status="left", updated_at=left)

    a = {"target": CONF_A, "created_at": 3_600}
    b = {"target": CONF_B, "created_at": 3_600}
    eu = {"target": CONF_EU, "created_at": 3_600}
    return [
        telnyx_observation(at=3_600, **a, members=[m("m1", 3_600)]),
        telnyx_observation(at=3_900, **a, members=[m("m1", 3_600), m("m4", 3_900)]),
        telnyx_observation(at=4_860, **a, members=[m("m1", 3_600, 4_800), m("m4", 3_900)]),
        telnyx_observation(at=5_160, **a, members=[m("m1", 3_600, 4_800),
                                                  m("m4", 3_900, 5_100)]),
        telnyx_observation(at=5_400, **a, status="completed", updated_at=5_400,
                           members=[m("m1", 3_600, 4_800), m("m4", 3_900, 5_100)]),
        telnyx_observation(at=3_600, **b),
        telnyx_observation(at=4_200, **b, members=[m("m2", 4_200)]),
        telnyx_observation(at=4_800, **b, members=[m("m2", 4_200), m("m3", 4_800)]),
        telnyx_observation(at=5_400, **b, members=[m("m2", 4_200, 5_400), m("m3", 4_800)]),
        telnyx_observation(at=6_000, **b, status="completed", updated_at=6_000,
                           members=[m("m2", 4_200, 5_400), m("m3", 4_800, 6_000)]),
        telnyx_observation(at=3_600, **eu, members=[m("e1", 3_600)]),
        telnyx_observation(at=5_400, **eu, status="completed", updated_at=5_400,
                           members=[m("e1", 3_600)]),
        bandwidth_observation(at=3_600, target=CONF_BW, created_at=3_600,
                              members=[bandwidth_member("c1")]),
        bandwidth_observation(at=5_400, target=CONF_BW, created_at=3_600, completed_at=5_400),
    ]


OPEN = telnyx_target("conf-open")
REJOIN = bandwidth_target("conf-bw-2")


def open_and_rejoin() -> list[PollResult]:
    """conf-open: 14:00, polled unchanged at 14:30, still open with o1 present.
    conf-bw-2: 14:00-14:20; r1 present 14:00-14:05 and again 14:10-14:20 (a rejoin)."""
    o1 = telnyx_member("o1", created_at=7_200)
    r1 = bandwidth_member("r1", conference_id="conf-bw-2")
    bw = {"target": REJOIN, "created_at": 7_200}
    return [
        telnyx_observation(at=7_200, target=OPEN, created_at=7_200, members=[o1]),
        telnyx_observation(at=9_000, target=OPEN, created_at=7_200, members=[o1]),
        bandwidth_observation(at=7_200, **bw, members=[r1]),
        bandwidth_observation(at=7_500, **bw),
        bandwidth_observation(at=7_800, **bw, members=[r1]),
        bandwidth_observation(at=8_400, **bw, completed_at=8_400),
    ]


def twenty_durations() -> list[PollResult]:
    """Twenty Bandwidth conferences in the 15:00 hour lasting 1, 2, … 20 minutes."""
    results: list[PollResult] = []
    for i in range(1, 21):
        start = 3 * HOUR + i
        target = bandwidth_target(f"conf-p{i}", account="bandwidth-pct")
        results += [bandwidth_observation(at=start, target=target, created_at=start),
                    bandwidth_observation(at=start + i * MIN, target=target, created_at=start,
                                          completed_at=start + i * MIN)]
    return results


# --- The answers -----------------------------------------------------------------------------

def test_conference_over_midnight_is_split_between_days(engine: Engine) -> None:
    """23:30-00:30 gives 30 conference minutes to each day; a1 (23:30-00:15) 30 and 15
    member minutes; it started (and its duration counts) on the first day only."""
    record(engine, over_midnight())
    assert usage(engine) == [
        ("telnyx", "telnyx-main", "2025-03-01", 1, 1, 30.0, 30.0, 1, 3600.0, 3600.0),
        ("telnyx", "telnyx-main", "2025-03-02", 0, 1, 30.0, 15.0, 1, None, None),
    ]
    assert usage(engine, "usage_hourly") == [
        ("telnyx", "telnyx-main", "2025-03-01 23:00", 1, 1, 30.0, 30.0, 1, 3600.0, 3600.0),
        ("telnyx", "telnyx-main", "2025-03-02 00:00", 0, 1, 30.0, 15.0, 1, None, None),
    ]


def test_peak_is_account_wide_and_accounts_apart(engine: Engine) -> None:
    """Two conferences of one account peak at 3 together (2 each alone); a leave and a join
    at the same instant do not overlap; other accounts and providers count on their own."""
    record(engine, overlapping())
    hour = [
        ("bandwidth", "bandwidth-main", "2025-03-01 13:00", 1, 1, 30.0, 30.0, 1, 1800.0,
         1800.0),
        ("telnyx", "telnyx-eu", "2025-03-01 13:00", 1, 1, 30.0, 30.0, 1, 1800.0, 1800.0),
        # conf-a 30 + conf-b 40 minutes; m1, m4, m2, m3 20 minutes each; durations 1800, 2400.
        ("telnyx", "telnyx-main", "2025-03-01 13:00", 2, 2, 70.0, 80.0, 3, 1800.0, 2400.0),
    ]
    assert usage(engine, "usage_hourly") == hour
    assert usage(engine) == [(*row[:2], "2025-03-01", *row[3:]) for row in hour]


def test_open_conference_and_rejoin(engine: Engine) -> None:
    """An open conference lives until its last successful poll (an unchanged one), with its
    present member; a rejoin counts both stays, not the gap; no completed one: no durations."""
    record(engine, open_and_rejoin())
    assert usage(engine, "usage_hourly") == [
        # 14:00-14:20; r1 5 + 10 minutes.
        ("bandwidth", "bandwidth-main", "2025-03-01 14:00", 1, 1, 20.0, 15.0, 1, 1200.0,
         1200.0),
        ("telnyx", "telnyx-main", "2025-03-01 14:00", 1, 1, 30.0, 30.0, 1, None, None),
    ]


def test_nearest_rank_percentiles(engine: Engine) -> None:
    """Durations of 1 … 20 minutes: the median is the 10th (not 10.5), p95 the 19th."""
    record(engine, twenty_durations())
    assert usage(engine, "usage_hourly") == [
        ("bandwidth", "bandwidth-pct", "2025-03-01 15:00", 20, 20, 210.0, 0.0, 0, 600.0,
         1140.0),
    ]


def test_member_carried_into_the_next_hour(engine: Engine) -> None:
    """A stay from an earlier hour counts in the next hour's peak from its start."""
    target = telnyx_target("conf-long")
    record(engine, [
        telnyx_observation(at=1_800, target=target, created_at=1_800,
                           members=[telnyx_member("l1", created_at=1_800)]),
        telnyx_observation(at=4_200, target=target, created_at=1_800, status="completed",
                           updated_at=4_200, members=[telnyx_member("l1", created_at=1_800)]),
    ])
    assert usage(engine, "usage_hourly") == [
        ("telnyx", "telnyx-main", "2025-03-01 12:00", 1, 1, 30.0, 30.0, 1, 2400.0, 2400.0),
        ("telnyx", "telnyx-main", "2025-03-01 13:00", 0, 1, 10.0, 10.0, 1, None, None),
    ]


def test_empty_database(engine: Engine) -> None:
    """No conferences: no rows."""
    assert usage(engine) == []
    assert usage(engine, "usage_hourly") == []


# --- The same rows on both databases -----------------------------------------------------------

@pytest.fixture
def both(sqlite_template: Path, tmp_path: Path, postgres_url: str) -> Iterator[list[Engine]]:
    """Engines on a fresh SQLite and a fresh PostgreSQL database."""
    engines = [make_engine(copy_sqlite(sqlite_template, tmp_path)), make_engine(postgres_url)]
    yield engines
    for engine in engines:
        engine.dispose()


@pytest.mark.postgres
def test_same_rows_on_both_databases(both: list[Engine]) -> None:
    """Every history above, recorded into SQLite and PostgreSQL, reads exactly the same."""
    history = [*over_midnight(), *overlapping(), *open_and_rejoin(), *twenty_durations()]
    for engine in both:
        record(engine, history)
    for view in ("usage_daily", "usage_hourly"):
        sqlite_rows, postgres_rows = (usage_exact(engine, view) for engine in both)
        assert sqlite_rows == postgres_rows
        assert len(sqlite_rows) >= 4


def usage_exact(engine: Engine, view: str) -> list[tuple[Any, ...]]:
    """Every row of ``view`` as the driver returns it (counts as ``int``), unrounded."""
    bucket = "hour" if view == "usage_hourly" else "day"
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT {COLUMNS.format(bucket=bucket)} FROM {view} "
                                 f"ORDER BY provider, account, {bucket}")).all()
    return [tuple(int(v) if isinstance(v, int) else v for v in row) for row in rows]


def test_downgrade_drops_only_the_usage_views(database_url: str) -> None:
    """Downgrading 0006 drops the usage views and keeps the others; upgrading brings them
    back, over the recorded data."""
    engine = make_engine(database_url)
    try:
        record(engine, over_midnight())
        migrate.downgrade(database_url, "0005_webhook_events")
        with engine.connect() as conn:
            views = set(conn.dialect.get_view_names(conn))
        assert views == {"conference_summary", "member_session", "poll_error_daily"}
        migrate.upgrade(database_url)
        assert len(usage(engine)) == 2
    finally:
        engine.dispose()
