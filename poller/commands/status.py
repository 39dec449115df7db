"""``poller status``: the daemons sharing the database, and the targets they are late on.

Examples::

    poller status                        # live daemons, then a line on overdue targets
    poller status --all                  # also daemons stopped or lost (killed, unreachable)
    poller status --overdue              # the overdue targets themselves, most late first
    poller status --format json          # everything, for scripts and monitoring

Each daemon is shown with its identity (``[daemon] identity``), host and pid, its last
heartbeat and how old it is, the targets it holds a lease on now (the polls it is working on),
and the polls it made in the minute before its last heartbeat. A daemon is *live* while its
heartbeat is younger than its lease, *lost* once it is older without a graceful stop (killed,
frozen, cut off: its targets are being taken over), *stopped* after a graceful stop.

A target is *overdue* when it is active and its ``next_poll_at`` passed more than
``--overdue-after`` seconds ago (default: the config's ``polling.interval_seconds``). A few
overdue targets during a takeover are expected; many for long means too few daemons (or
provider rate limits too low) for the targets: see ``docs/scaling.md``.

Formats as for ``poller report``: ``table`` for people, ``csv`` (the daemons, or with
``--overdue`` the overdue targets) and ``json`` (one object with both). It reads in one
read-only transaction, so it is safe beside running daemons.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import cast

import click

from poller.commands import DATABASE_URL, CliState, pass_state
from poller.config import load_config
from poller.errors import StoreUnavailable
from poller.model import utc_now
from poller.reports.tables import (
    duration_column,
    number_column,
    raw_value,
    render_csv,
    render_table,
    text_column,
    time_column,
)
from poller.store import fleet
from poller.store.bootstrap import open_at_head
from poller.store.reports import Report, Value

DAEMON_COLUMNS = ("identity", "host", "pid", "state", "started_at", "heartbeat_at",
                  "heartbeat_age_seconds", "stopped_at", "lease_seconds", "targets_held",
                  "polls_last_minute", "polls_total")
OVERDUE_COLUMNS = ("provider", "account", "conference_id", "next_poll_at", "late_seconds",
                   "lease_owner")

DAEMON_TABLE = [
    text_column("identity"),
    text_column("host"),
    number_column("pid"),
    text_column("state"),
    time_column("started_at", "started"),
    time_column("heartbeat_at", "last heartbeat"),
    duration_column("heartbeat_age_seconds", "age"),
    number_column("targets_held", "targets held"),
    number_column("polls_last_minute", "polls/min"),
    number_column("polls_total", "polls total"),
]
OVERDUE_TABLE = [
    text_column("provider"),
    text_column("account"),
    text_column("conference_id", "conference"),
    time_column("next_poll_at", "due since"),
    duration_column("late_seconds", "late"),
    text_column("lease_owner", "lease owner"),
]


@click.command()
@click.option("--format", "output_format", type=click.Choice(["table", "csv", "json"]),
              default="table", show_default=True, help="Output format.")
@click.option("--all", "include_gone", is_flag=True,
              help="Also show daemons that stopped or were lost (last week's).")
@click.option("--overdue", "list_overdue", is_flag=True,
              help="List the overdue targets instead of the daemons.")
@click.option("--overdue-after", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="A target is overdue this long after its next_poll_at "
                   "(default: polling.interval_seconds).")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True,
              metavar="N", help="At most N overdue targets listed.")
@click.option("--database-url", "database_url", type=DATABASE_URL, default=None, metavar="URL",
              help="Database to read (default: the configured one).")
@pass_state
def status(state: CliState, output_format: str, include_gone: bool, list_overdue: bool,
           overdue_after: float | None, limit: int, database_url: str | None) -> None:
    """Show the daemons polling into the database and the targets that are overdue.

    \b
    Examples:
      poller status
      poller status --all --format json
      poller status --overdue --overdue-after 30
    """
    config = load_config(state.config_path)
    url = database_url or state.database_url()
    threshold = config.polling.interval_seconds if overdue_after is None else overdue_after
    try:
        result = read_status(url, overdue_after_seconds=threshold, include_gone=include_gone,
                             limit=limit)
    except StoreUnavailable as error:
        raise click.ClickException(str(error)) from error
    daemons = Report(DAEMON_COLUMNS, [_row(asdict(d), DAEMON_COLUMNS) for d in result.daemons])
    overdue = Report(OVERDUE_COLUMNS, [_row(asdict(t), OVERDUE_COLUMNS)
                                       for t in result.overdue_targets])
    if output_format == "json":
        click.echo(json.dumps({
            "now": raw_value(result.now),
            "daemons": [{k: raw_value(v) for k, v in row.items()} for row in daemons.rows],
            "targets": {"active": result.active_targets, "overdue": result.overdue,
                        "overdue_after_seconds": result.overdue_after_seconds},
            "overdue_targets": [{k: raw_value(v) for k, v in row.items()}
                                for row in overdue.rows],
        }, indent=2, ensure_ascii=False))
        return
    if output_format == "csv":
        click.echo(render_csv(overdue if list_overdue else daemons), nl=False)
        return
    if list_overdue:
        if overdue.rows:
            click.echo(render_table(OVERDUE_TABLE, overdue.rows), nl=False)
            if result.overdue > len(overdue.rows):
                click.echo(f"(the {len(overdue.rows)} most overdue of {result.overdue}; "
                           "--limit shows more)")
        else:
            click.echo(f"No target is overdue by more than {threshold:g} s.")
        return
    if daemons.rows:
        click.echo(render_table(DAEMON_TABLE, daemons.rows), nl=False)
    else:
        click.echo("No daemon is running." if not include_gone else "No daemon has run.")
    click.echo(f"\n{result.active_targets} active targets, {result.overdue} overdue by more "
               f"than {threshold:g} s" + (" (poller status --overdue lists them)."
                                          if result.overdue else "."))


def read_status(url: str, *, overdue_after_seconds: float, include_gone: bool,
                limit: int) -> fleet.FleetStatus:
    """:func:`poller.store.fleet.fleet_status` on the database at ``url``, which must exist and
    be at the newest schema (``StoreUnavailable`` saying what to do otherwise)."""
    engine = open_at_head(url)
    try:
        return fleet.fleet_status(engine, utc_now(), overdue_after_seconds=overdue_after_seconds,
                                  include_gone=include_gone, limit=limit)
    finally:
        engine.dispose()


def _row(values: dict[str, object], columns: tuple[str, ...]) -> dict[str, Value]:
    return {name: cast(Value, values[name]) for name in columns}
