"""``poller report``: the recorded history as a table, CSV or JSON (see ``docs/reports.md``).

Examples::

    poller report summary --since 24h
    poller report conferences --provider telnyx --since 2025-03-01
    poller report transitions --account telnyx-main --format csv > transitions.csv
    poller report members --since 7d --format json --limit 0
    poller report usage --by hour --since 2025-03-01 --account telnyx-main

The queries live in ``poller.store.reports`` and run in a read-only transaction, so reports are
safe beside a running daemon. This module parses the options and formats the rows:

* ``table`` (the default) for people: aligned columns, times as ISO UTC to the second
  (``2025-03-01T12:00:05Z``), durations humanised (``12m05s``), at most 100 rows by default;
* ``csv``: a header row, then raw values (seconds as numbers, ISO 8601 times, ``true``/``false``);
* ``json``: a list of objects with the same raw values (numbers as numbers, ``null`` for
  "not known").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import click

from poller.commands import DATABASE_URL, CliState, pass_state, since_option
from poller.commands.timeline import timeline
from poller.errors import StoreUnavailable
from poller.model import Provider
from poller.reports.tables import (
    TableColumn,
    duration_column,
    exact_ends,
    flag_column,
    format_duration,
    number_column,
    render_csv,
    render_json,
    render_table,
    text_column,
    time_column,
)
from poller.store import reports
from poller.store.reports import ReportFilter, ReportQuery, Value

DEFAULT_TABLE_LIMIT = 100
"""Rows a table shows unless ``--limit`` says otherwise (CSV and JSON show all)."""

def _transition(row: dict[str, Value]) -> str:
    return f"{row['from_status'] or '(new)'} → {row['to_status']}"


def _bracket(row: dict[str, Value]) -> str:
    before, after = row["previous_observed_at"], row["observed_at"]
    if isinstance(before, datetime) and isinstance(after, datetime):
        return format_duration((after - before).total_seconds())
    return ""


# --- The commands ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ReportSpec:
    """What one report sub-command runs and how its table looks."""

    query: ReportQuery
    table: list[TableColumn]
    empty: str
    """The line a table prints when no row matches."""


CONFERENCES = ReportSpec(reports.conferences, [
    text_column("provider"),
    text_column("account"),
    text_column("conference_id", "conference"),
    text_column("name"),
    text_column("status"),
    time_column("created_at", "created"),
    time_column("completed_at", "completed"),
    duration_column("duration_seconds", "duration"),
    text_column("end_reason", "end reason"),
    number_column("peak_member_count", "peak"),
    number_column("member_count", "members"),
    flag_column("gone", "gone"),
], "No conferences match.")

TRANSITIONS = ReportSpec(reports.transitions, [
    time_column("observed_at", "when"),
    text_column("provider"),
    text_column("account"),
    text_column("conference_id", "conference"),
    TableColumn("change", _transition),
    text_column("end_reason", "end reason"),
    TableColumn("bracket", _bracket, right=True),
], "No status transitions match.")

MEMBERS = ReportSpec(reports.members, [
    text_column("provider"),
    text_column("account"),
    text_column("conference_id", "conference"),
    text_column("member_id", "member"),
    number_column("stay"),
    time_column("joined_at", "joined"),
    time_column("left_at", "left"),
    TableColumn("exact", lambda row: exact_ends(row["joined_at_source"], row["left_at_source"])),
    duration_column("duration_seconds", "duration"),
    number_column("times_muted", "mutes"),
    duration_column("seconds_muted", "muted"),
    number_column("times_held", "holds"),
    duration_column("seconds_held", "held"),
], "No member stays match.")

SUMMARY = ReportSpec(reports.summary, [
    text_column("section", group=True),
    text_column("name"),
    number_column("count"),
    duration_column("avg_seconds", "avg"),
    duration_column("max_seconds", "max"),
], "Nothing recorded.")


def _minutes(key: str, header: str) -> TableColumn:
    """Minutes for people: whole minutes with thousands separators (tenths under 100)."""
    def cell(row: dict[str, Value]) -> str:
        value = row[key]
        if not isinstance(value, int | float):
            return ""
        return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
    return TableColumn(header, cell, right=True)


def usage_spec(by: str) -> ReportSpec:
    """``report usage --by BY`` (``day`` or ``hour``)."""
    return ReportSpec(reports.usage(by), [
        text_column(by),
        text_column("provider"),
        text_column("account"),
        number_column("conferences", "started"),
        number_column("active_conferences", "live"),
        _minutes("conference_minutes", "conf min"),
        _minutes("member_minutes", "member min"),
        number_column("peak_members", "peak"),
        duration_column("median_duration_seconds", "median"),
        duration_column("p95_duration_seconds", "p95"),
    ], "No usage matches.")


def report_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give a report command the ``CliState`` and the options every report takes."""
    options = [
        click.option("--since", callback=since_option, default=None, metavar="WHEN",
                     help="Only rows from this moment on (UTC): 2025-03-01, "
                          "2025-03-01T12:00, or an age such as 30m, 24h, 7d."),
        click.option("--provider", type=click.Choice([p.value for p in Provider]),
                     default=None, help="Only this provider."),
        click.option("--account", default=None, metavar="NAME",
                     help="Only this account (its name in the config file)."),
        click.option("--format", "output_format", type=click.Choice(["table", "csv", "json"]),
                     default="table", show_default=True, help="Output format."),
        click.option("--limit", type=click.IntRange(min=0), default=None, metavar="N",
                     help=f"At most N rows; 0 for all. Default: {DEFAULT_TABLE_LIMIT} for "
                          "table, all for csv and json."),
        click.option("--database-url", "database_url", type=DATABASE_URL, default=None,
                     metavar="URL",
                     help="Database to read (default: the configured one)."),
    ]
    command = pass_state(command)
    for option in reversed(options):
        command = option(command)
    return command


