"""``poller once``: poll everything that is due, record it, print a summary, exit.

The one-shot ("burst") form of the daemon, for cron jobs, smoke tests and first runs::

    TELNYX_API_KEY=… poller --config config.toml once
    # polled 12: 11 ok (3 unchanged), 1 failed (not_found 1), 0 retired, 2 transitions, …

It syncs the config's conferences into ``poll_target``, runs discovery for the accounts with
``discover = true`` (``poller.discovery``), then runs ticks until no target that
was due when it started is left (a target it reschedules is not polled twice), and exits 0,
or 1 when a poll failed or results could not be recorded. A SQLite database is migrated to the
newest schema first (``[database] auto_migrate``, on by default for SQLite); any other database
must already be at head (``poller db upgrade``). A missing credential variable is a
configuration error (exit 2). Like ``poller run`` it holds the SQLite lock while it works, so it
never races a running daemon on the same file (exit 1 if one runs).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import click
import httpx
from sqlalchemy import Engine

from poller.app import build_clients
from poller.commands import CliState, pass_state
from poller.config import (
    Config,
    Credentials,
    DatabaseSettings,
    load_config,
    resolve_all_credentials,
)
from poller.daemon import SqliteLock
from poller.discovery import Discovery
from poller.errors import StoreUnavailable
from poller.model import utc_now
from poller.providers import Clock
from poller.store import migrate
from poller.store.database import make_engine
from poller.targets import release_all
from poller.tick import Poller, Sleep, TickReport

log = logging.getLogger(__name__)

MAX_TICKS = 10_000
"""A bound on one burst run's ticks (each claims up to a batch of targets)."""


@contextmanager
def exclusive_sqlite(settings: DatabaseSettings) -> Iterator[SqliteLock | None]:
    """Hold the SQLite lock of ``settings`` (if SQLite) for the block (``AlreadyRunning`` if
    another poller holds it); ``None`` for databases several pollers may share."""
    lock = SqliteLock.for_database(settings)
    if lock is None:
        yield None
        return
    lock.acquire()
    try:
        yield lock
    finally:
        lock.release()


def open_database(settings: DatabaseSettings, *, exclusive: bool = False) -> Engine:
    """:func:`open_migrated`, then, when this process holds the SQLite lock (``exclusive``),
    the leases of a poller that died are dropped so its targets are polled again at once."""
    engine = open_migrated(settings)
    if exclusive:
        try:
            released = release_all(engine)
        except BaseException:
            engine.dispose()
            raise
        if released:
            log.warning("released %d leases left by a poller that stopped without releasing "
                        "them (killed?); those targets are polled again now", released)
    return engine


def open_migrated(settings: DatabaseSettings) -> Engine:
    """An engine on the configured database, migrated if allowed, refused if not at head."""
    if settings.auto_migrate:
        migrate.upgrade(settings.url)
    elif not migrate.is_at_head(settings.url):
        revision = migrate.current(settings.url) or "empty"
        raise StoreUnavailable(
            f"database {settings.display_url()} is at schema {revision}, not the newest "
            f"({migrate.head()}): run `poller db upgrade` first (or set "
            f"[database] auto_migrate = true)")
    return make_engine(settings.url)


async def run_once(config: Config, credentials: Mapping[str, Credentials], engine: Engine, *,
                   transport: httpx.AsyncBaseTransport | None = None, clock: Clock = utc_now,
                   sleep: Sleep = asyncio.sleep, discovery: Discovery | None = None
                   ) -> TickReport:
    """Sync the targets and tick until nothing due at the start is left; the summed report.

    ``transport``, ``clock`` and ``sleep`` are the seams tests use (the simulator over
    ``httpx.ASGITransport``, a virtual clock); ``discovery`` keeps the discovery run's report
    (``Discovery.last_report``).
    """
    discovery = discovery if discovery is not None else Discovery()
    clients = build_clients(config, credentials, transport=transport, clock=clock)
    poller = Poller(config, engine, clients, clock=clock, sleep=sleep)
    total = TickReport()
    try:
        poller.sync(clock())
        if any(account.discover for account in config.accounts):
            await discovery.run(poller)
        start = clock()
        for _ in range(MAX_TICKS):
            report = await poller.tick(clock(), due_by=start)
            total.add(report)
            if report.claimed == 0 or report.store_error:
                break
    finally:
        await poller.aclose()
    return total


@click.command()
@pass_state
def once(state: CliState) -> None:
    """Poll every due conference once, record what changed, and exit.

    Exits 0 when every poll worked, 1 when one failed (details in the poll_error table) or a
    discovery listing failed, 2 on a configuration error.
    """
    config = load_config(state.config_path)
    credentials = resolve_all_credentials(config)
    discovery = Discovery()
    with exclusive_sqlite(config.database) as lock:
        engine = open_database(config.database, exclusive=lock is not None)
        try:
            report = asyncio.run(run_once(config, credentials, engine, discovery=discovery))
        finally:
            engine.dispose()
    found = discovery.last_report
    if found is not None:
        click.echo(f"discovery: {found.summary()}")
    click.echo(report.summary())
    if report.failures or report.store_error or (found is not None and found.failed):
        sys.exit(1)
