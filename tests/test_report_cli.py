"""``poller report …`` through the real CLI, on history recorded by the real ``Recorder``.

The history below (Telnyx and Bandwidth conferences that complete, vanish, stay open; mutes,
holds and poll errors, plus one conference an hour ago for the relative ``--since``) is
recorded on SQLite and PostgreSQL, then every report is run in every format and with every
filter, and its rows are compared with the answer worked out by hand.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from databases import record
from factories import (
    at,
    bandwidth_member,
    bandwidth_observation,
    bandwidth_target,
    failure,
    telnyx_member,
    telnyx_observation,
    telnyx_target,
)
from sqlalchemy import text, update
from sqlalchemy.engine import make_url

from poller.commands import CliState, parse_since
from poller.commands.report import report
from poller.model import PollResult
from poller.reports.tables import format_duration, render_csv, render_json
from poller.store import migrate
from poller.store.database import make_engine
from poller.store.reports import Report, read_only
from poller.store.schema import PollTarget

NOW = datetime.now(UTC).replace(microsecond=0)
"""Real time: only ``conf-recent`` lives near it (for ``--since 3h``)."""

STANDUP = telnyx_target("conf-standup")
VANISH = telnyx_target("conf-vanish")
OPEN = telnyx_target("conf-open", account="telnyx-eu")
DAILY = bandwidth_target("conf-bw-1")
RECENT = telnyx_target("conf-recent")


@pytest.fixture(autouse=True)
def _now_is_now() -> None:
    """``NOW`` anew for each test (before its database is recorded): a slow suite must not
    age the "recent" rows past the ``--since`` windows the tests ask about."""
    global NOW
    NOW = datetime.now(UTC).replace(microsecond=0)


def recent(hours_ago: float) -> datetime:
    """A moment ``hours_ago`` before the real current time."""
    return NOW - timedelta(hours=hours_ago)


def history() -> list[PollResult]:
    """Everything the pollers saw, in time order per conference."""
    def p1(**state: Any) -> Any:
        return telnyx_member("p1", created_at=-50, **state)

    def p2(**state: Any) -> Any:
        return telnyx_member("p2", created_at=-40, muted=True, **state)

    standup: list[PollResult] = [
        telnyx_observation(at=0, target=STANDUP, members=[p1(), p2()]),
        telnyx_observation(at=60, target=STANDUP, members=[p1(muted=True, updated_at=58), p2()]),
        telnyx_observation(at=120, target=STANDUP, members=[
            p1(updated_at=118), p2(status="left", updated_at=115)]),
        telnyx_observation(at=180, target=STANDUP, status="completed", updated_at=178,
                           end_reason="all_left", members=[
            p1(status="left", updated_at=176), p2(status="left", updated_at=115)]),
    ]
    vanish: list[PollResult] = [
        telnyx_observation(at=200, target=VANISH, created_at=195,
                           members=[telnyx_member("v1", created_at=196)]),
        failure(at=230, target=VANISH),
        failure(at=260, target=VANISH),
    ]
    still_open: list[PollResult] = [
        telnyx_observation(at=300, target=OPEN, created_at=290,
                           members=[telnyx_member("o1", created_at=295, muted=True)]),
        telnyx_observation(at=360, target=OPEN, created_at=290,
                           members=[telnyx_member("o1", created_at=295, updated_at=355)]),
        failure(at=390, target=OPEN, kind="rate_limited", http_status=429,
                message="too many requests"),
    ]
    daily: list[PollResult] = [
        bandwidth_observation(at=0, target=DAILY, created_at=-100, members=[
            bandwidth_member("c1"), bandwidth_member("c2", mute=True)]),
        bandwidth_observation(at=40, target=DAILY, created_at=-100, members=[
            bandwidth_member("c1", hold=True), bandwidth_member("c2", mute=True)]),
        bandwidth_observation(at=80, target=DAILY, created_at=-100,
                              members=[bandwidth_member("c1")]),
        failure(at=100, target=DAILY, kind="timeout", http_status=None,
                message="read timed out"),
        bandwidth_observation(at=120, target=DAILY, created_at=-100, completed_at=118),
    ]
    latest: list[PollResult] = [
        telnyx_observation(at=recent(2), target=RECENT, status="init",
                           created_at=recent(2) - timedelta(minutes=1)),
        telnyx_observation(at=recent(1), target=RECENT,
                           created_at=recent(2) - timedelta(minutes=1),
                           members=[telnyx_member("z1", created_at=recent(1.5))]),
    ]
    return [*standup, *vanish, *still_open, *daily, *latest]



@pytest.fixture
def recorded(database_url: str) -> str:
    """The URL of a database holding :func:`history`."""
    return record(database_url, history())


@pytest.fixture
def documented(database_url: str) -> str:
    """The history of ``docs/reports.md``: :func:`history` without the recent conference."""
    return record(database_url, [r for r in history() if r.target != RECENT])


# --- Running the CLI -------------------------------------------------------------------------

def invoke(url: str | None, *args: str, env: dict[str, str] | None = None) -> Result:
    """``poller report ARGS --database-url URL`` through click's runner."""
    argv = [*args, "--database-url", url] if url else list(args)
    return CliRunner().invoke(report, argv, obj=CliState(config_path=None), env=env)