@click.group()
def report() -> None:
    """Report on the recorded history as a table, CSV or JSON.

    \b
    Examples:
      poller report summary --since 24h
      poller report conferences --provider telnyx --since 2025-03-01
      poller report transitions --account telnyx-main --format csv
      poller report members --since 7d --format json --limit 0
      poller report usage --by hour --since 7d
    """


@report.command()
@report_options
def conferences(state: CliState, **options: Any) -> None:
    """One row per conference, newest first (created since --since)."""
    _print_report(state, CONFERENCES, **options)


@report.command()
@report_options
def transitions(state: CliState, **options: Any) -> None:
    """Status transitions, newest first (observed since --since).

    The change happened within BRACKET before WHEN (between the two polls that saw the old and
    the new status); "(new)" marks a conference's first sighting.
    """
    _print_report(state, TRANSITIONS, **options)


@report.command()
@report_options
def members(state: CliState, **options: Any) -> None:
    """One row per member stay, latest first (joined since --since)."""
    _print_report(state, MEMBERS, **options)


@report.command()
@report_options
def summary(state: CliState, **options: Any) -> None:
    """Counts and durations at a glance, one section per topic.

    Conferences by status and end reason, members, transitions and poll errors.

    --limit caps each breakdown (statuses, end reasons, transitions, error kinds).
    """
    _print_report(state, SUMMARY, **options)


@report.command()
@click.option("--by", type=click.Choice(["day", "hour"]), default="day", show_default=True,
              help="One row per UTC day or UTC hour (and provider, account).")
@report_options
def usage(state: CliState, by: str, **options: Any) -> None:
    """Minutes, people and durations per UTC day or hour, per provider and account.

    STARTED: conferences that started in it; LIVE: conferences live at some point of it;
    CONF MIN and MEMBER MIN: conference and member minutes spent in it (a conference over
    midnight counts in both days); PEAK: most members of the account present at once;
    MEDIAN, P95: durations of the completed conferences that started in it.

    --since keeps the days (or hours) from the one holding that moment on.
    """
    _print_report(state, usage_spec(by), **options)


def _print_report(state: CliState, spec: ReportSpec, *, since: datetime | None,
                  provider: str | None, account: str | None, output_format: str,
                  limit: int | None, database_url: str | None) -> None:
    """Run one report and print it in the chosen format."""
    if limit is None:
        limit = DEFAULT_TABLE_LIMIT if output_format == "table" else 0
    filters = ReportFilter(since=since, provider=provider, account=account, limit=limit or None)
    url = database_url or state.database_url()
    try:
        result = reports.run_report(url, spec.query, filters)
    except StoreUnavailable as error:
        # Exit 1 with the message alone, however the command is invoked.
        raise click.ClickException(str(error)) from error
    if output_format == "csv":
        click.echo(render_csv(result), nl=False)
    elif output_format == "json":
        click.echo(render_json(result), nl=False)
    elif result.rows:
        click.echo(render_table(spec.table, result.rows), nl=False)
    else:
        click.echo(spec.empty)
    if result.truncated:
        click.echo(f"(only the first {limit} rows; --limit 0 shows all)", err=True)


report.add_command(timeline)
