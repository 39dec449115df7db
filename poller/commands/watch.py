"""``poller watch``: poll conferences that are not in ``config.toml`` (see ``docs/discovery.md``).

Examples::

    poller watch add telnyx telnyx-main 3fa85f64-5717-4562-b3fc-2c963f66afa6 --region Europe
    poller watch add bandwidth bandwidth-main conf-fe23a767-a75a5b77-20c5-4cca-b581-cbbf0776eca9
    poller watch list --source cli
    poller watch remove telnyx-main 3fa85f64-5717-4562-b3fc-2c963f66afa6

The rows go straight into ``poll_target`` (``source = 'cli'``): a running ``poller run`` polls
them at its next tick, with no reload and no restart, and config syncs never retire them. The
account must be one of the config's accounts, of that provider (the daemon polls only those).
Exit codes: 0 done (or nothing to do), 1 the database refused or the target is not there,
2 bad arguments.

``watch add`` writes a target for the daemon, so like ``poller once`` and ``poller run`` it
creates and migrates a missing SQLite file (``[database] auto_migrate``); ``watch list`` and
``watch remove`` only read or retire what is there, so like ``poller report`` and ``poller
status`` they refuse a SQLite file that does not exist (exit 1) instead of creating an empty
one.
"""

from __future__ import annotations

import json

import click

from poller.commands import CliState, pass_state
from poller.config import TELNYX_REGIONS, Config, load_config
from poller.errors import ConfigError, InvalidConferenceId, NotWatched
from poller.model import Provider, TargetKey, path_segment, utc_now
from poller.reports.tables import raw_value, render_table, text_column, time_column
from poller.store.bootstrap import open_existing, open_migrated
from poller.store.watchlist import WatchOutcome, unwatch, watch, watched

SOURCES = ("config", "cli", "discovered")


def _config(state: CliState) -> Config:
    return load_config(state.config_path)


def _check_account(config: Config, provider: Provider, account: str) -> None:
    try:
        configured = config.account(account)
    except KeyError:
        names = ", ".join(repr(a.name) for a in config.accounts) or "none"
        raise ConfigError(f"account {account!r} is not in the config (configured: {names}); "
                          "the daemon polls only configured accounts", key="account") from None
    if configured.kind is not provider:
        raise ConfigError(f"account {account!r} is a {configured.kind.value} account, "
                          f"not {provider.value}", key="provider")


def _conference_id(value: str) -> str:
    if value != value.strip():
        raise click.BadParameter("has leading or trailing whitespace")
    try:
        path_segment(value)
    except InvalidConferenceId as error:
        raise click.BadParameter(str(error)) from None
    return value


@click.group("watch")
def watch_group() -> None:
    """Watch conferences that are not in config.toml (poll_target rows, source 'cli')."""


@watch_group.command("add")
@click.argument("provider", type=click.Choice([p.value for p in Provider]))
@click.argument("account")
@click.argument("conference_id", callback=lambda _c, _p, v: _conference_id(v))
@click.option("--region", type=click.Choice(TELNYX_REGIONS),
              help="Telnyx data region of the conference (default: US).")
@pass_state
def add(state: CliState, provider: str, account: str, conference_id: str,
        region: str | None) -> None:
    """Poll a conference from the daemon's next tick on (no reload needed)."""
    kind = Provider(provider)
    if region is not None and kind is not Provider.TELNYX:
        raise click.BadParameter("region is only for Telnyx conferences",
                                 param_hint="'--region'")
    config = _config(state)
    _check_account(config, kind, account)
    engine = open_migrated(config.database)
    try:
        target = TargetKey(kind, account, conference_id, None if region == "US" else region)
        result = watch(engine, target, utc_now())
    finally:
        engine.dispose()
    where = f"{account} {conference_id}"
    if result.outcome is WatchOutcome.ADDED:
        click.echo(f"watching {where} (source cli): polled at the daemon's next tick")
    elif result.outcome is WatchOutcome.REACTIVATED:
        click.echo(f"watching {where} again (was retired {result.retired_reason}; "
                   "now source cli, due now)")
    elif result.outcome is WatchOutcome.OTHER_PROVIDER:
        raise ConfigError(f"{where} is already a target of another provider", key="provider")
    else:
        click.echo(f"already watching {where} (source {result.source})")


@watch_group.command("remove")
@click.argument("account")
@click.argument("conference_id")
@pass_state
def remove(state: CliState, account: str, conference_id: str) -> None:
    """Stop polling a conference added by `watch add` or by discovery (retired 'removed')."""
    config = _config(state)
    engine = open_existing(config.database)
    try:
        result = unwatch(engine, account, conference_id, utc_now())
    finally:
        engine.dispose()
    where = f"{account} {conference_id}"
    if result.outcome is WatchOutcome.NOT_FOUND:
        raise NotWatched(f"{where} is not a poll target")
    if result.outcome is WatchOutcome.FROM_CONFIG:
        raise NotWatched(f"{where} is listed in the config file: remove it there (and reload "
                         "with SIGHUP); `watch remove` would be undone by the next sync")
    if result.outcome is WatchOutcome.ALREADY:
        click.echo(f"{where} is already retired ({result.retired_reason})")
    else:
        click.echo(f"stopped watching {where} (was source {result.source})")


@watch_group.command("list")
@click.option("--account", help="Only this account's targets.")
@click.option("--source", type=click.Choice(SOURCES), help="Only targets from this source.")
@click.option("--all", "include_retired", is_flag=True, help="Retired targets too.")
@click.option("--format", "output", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@pass_state
def list_targets(state: CliState, account: str | None, source: str | None,
                 include_retired: bool, output: str) -> None:
    """The poll targets (active ones unless --all), whatever their source."""
    config = _config(state)
    engine = open_existing(config.database)
    try:
        rows = watched(engine, account=account, source=source, include_retired=include_retired)
    finally:
        engine.dispose()
    if output == "json":
        objects = [{key: raw_value(value) for key, value in row.items()} for row in rows]
        click.echo(json.dumps(objects, indent=2))
        return
    if not rows:
        click.echo("no targets")
        return
    click.echo(render_table(_COLUMNS, rows), nl=False)


_COLUMNS = [
    text_column("provider"), text_column("account"), text_column("conference_id"),
    text_column("region"), text_column("source"), text_column("state"),
    text_column("retired_reason", "retired"), time_column("next_poll_at", "next_poll_at"),
    text_column("last_outcome"),
]