def ok(url: str, *args: str) -> str:
    """The standard output of a report that must succeed."""
    result = invoke(url, *args)
    assert result.exit_code == 0, result.output
    return result.stdout


def as_json(url: str, *args: str) -> list[dict[str, Any]]:
    """A report's JSON output, decoded."""
    decoded: list[dict[str, Any]] = json.loads(ok(url, *args, "--format", "json"))
    return decoded


def iso(moment: float | datetime) -> str:
    """The raw ISO 8601 form of ``at(seconds)`` (or a moment) in CSV and JSON."""
    value = moment if isinstance(moment, datetime) else at(moment)
    return value.isoformat().replace("+00:00", "Z")


def recent_created() -> datetime:
    """When the recent conference was created (a minute before its first poll)."""
    return recent(2) - timedelta(minutes=1)


def conference_rows() -> list[dict[str, Any]]:
    """``report conferences`` for :func:`history`, newest first."""
    def row(provider: str, account: str, conference_id: str, name: str, status: str,
            created: str, completed: str | None = None, duration: float | None = None,
            end_reason: str | None = None, peak: int = 1, members: int = 1,
            gone: bool = False) -> dict[str, Any]:
        return {"provider": provider, "account": account, "conference_id": conference_id,
                "name": name, "status": status, "created_at": created,
                "completed_at": completed, "duration_seconds": duration,
                "end_reason": end_reason, "peak_member_count": peak, "member_count": members,
                "gone": gone}

    return [
        row("telnyx", "telnyx-main", "conf-recent", "standup", "in_progress",
            iso(recent_created())),
        row("telnyx", "telnyx-eu", "conf-open", "standup", "in_progress", iso(290)),
        row("telnyx", "telnyx-main", "conf-vanish", "standup", "in_progress", iso(195),
            gone=True),
        # Telnyx: completed at the updated_at of the completing poll; 178 - (-60).
        row("telnyx", "telnyx-main", "conf-standup", "standup", "completed", iso(-60),
            iso(178), 238.0, "all_left", peak=2, members=2),
        # Bandwidth: completedTime; no end reason, ever. 118 - (-100).
        row("bandwidth", "bandwidth-main", "conf-bw-1", "daily", "completed", iso(-100),
            iso(118), 218.0, peak=2, members=2),
    ]


def transition_rows() -> list[dict[str, Any]]:
    """``report transitions`` for :func:`history`, newest first."""
    def row(observed: float | datetime, provider: str, account: str, conference_id: str,
            seq: int, from_status: str | None, to_status: str, end_reason: str | None = None,
            previous: float | datetime | None = None,
            changed: float | datetime | None = None) -> dict[str, Any]:
        return {"observed_at": iso(observed), "provider": provider, "account": account,
                "conference_id": conference_id, "seq": seq, "from_status": from_status,
                "to_status": to_status, "end_reason": end_reason,
                "previous_observed_at": None if previous is None else iso(previous),
                "provider_changed_at": None if changed is None else iso(changed)}

    tm, bw = ("telnyx", "telnyx-main"), ("bandwidth", "bandwidth-main")
    return [
        row(recent(1), *tm, "conf-recent", 2, "init", "in_progress", previous=recent(2)),
        row(recent(2), *tm, "conf-recent", 1, None, "init", changed=recent_created()),
        row(300, "telnyx", "telnyx-eu", "conf-open", 1, None, "in_progress"),
        row(200, *tm, "conf-vanish", 1, None, "in_progress"),
        row(180, *tm, "conf-standup", 2, "in_progress", "completed", "all_left", 120, 178),
        row(120, *bw, "conf-bw-1", 2, "in_progress", "completed", previous=80, changed=118),
        row(0, *bw, "conf-bw-1", 1, None, "in_progress"),
        row(0, *tm, "conf-standup", 1, None, "in_progress"),
    ]


