"""The usage views (``usage_hourly``, ``usage_daily``) on known histories, worked out by hand.

Each history (``tests/usage_histories.py``) is recorded through the real ``Recorder`` on SQLite
and PostgreSQL; times are seconds after ``T0`` (2025-03-01 12:00 UTC), so 3600 is 13:00 and
41400 is 23:30. The documented example queries on these views are checked in
``test_reports.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from databases import copy_sqlite
from factories import telnyx_member, telnyx_observation, telnyx_target
from sqlalchemy import Engine, text
from usage_histories import (
    everything,
    open_and_rejoin,
    over_midnight,
    overlapping,
    twenty_durations,
)

from poller.model import PollResult
from poller.store import migrate
from poller.store.database import make_engine
from poller.store.recorder import Recorder

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


def test_every_stay_of_a_rejoining_member(engine: Engine) -> None:
    """Members that leave and come back count each stay of ``member_session``, not the gaps:
    p1 -5→8, 18→30, 40→48 and p2 -3→10, 20→48 (the conference: -60→48, completed)."""
    def poll(seconds: float, *members: Any, **kwargs: Any) -> Any:
        return telnyx_observation(at=seconds, members=members, **kwargs)

    record(engine, [
        poll(0, telnyx_member("p1", created_at=-5), telnyx_member("p2", created_at=-3)),
        poll(10, telnyx_member("p1", status="left", updated_at=8),
             telnyx_member("p2", status="left")),
        poll(20, telnyx_member("p1", updated_at=18), telnyx_member("p2")),
        poll(30, telnyx_member("p2")),  # p1 disappears
        poll(40, telnyx_member("p1", updated_at=18), telnyx_member("p2")),
        poll(50, telnyx_member("p1", updated_at=18), telnyx_member("p2"), status="completed",
             updated_at=48),
    ])
    with engine.connect() as conn:
        stays = conn.execute(text("SELECT COUNT(*) FROM member_session")).scalar_one()
    assert stays == 5
    # 13 + 12 + 8 + 13 + 28 = 74 member seconds; 8 of them before 12:00.
    assert usage(engine) == [
        ("telnyx", "telnyx-main", "2025-03-01", 1, 1, 1.8, 1.233, 2, 108.0, 108.0)]
    assert usage(engine, "usage_hourly") == [
        ("telnyx", "telnyx-main", "2025-03-01 11:00", 1, 1, 1.0, 0.133, 2, 108.0, 108.0),
        ("telnyx", "telnyx-main", "2025-03-01 12:00", 0, 1, 0.8, 1.1, 2, None, None),
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
    for engine in both:
        record(engine, everything())
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
