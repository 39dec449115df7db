"""``poller run``: the long-running daemon.

Examples::

    TELNYX_API_KEY=… poller --config config.toml run
    poller --config config.toml --log-format json --log-level info run   # JSON lines on stderr
    kill -HUP $(pidof poller)     # reload config.toml: new conferences polled, dropped ones retired
    kill -TERM $(pidof poller)    # finish in-flight polls (within shutdown_grace_seconds), exit 0

It loads the config and credentials (a bad file or an unset variable: exit 2), refuses to start
when another ``poller run`` holds the same SQLite file (exit 1; several may share a PostgreSQL
database, DESIGN §8), opens the database like ``poller once`` (SQLite is migrated first by
default; a database that does not answer yet is opened once it does, the configured
conferences polled into the spool meanwhile), then ticks until SIGTERM / SIGINT (exit 0), or
until another process takes over its ``[daemon] identity`` (exit 1, so ``Restart=on-failure``
restarts it). See
:mod:`poller.daemon.service` for what happens on each signal.

It first raises its soft limit of open files to the hard limit (at most
:data:`MAX_OPEN_FILES`): with ``concurrency = "auto"`` an account may hold hundreds of
connections at an 80 ms round trip, and a soft limit of 1,024 (systemd's default) would fail
polls, the spool and the database with "too many open files" long before the hard limit.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections.abc import Mapping
from pathlib import Path

import click

from poller.app import App
from poller.commands import CliState, pass_state
from poller.config import (
    Config,
    Credentials,
    load_config,
    resolve_all_credentials,
    resolve_webhook_secrets,
)
from poller.daemon.signals import EarlySignals

MAX_OPEN_FILES = 65536
"""The most open files ``poller run`` raises its soft limit to (never above the hard limit)."""


def raise_open_files_limit() -> tuple[int, int]:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard one (at most ``MAX_OPEN_FILES``); the soft
    limit before and after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = MAX_OPEN_FILES if hard == resource.RLIM_INFINITY else min(hard, MAX_OPEN_FILES)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        return soft, wanted
    return soft, soft


def load_all(config_path: Path | None) -> tuple[Config, Mapping[str, Credentials]]:
    """The validated config and the credentials it names (``ConfigError`` otherwise)."""
    config = load_config(config_path)
    credentials = resolve_all_credentials(config)
    resolve_webhook_secrets(config)  # an unset or malformed one is refused here too
    return config, credentials


@click.command()
@pass_state
def run(state: CliState) -> None:
    """Poll the conferences of config.toml, `poller watch` and discovery until stopped.

    SIGTERM / SIGINT stop it, SIGHUP reloads config.toml. Exits 0 after a graceful stop, 1 when
    the database is unusable, another poller already runs on the same SQLite file, or another
    process took over its [daemon] identity while it ran, 2 on a configuration error (including
    a [daemon] identity that a live daemon holds).
    """
    early = state.early if state.early is not None else EarlySignals().install()
    try:
        state.configure_logging()
        before, after = raise_open_files_limit()
        if after != before:
            logging.getLogger(__name__).info("open files limit raised from %d to %d", before,
                                             after)
        app = App(*load_all(state.config_path))
        with app.open_store(even_if_down=True) as store:
            daemon = app.daemon(store, lambda: load_all(state.config_path))
            asyncio.run(daemon.run(early.received))
    finally:
        early.restore()