def member_rows() -> list[dict[str, Any]]:
    """``report members`` for :func:`history`, latest stay first."""
    def row(provider: str, account: str, conference_id: str, member_id: str,
            joined: float | datetime, left: float | None = None,
            duration: float | None = None, times_muted: int = 0, seconds_muted: float = 0.0,
            times_held: int = 0, seconds_held: float = 0.0) -> dict[str, Any]:
        # Telnyx gives join and leave times ("provider"); Bandwidth none: the polls' clock.
        telnyx = provider == "telnyx"
        left_source = None if left is None else "provider" if telnyx else "disappeared"
        return {"provider": provider, "account": account, "conference_id": conference_id,
                "member_id": member_id, "stay": 1, "joined_at": iso(joined),
                "joined_at_source": "provider" if telnyx else "observed",
                "left_at": None if left is None else iso(left), "left_at_source": left_source,
                "duration_seconds": duration,
                "present": left is None, "times_muted": times_muted,
                "seconds_muted": seconds_muted, "times_held": times_held,
                "seconds_held": seconds_held}

    tm, bw = ("telnyx", "telnyx-main"), ("bandwidth", "bandwidth-main")
    return [
        row(*tm, "conf-recent", "z1", recent(1.5)),
        # Joined muted at 295, unmuted at 355 (Telnyx updated_at).
        row("telnyx", "telnyx-eu", "conf-open", "o1", 295, times_muted=1, seconds_muted=60.0),
        row(*tm, "conf-vanish", "v1", 196),
        # Bandwidth reports no member times: poller's clock. c1 disappeared at 120.
        row(*bw, "conf-bw-1", "c1", 0, 120, 120.0, times_held=1, seconds_held=40.0),
        row(*bw, "conf-bw-1", "c2", 0, 80, 80.0, times_muted=1, seconds_muted=80.0),
        row(*tm, "conf-standup", "p2", -40, 115, 155.0, times_muted=1, seconds_muted=155.0),
        row(*tm, "conf-standup", "p1", -50, 176, 226.0, times_muted=1, seconds_muted=60.0),
    ]


def summary_rows() -> list[dict[str, Any]]:
    """``report summary`` for :func:`history`."""
    def row(section: str, name: str, count: int, avg: float | None = None,
            longest: float | None = None) -> dict[str, Any]:
        return {"section": section, "name": name, "count": count, "avg_seconds": avg,
                "max_seconds": longest}

    return [
        row("conferences", "total", 5, 228.0, 238.0),
        row("conferences", "still_open", 2),
        row("conferences", "vanished", 1),
        row("status", "in_progress", 3),
        row("status", "completed", 2, 228.0, 238.0),
        row("end_reason", "(not reported)", 1, 218.0, 218.0),
        row("end_reason", "all_left", 1, 238.0, 238.0),
        row("members", "stays", 7, 145.25, 226.0),
        row("members", "members", 7),
        row("members", "present", 3),
        row("transitions", "total", 8),
        row("transitions", "(new) → in_progress", 4),
        row("transitions", "in_progress → completed", 2),
        row("transitions", "(new) → init", 1),
        row("transitions", "init → in_progress", 1),
        row("poll_errors", "total", 4),
        row("poll_errors", "not_found", 2),
        row("poll_errors", "rate_limited", 1),
        row("poll_errors", "timeout", 1),
    ]


def t(moment: float | datetime) -> str:
    """A moment as table output shows it."""
    value = moment if isinstance(moment, datetime) else at(moment)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def csv_cell(value: Any) -> str:
    """A raw value as the CSV output writes it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def csv_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    """Expected rows as CSV lines, header first."""
    return [list(rows[0]), *([csv_cell(v) for v in row.values()] for row in rows)]


def read_csv(url: str, *args: str) -> list[list[str]]:
    """A report's CSV output, split into cells."""
    return list(csv.reader(io.StringIO(ok(url, *args, "--format", "csv"))))


