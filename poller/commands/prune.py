"""``poller prune``: apply the retention settings to the history (see ``poller.store.retention``).

Safe to run while the daemon is running (it works in short batches) and from cron::

    poller prune --poll-error-days 30 --raw-payload-days 90
"""

from __future__ import annotations

import click
from sqlalchemy import pool

from poller.commands import DAYS, CliState, pass_state
from poller.model import utc_now
from poller.store.database import make_engine
from poller.store.retention import DEFAULT_BATCH_SIZE
from poller.store.retention import prune as prune_history

DEFAULT_POLL_ERROR_DAYS = 30.0


@click.command()
@click.option(
    "--poll-error-days",
    type=DAYS,
    default=DEFAULT_POLL_ERROR_DAYS,
    show_default=True,
    help="Delete poll_error rows older than this many days.",
)
@click.option(
    "--raw-payload-days",
    type=DAYS,
    default=None,
    help="Also clear the raw provider JSON of snapshots superseded more than this many days "
    "ago (normalised history is kept). Default: keep raw payloads forever.",
)
@click.option(
    "--webhook-event-days",
    type=DAYS,
    default=None,
    help="Also delete provider events (webhook_event) received more than this many days ago "
    "that have an outcome (pending ones are kept). Default: keep them.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Rows changed per transaction.",
)
@pass_state
def prune(
    state: CliState,
    poll_error_days: float,
    raw_payload_days: float | None,
    webhook_event_days: float | None,
    batch_size: int,
) -> None:
    """Delete old poll errors and, optionally, old raw provider payloads."""
    engine = make_engine(state.database_url(), poolclass=pool.NullPool)
    try:
        stats = prune_history(
            engine,
            poll_error_days=poll_error_days,
            raw_payload_days=raw_payload_days,
            now=utc_now(),
            batch_size=batch_size,
            webhook_event_days=webhook_event_days,
        )
    finally:
        engine.dispose()
    click.echo(
        f"deleted {stats.poll_errors_deleted} poll_error rows older than "
        f"{stats.poll_error_cutoff.isoformat(timespec='seconds')}"
    )
    if webhook_event_days is not None:
        click.echo(f"deleted {stats.webhook_events_deleted} provider events received more than "
                   f"{webhook_event_days:g} days ago")
    if stats.raw_payload_cutoff is None:
        click.echo("raw payloads kept (no --raw-payload-days)")
    else:
        click.echo(
            f"cleared {stats.raw_payloads_cleared} raw payloads of snapshots closed before "
            f"{stats.raw_payload_cutoff.isoformat(timespec='seconds')}"
        )
