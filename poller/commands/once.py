"""``poller once``: poll everything that is due, record it, print a summary, exit.

The one-shot ("burst") form of the daemon, for cron jobs, smoke tests and first runs::

    TELNYX_API_KEY=… poller --config config.toml once
    # polled 12: 11 ok (3 unchanged), 1 failed (not_found 1), 0 retired, 2 transitions, …

It syncs the config's conferences into ``poll_target``, runs discovery for the accounts with
``discover = true`` (``poller.polling.discovery``), then runs ticks until no target that was due
when it started is left (a target it reschedules is not polled twice), and exits 0, or 1 when a
poll failed or results could not be recorded. A SQLite database is migrated to the newest
schema first (``[database] auto_migrate``, on by default for SQLite); any other database must
already be at head (``poller db upgrade``). A missing credential variable is a configuration
error (exit 2). Like ``poller run`` it holds the SQLite lock while it works, so it never races
a running daemon on the same file (exit 1 if one runs).
"""

from __future__ import annotations

import asyncio
import sys

import click

from poller.app import App
from poller.commands import CliState, pass_state
from poller.config import load_config, resolve_all_credentials
from poller.polling.discovery import Discovery
from poller.polling.report import TickReport
from poller.store.gateway import Store


async def run_once(app: App, store: Store, *, discovery: Discovery | None = None
                   ) -> TickReport:
    """Sync the targets, discover, and tick until nothing due at the start is left; the summed
    report. ``discovery`` keeps the discovery run's report (``Discovery.last_report``)."""
    discovery = discovery if discovery is not None else Discovery()
    poller = app.poller(store)
    try:
        await poller.sync()
        if any(account.discover for account in app.config.accounts):
            await discovery.run(poller)
        return await poller.burst()
    finally:
        await poller.aclose()


@click.command()
@pass_state
def once(state: CliState) -> None:
    """Poll every due conference once, record what changed, and exit.

    Exits 0 when every poll worked, 1 when one failed (details in the poll_error table) or a
    discovery listing failed, 2 on a configuration error.
    """
    config = load_config(state.config_path)
    app = App(config, resolve_all_credentials(config))
    discovery = Discovery()
    with app.open_store() as store:
        report = asyncio.run(run_once(app, store, discovery=discovery))
    found = discovery.last_report
    if found is not None:
        click.echo(f"discovery: {found.summary()}")
    click.echo(report.summary())
    if report.failures or report.store_error or (found is not None and found.failed):
        sys.exit(1)