def where(rows: list[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
    """The rows whose columns equal ``match``."""
    return [row for row in rows if all(row[k] == v for k, v in match.items())]


# --- Each report, each format ----------------------------------------------------------------

def test_conferences_json(recorded: str) -> None:
    """conferences: one object per conference, newest first, ISO times and float seconds."""
    assert as_json(recorded, "conferences") == conference_rows()


def test_conferences_table(recorded: str) -> None:
    """conferences: aligned columns, times to the second, durations humanised, gone marked."""
    assert ok(recorded, "conferences") == f"""\
provider   account         conference    name     status       created               completed             duration  end reason  peak  members  gone
---------  --------------  ------------  -------  -----------  --------------------  --------------------  --------  ----------  ----  -------  ----
telnyx     telnyx-main     conf-recent   standup  in_progress  {t(recent_created())}                                                 1        1
telnyx     telnyx-eu       conf-open     standup  in_progress  2025-03-01T12:04:50Z                                                 1        1
telnyx     telnyx-main     conf-vanish   standup  in_progress  2025-03-01T12:03:15Z                                                 1        1  yes
telnyx     telnyx-main     conf-standup  standup  completed    2025-03-01T11:59:00Z  2025-03-01T12:02:58Z     3m58s  all_left       2        2
bandwidth  bandwidth-main  conf-bw-1     daily    completed    2025-03-01T11:58:20Z  2025-03-01T12:01:58Z     3m38s                 2        2
"""  # noqa: E501


def test_conferences_csv(recorded: str) -> None:
    """conferences: a header row, then raw values (seconds as numbers, ISO 8601 times)."""
    assert ok(recorded, "conferences", "--format", "csv", "--provider", "bandwidth") == (
        "provider,account,conference_id,name,status,created_at,completed_at,duration_seconds,"
        "end_reason,peak_member_count,member_count,gone\n"
        "bandwidth,bandwidth-main,conf-bw-1,daily,completed,2025-03-01T11:58:20Z,"
        "2025-03-01T12:01:58Z,218.0,,2,2,false\n"
    )
    assert read_csv(recorded, "conferences") == csv_rows(conference_rows())


def test_transitions_json(recorded: str) -> None:
    """transitions: one object per status change with its bracket, newest first."""
    assert as_json(recorded, "transitions") == transition_rows()


def test_transitions_table(recorded: str) -> None:
    """transitions: from → to, end reason, and the bracket the change happened within."""
    assert ok(recorded, "transitions") == f"""\
when                  provider   account         conference    change                   end reason   bracket
--------------------  ---------  --------------  ------------  -----------------------  ----------  --------
{t(recent(1))}  telnyx     telnyx-main     conf-recent   init → in_progress                   1h00m00s
{t(recent(2))}  telnyx     telnyx-main     conf-recent   (new) → init
2025-03-01T12:05:00Z  telnyx     telnyx-eu       conf-open     (new) → in_progress
2025-03-01T12:03:20Z  telnyx     telnyx-main     conf-vanish   (new) → in_progress
2025-03-01T12:03:00Z  telnyx     telnyx-main     conf-standup  in_progress → completed  all_left       1m00s
2025-03-01T12:02:00Z  bandwidth  bandwidth-main  conf-bw-1     in_progress → completed                   40s
2025-03-01T12:00:00Z  bandwidth  bandwidth-main  conf-bw-1     (new) → in_progress
2025-03-01T12:00:00Z  telnyx     telnyx-main     conf-standup  (new) → in_progress
"""  # noqa: E501


def test_transitions_csv(recorded: str) -> None:
    """transitions: CSV carries every column of the JSON, as text."""
    assert read_csv(recorded, "transitions") == csv_rows(transition_rows())


def test_members_json(recorded: str) -> None:
    """members: one object per stay with its mute and hold times, latest first."""
    assert as_json(recorded, "members") == member_rows()


def test_members_table(recorded: str) -> None:
    """members: joined, left, duration, and how often and how long muted or held."""
    assert ok(recorded, "members") == f"""\
provider   account         conference    member  stay  joined                left                  exact  duration  mutes  muted  holds  held
---------  --------------  ------------  ------  ----  --------------------  --------------------  -----  --------  -----  -----  -----  ----
telnyx     telnyx-main     conf-recent   z1         1  {t(recent(1.5))}                        both                 0     0s      0    0s
telnyx     telnyx-eu       conf-open     o1         1  2025-03-01T12:04:55Z                        both                 1  1m00s      0    0s
telnyx     telnyx-main     conf-vanish   v1         1  2025-03-01T12:03:16Z                        both                 0     0s      0    0s
bandwidth  bandwidth-main  conf-bw-1     c1         1  2025-03-01T12:00:00Z  2025-03-01T12:02:00Z  none      2m00s      0     0s      1   40s
bandwidth  bandwidth-main  conf-bw-1     c2         1  2025-03-01T12:00:00Z  2025-03-01T12:01:20Z  none      1m20s      1  1m20s      0    0s
telnyx     telnyx-main     conf-standup  p2         1  2025-03-01T11:59:20Z  2025-03-01T12:01:55Z  both      2m35s      1  2m35s      0    0s
telnyx     telnyx-main     conf-standup  p1         1  2025-03-01T11:59:10Z  2025-03-01T12:02:56Z  both      3m46s      1  1m00s      0    0s
"""  # noqa: E501


def test_members_csv(recorded: str) -> None:
    """members: CSV booleans are true/false, open stays have empty left_at and duration."""
    assert ok(recorded, "members", "--format", "csv", "--account", "telnyx-eu") == (
        "provider,account,conference_id,member_id,stay,joined_at,joined_at_source,left_at,"
        "left_at_source,duration_seconds,present,times_muted,seconds_muted,times_held,"
        "seconds_held\n"
        "telnyx,telnyx-eu,conf-open,o1,1,2025-03-01T12:04:55Z,provider,,,,true,1,60.0,0,0.0\n"
    )
    assert read_csv(recorded, "members") == csv_rows(member_rows())


def test_summary_json(recorded: str) -> None:
    """summary: fixed sections of (section, name, count, avg, max), breakdowns by count."""
    assert as_json(recorded, "summary") == summary_rows()


def test_summary_table(recorded: str) -> None:
    """summary: one compact table, each section named once."""
    assert ok(recorded, "summary") == """\
section      name                     count    avg    max
-----------  -----------------------  -----  -----  -----
conferences  total                        5  3m48s  3m58s
             still_open                   2
             vanished                     1
status       in_progress                  3
             completed                    2  3m48s  3m58s
end_reason   (not reported)               1  3m38s  3m38s
             all_left                     1  3m58s  3m58s
members      stays                        7  2m25s  3m46s
             members                      7
             present                      3
transitions  total                        8
             (new) → in_progress          4
             in_progress → completed      2
             (new) → init                 1
             init → in_progress           1
poll_errors  total                        4
             not_found                    2
             rate_limited                 1
             timeout                      1
"""


def test_summary_csv(recorded: str) -> None:
    """summary: the same rows as CSV, empty cells where a duration does not apply."""
    assert read_csv(recorded, "summary") == csv_rows(summary_rows())


# --- Filters ---------------------------------------------------------------------------------

@pytest.mark.parametrize("since", ["2025-03-01T12:03", "2025-03-01 13:03+01:00"])
def test_since_moment(recorded: str, since: str) -> None:
    """--since keeps conferences created, transitions observed and stays begun from then on."""
    assert as_json(recorded, "conferences", "--since", since) == conference_rows()[:3]
    assert as_json(recorded, "transitions", "--since", since) == transition_rows()[:5]
    assert as_json(recorded, "members", "--since", since) == member_rows()[:3]
    errors = where(as_json(recorded, "summary", "--since", since), section="poll_errors")
    assert [(row["name"], row["count"]) for row in errors] == [
        ("total", 3), ("not_found", 2), ("rate_limited", 1)]


def test_since_date(recorded: str) -> None:
    """--since with a date starts at midnight UTC of that day."""
    assert as_json(recorded, "conferences", "--since", "2025-03-02") == conference_rows()[:1]


def test_since_relative(recorded: str) -> None:
    """--since 100m counts back from now: only the recent conference's latest rows."""
    assert as_json(recorded, "conferences", "--since", "3h") == conference_rows()[:1]
    assert as_json(recorded, "transitions", "--since", "100m") == transition_rows()[:1]
    assert as_json(recorded, "members", "--since", "100m") == member_rows()[:1]
    assert as_json(recorded, "members", "--since", "1h") == []


def test_provider_filter(recorded: str) -> None:
    """--provider keeps one provider's rows in every report."""
    assert as_json(recorded, "conferences", "--provider", "bandwidth") == where(
        conference_rows(), provider="bandwidth")
    assert as_json(recorded, "transitions", "--provider", "bandwidth") == where(
        transition_rows(), provider="bandwidth")
    assert as_json(recorded, "members", "--provider", "telnyx") == where(
        member_rows(), provider="telnyx")
    summary = as_json(recorded, "summary", "--provider", "bandwidth")
    assert [(r["section"], r["name"], r["count"]) for r in summary] == [
        ("conferences", "total", 1), ("conferences", "still_open", 0),
        ("conferences", "vanished", 0), ("status", "completed", 1),
        ("end_reason", "(not reported)", 1), ("members", "stays", 2),
        ("members", "members", 2), ("members", "present", 0), ("transitions", "total", 2),
        ("transitions", "(new) → in_progress", 1), ("transitions", "in_progress → completed", 1),
        ("poll_errors", "total", 1), ("poll_errors", "timeout", 1),
    ]


def test_account_filter(recorded: str) -> None:
    """--account keeps one account's rows in every report."""
    assert as_json(recorded, "conferences", "--account", "telnyx-eu") == where(
        conference_rows(), account="telnyx-eu")
    assert as_json(recorded, "transitions", "--account", "telnyx-eu") == where(
        transition_rows(), account="telnyx-eu")
    assert as_json(recorded, "members", "--account", "telnyx-main") == where(
        member_rows(), account="telnyx-main")
    errors = where(as_json(recorded, "summary", "--account", "telnyx-eu"), section="poll_errors")
    assert [(row["name"], row["count"]) for row in errors] == [("total", 1), ("rate_limited", 1)]


def test_filters_combine(recorded: str) -> None:
    """--provider, --account and --since together keep only rows matching all three."""
    rows = as_json(recorded, "transitions", "--provider", "telnyx", "--account", "telnyx-main",
                   "--since", "2025-03-01T12:01")
    assert rows == where(transition_rows()[:5], account="telnyx-main")
    assert as_json(recorded, "conferences", "--provider", "bandwidth",
                   "--account", "telnyx-main") == []


@pytest.mark.parametrize(
    "filters",
    [[], ["--account", "bandwidth-main"], ["--provider", "telnyx", "--since", "2025-03-01T12:01"]],
)
def test_summary_counts_what_the_reports_list(recorded: str, filters: list[str]) -> None:
    """Each summary total is the number of rows the matching report lists, for any filter."""
    totals = {(r["section"], r["name"]): r["count"]
              for r in as_json(recorded, "summary", *filters)}
    conferences = as_json(recorded, "conferences", *filters)
    stays = as_json(recorded, "members", *filters)
    assert totals["conferences", "total"] == len(conferences)
    assert totals["members", "stays"] == len(stays)
    assert totals["members", "present"] == len(where(stays, present=True))
    assert totals["transitions", "total"] == len(as_json(recorded, "transitions", *filters))


def test_limit_json_and_notice(recorded: str) -> None:
    """--limit N keeps the first N rows and says on stderr that more exist."""
    result = invoke(recorded, "conferences", "--format", "json", "--limit", "2")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == conference_rows()[:2]
    assert result.stderr == "(only the first 2 rows; --limit 0 shows all)\n"
    exact = invoke(recorded, "conferences", "--format", "json", "--limit", "5")
    assert len(json.loads(exact.stdout)) == 5
    assert exact.stderr == ""


def test_limit_table(recorded: str) -> None:
    """In a table --limit 1 shows one row; --limit 0 shows them all."""
    one = invoke(recorded, "members", "--limit", "1")
    assert [line.split() for line in one.stdout.splitlines()[2:]] == [
        ok(recorded, "members").splitlines()[2].split()]
    assert "--limit 0 shows all" in one.stderr
    assert len(ok(recorded, "transitions", "--limit", "0").splitlines()) == 2 + 8


def test_limit_summary_caps_each_breakdown(recorded: str) -> None:
    """In the summary --limit caps each breakdown, never the fixed rows."""
    result = invoke(recorded, "summary", "--format", "json", "--limit", "1")
    assert [(r["section"], r["name"]) for r in json.loads(result.stdout)] == [
        ("conferences", "total"), ("conferences", "still_open"), ("conferences", "vanished"),
        ("status", "in_progress"), ("end_reason", "(not reported)"), ("members", "stays"),
        ("members", "members"), ("members", "present"), ("transitions", "total"),
        ("transitions", "(new) → in_progress"), ("poll_errors", "total"),
        ("poll_errors", "not_found"),
    ]
    assert result.stderr == "(only the first 1 rows; --limit 0 shows all)\n"


# --- Empty results and errors ----------------------------------------------------------------

@pytest.mark.parametrize(("name", "message"), [
    ("conferences", "No conferences match.\n"),
    ("transitions", "No status transitions match.\n"),
    ("members", "No member stays match.\n"),
])
def test_empty_results(database_url: str, name: str, message: str) -> None:
    """No rows: a friendly line in a table, [] in JSON, the header alone in CSV."""
    assert ok(database_url, name) == message
    assert ok(database_url, name, "--format", "json") == "[]\n"
    header = ok(database_url, name, "--format", "csv")
    assert header.count("\n") == 1
    assert header.startswith("provider," if name != "transitions" else "observed_at,")


def test_empty_summary(database_url: str) -> None:
    """On an empty database the summary's fixed rows count zero and have no durations."""
    assert [(r["section"], r["name"], r["count"], r["avg_seconds"])
            for r in as_json(database_url, "summary")] == [
        ("conferences", "total", 0, None), ("conferences", "still_open", 0, None),
        ("conferences", "vanished", 0, None), ("members", "stays", 0, None),
        ("members", "members", 0, None), ("members", "present", 0, None),
        ("transitions", "total", 0, None), ("poll_errors", "total", 0, None),
    ]


@pytest.mark.parametrize("since", ["yesterday", "24x", "-5h", "2025-13-01", ""])
def test_bad_since_is_a_usage_error(since: str) -> None:
    """An unreadable --since exits 2 naming the option, before touching any database."""
    result = invoke("sqlite:///never-opened.db", "conferences", "--since", since)
    assert result.exit_code == 2
    assert "Invalid value for '--since'" in result.stderr
    assert not Path("never-opened.db").exists()


def test_missing_sqlite_file(tmp_path: Path) -> None:
    """A SQLite file that does not exist is an error (exit 1) and is not created."""
    path = tmp_path / "nowhere.db"
    result = invoke(f"sqlite:///{path}", "summary")
    assert result.exit_code == 1
    assert result.stderr == (f"Error: no database at {path}: create it with `poller db "
                             "upgrade`, or name another with --database-url\n")
    assert not path.exists()


def test_unmigrated_database(empty_database_url: str) -> None:
    """A database never migrated is an error (exit 1) that says to run poller db upgrade."""
    database = make_url(empty_database_url)
    if database.get_backend_name() == "sqlite":
        Path(str(database.database)).touch()  # the file exists, with no tables
    result = invoke(empty_database_url, "conferences")
    assert result.exit_code == 1
    assert result.stderr == ("Error: the database is not migrated and has no reporting views: "
                             "run `poller db upgrade` first\n")


def test_schema_without_views(empty_database_url: str) -> None:
    """A database migrated only to 0001_initial names its revision and says to upgrade."""
    migrate.upgrade(empty_database_url, "0001_initial")
    result = invoke(empty_database_url, "transitions")
    assert result.exit_code == 1
    assert "at schema revision 0001_initial and has no reporting views" in result.stderr


def test_database_url_from_environment(recorded: str) -> None:
    """Without --database-url the report reads the configured database ($POLLER_DATABASE_URL)."""
    result = invoke(None, "conferences", "--format", "json",
                    env={"POLLER_DATABASE_URL": recorded})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == conference_rows()


# --- Beside a running daemon -----------------------------------------------------------------

def test_report_does_not_wait_for_a_writer(recorded: str) -> None:
    """A report runs while another connection holds an open write transaction."""
    engine = make_engine(recorded)
    try:
        with engine.begin() as writer:  # SQLite: BEGIN IMMEDIATE, the write lock
            writer.execute(update(PollTarget).values(consecutive_failures=7))
            started = time.monotonic()
            assert len(as_json(recorded, "summary")) == len(summary_rows())
            assert time.monotonic() - started < 5  # the busy timeout is 10 s
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_report_transaction_is_read_only(postgres_url: str) -> None:
    """On PostgreSQL a report's transaction refuses writes (SQLite has none: see the writer
    test)."""
    engine = make_engine(postgres_url)
    try:
        with read_only(engine) as conn:
            assert conn.execute(text("SHOW transaction_read_only")).scalar_one() == "on"
    finally:
        engine.dispose()


# --- The documentation ------------------------------------------------------------------------

DOCS = Path(__file__).resolve().parents[1] / "docs" / "reports.md"
EXAMPLE = re.compile(r"```console\n\$ poller report (.*?)\n(.*?)```", re.DOTALL)


def test_documented_examples(documented: str) -> None:
    """Every example in docs/reports.md prints exactly what the page shows."""
    examples = EXAMPLE.findall(DOCS.read_text(encoding="utf-8"))
    assert len(examples) >= 4
    for command, shown in examples:
        result = invoke(documented, *shlex.split(command))
        assert (command, result.output) == (command, shown)


# --- The installed command -------------------------------------------------------------------

POLLER = str(Path(sys.executable).with_name("poller"))


@pytest.fixture(scope="module")
def installed_poller() -> str:
    """The installed ``poller`` executable."""
    return POLLER


def test_installed_poller_report(installed_poller: str, recorded: str) -> None:
    """The installed ``poller report`` prints the rows, and exits 2 on a bad --since."""
    env = {**os.environ, "POLLER_DATABASE_URL": recorded}
    result = subprocess.run([installed_poller, "report", "members", "--format", "json"],
                            capture_output=True, text=True, timeout=60, env=env, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == member_rows()
    bad = subprocess.run([installed_poller, "report", "summary", "--since", "soon"],
                         capture_output=True, text=True, timeout=60, env=env, check=False)
    assert bad.returncode == 2
    assert "Invalid value for '--since'" in bad.stderr


# --- Parsing and formatting ------------------------------------------------------------------

NOON = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("value", "expected"), [
    ("90s", NOON - timedelta(seconds=90)),
    ("30m", NOON - timedelta(minutes=30)),
    ("24h", NOON - timedelta(hours=24)),
    ("1.5h", NOON - timedelta(minutes=90)),
    ("7d", NOON - timedelta(days=7)),
    ("2w", NOON - timedelta(days=14)),
    ("2025-02-27", datetime(2025, 2, 27, tzinfo=UTC)),
    ("2025-02-27T08:30", datetime(2025, 2, 27, 8, 30, tzinfo=UTC)),
    ("2025-02-27T08:30:15Z", datetime(2025, 2, 27, 8, 30, 15, tzinfo=UTC)),
    ("2025-02-27T09:30+01:00", datetime(2025, 2, 27, 8, 30, tzinfo=UTC)),
])
def test_parse_since(value: str, expected: datetime) -> None:
    """Relative ages count back from now; ISO moments without an offset are UTC."""
    parsed = parse_since(value, now=NOON)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(("seconds", "expected"), [
    (0, "0s"), (0.4, "0s"), (45, "45s"), (59.6, "1m00s"), (725, "12m05s"),
    (3_723, "1h02m03s"), (183_845, "2d03h04m05s"), (-5, "-5s"),
])
def test_format_duration(seconds: float, expected: str) -> None:
    """Durations read as 45s, 12m05s, 1h02m03s, 2d03h04m05s."""
    assert format_duration(seconds) == expected


def test_json_and_csv_round_float_noise() -> None:
    """An SQL ``AVG`` of whole seconds can be a float with noise (184 / 3): JSON and CSV show
    it to the millisecond; whole numbers, counts and absent values are left as they are."""
    report = Report(("name", "count", "avg_seconds", "max_seconds"), [
        {"name": "stays", "count": 3, "avg_seconds": 184 / 3, "max_seconds": 120.0},
        {"name": "members", "count": 3, "avg_seconds": None, "max_seconds": 0.1 + 0.2},
    ])
    assert json.loads(render_json(report)) == [
        {"name": "stays", "count": 3, "avg_seconds": 61.333, "max_seconds": 120.0},
        {"name": "members", "count": 3, "avg_seconds": None, "max_seconds": 0.3},
    ]
    assert "61.333333" not in render_json(report)
    assert render_csv(report).splitlines() == [
        "name,count,avg_seconds,max_seconds", "stays,3,61.333,120.0", "members,3,,0.3"]
