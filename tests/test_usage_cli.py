"""``poller report usage`` through the real CLI, on the known histories of
``tests/usage_histories.py`` recorded on SQLite and PostgreSQL, in every format and filter."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from click.testing import Result
from databases import record
from test_report_cli import as_json as report_json
from test_report_cli import invoke as report_invoke
from test_report_cli import ok as report_ok
from usage_histories import everything

KEYS = ("provider", "account", "conferences", "active_conferences", "conference_minutes",
        "member_minutes", "peak_members", "median_duration_seconds", "p95_duration_seconds")

DAYS = [
    ("2025-03-01", "bandwidth", "bandwidth-main", 2, 2, 50.0, 45.0, 1, 1200.0, 1800.0),
    ("2025-03-01", "bandwidth", "bandwidth-pct", 20, 20, 210.0, 0.0, 0, 600.0, 1140.0),
    ("2025-03-01", "telnyx", "telnyx-eu", 1, 1, 30.0, 30.0, 1, 1800.0, 1800.0),
    # conf-a, conf-b, conf-open, conf-night; durations 1800, 2400, 3600 (conf-open is open).
    ("2025-03-01", "telnyx", "telnyx-main", 4, 4, 130.0, 140.0, 3, 2400.0, 3600.0),
    ("2025-03-02", "telnyx", "telnyx-main", 0, 1, 30.0, 15.0, 1, None, None),
]
HOURS = [
    ("2025-03-01 13:00", "bandwidth", "bandwidth-main", 1, 1, 30.0, 30.0, 1, 1800.0, 1800.0),
    ("2025-03-01 13:00", "telnyx", "telnyx-eu", 1, 1, 30.0, 30.0, 1, 1800.0, 1800.0),
    ("2025-03-01 13:00", "telnyx", "telnyx-main", 2, 2, 70.0, 80.0, 3, 1800.0, 2400.0),
    ("2025-03-01 14:00", "bandwidth", "bandwidth-main", 1, 1, 20.0, 15.0, 1, 1200.0, 1200.0),
    ("2025-03-01 14:00", "telnyx", "telnyx-main", 1, 1, 30.0, 30.0, 1, None, None),
    ("2025-03-01 15:00", "bandwidth", "bandwidth-pct", 20, 20, 210.0, 0.0, 0, 600.0, 1140.0),
    ("2025-03-01 23:00", "telnyx", "telnyx-main", 1, 1, 30.0, 30.0, 1, 3600.0, 3600.0),
    ("2025-03-02 00:00", "telnyx", "telnyx-main", 0, 1, 30.0, 15.0, 1, None, None),
]


def rows(bucket: str, table: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Expected JSON objects: the bucket first, then the usage columns."""
    return [dict(zip((bucket, *KEYS), row, strict=True)) for row in table]


@pytest.fixture
def recorded(database_url: str) -> str:
    """The URL of a database holding every usage history."""
    return record(database_url, everything())


def invoke(url: str, *args: str) -> Result:
    """``poller report usage ARGS --database-url URL``."""
    return report_invoke(url, "usage", *args)


def ok(url: str, *args: str) -> str:
    """The standard output of a usage report that must succeed."""
    return report_ok(url, "usage", *args)


def as_json(url: str, *args: str) -> list[dict[str, Any]]:
    """The report's JSON, decoded."""
    return report_json(url, "usage", *args)


def test_usage_by_day_json(recorded: str) -> None:
    """The default is per day: ordered by day, provider, account; minutes as numbers."""
    assert as_json(recorded) == rows("day", DAYS)


def test_usage_by_hour_json(recorded: str) -> None:
    """--by hour: one object per hour with activity, the hour as ``YYYY-MM-DD HH:00``."""
    assert as_json(recorded, "--by", "hour") == rows("hour", HOURS)


def test_usage_csv(recorded: str) -> None:
    """CSV: a header, then raw values (empty for no duration)."""
    lines = list(csv.reader(io.StringIO(ok(recorded, "--format", "csv"))))
    assert lines[0] == ["day", *KEYS]
    assert lines[1:] == [["" if v is None else str(v) for v in row] for row in DAYS]


def test_usage_table(recorded: str) -> None:
    """The table: minutes with tenths under 100, durations humanised, blank when none."""
    assert ok(recorded, "--by", "hour", "--account", "telnyx-main") == (
        "hour              provider  account      started  live  conf min  member min  peak"
        "    median       p95\n"
        "----------------  --------  -----------  -------  ----  --------  ----------  ----"
        "  --------  --------\n"
        "2025-03-01 13:00  telnyx    telnyx-main        2     2      70.0        80.0     3"
        "    30m00s    40m00s\n"
        "2025-03-01 14:00  telnyx    telnyx-main        1     1      30.0        30.0     1\n"
        "2025-03-01 23:00  telnyx    telnyx-main        1     1      30.0        30.0     1"
        "  1h00m00s  1h00m00s\n"
        "2025-03-02 00:00  telnyx    telnyx-main        0     1      30.0        15.0     1\n"
    )


def test_usage_table_day(recorded: str) -> None:
    """Per day, the busiest account reads 130.0 conference and 140 member minutes."""
    table = ok(recorded).splitlines()
    assert table[0].split() == ["day", "provider", "account", "started", "live", "conf",
                                "min", "member", "min", "peak", "median", "p95"]
    assert table[5].split() == ["2025-03-01", "telnyx", "telnyx-main", "4", "4", "130",
                                "140", "3", "40m00s", "1h00m00s"]


@pytest.mark.parametrize(("args", "expected"), [
    # The bucket that holds the moment is kept whole.
    (["--since", "2025-03-01T23:45"], rows("day", DAYS)),
    (["--since", "2025-03-02"], rows("day", DAYS[4:])),
    (["--by", "hour", "--since", "2025-03-01T23:45"], rows("hour", HOURS[6:])),
    (["--by", "hour", "--since", "2025-03-01 15:30+01:00"], rows("hour", HOURS[3:])),
    (["--provider", "bandwidth"], rows("day", DAYS[:2])),
    (["--account", "telnyx-eu"], rows("day", DAYS[2:3])),
    (["--by", "hour", "--provider", "telnyx", "--since", "2025-03-01T14:00"],
     rows("hour", [HOURS[4], HOURS[6], HOURS[7]])),
])
def test_usage_filters(recorded: str, args: list[str], expected: list[dict[str, Any]]) -> None:
    """--since keeps the buckets from the one holding it; --provider and --account."""
    assert as_json(recorded, *args) == expected


def test_usage_limit(recorded: str) -> None:
    """--limit cuts rows off and says so."""
    result = invoke(recorded, "--by", "hour", "--limit", "2", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == rows("hour", HOURS[:2])
    assert result.stderr == "(only the first 2 rows; --limit 0 shows all)\n"


def test_usage_empty(database_url: str) -> None:
    """No rows: a friendly line in a table, [] in JSON, the header alone in CSV."""
    assert ok(database_url) == "No usage matches.\n"
    assert ok(database_url, "--by", "hour", "--format", "json") == "[]\n"
    assert ok(database_url, "--format", "csv") == ",".join(("day", *KEYS)) + "\n"


def test_usage_bad_by() -> None:
    """--by takes day or hour only (a usage error, before any database)."""
    result = invoke("sqlite:///never-opened.db", "--by", "week")
    assert result.exit_code == 2
    assert "Invalid value for '--by'" in result.stderr
