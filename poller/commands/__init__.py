"""The ``poller`` sub-commands, one module each; ``poller.cli`` assembles them.

This module holds what they share: the top-level options (:class:`CliState`) and the option
types that check a value before a command runs (a bad one is a usage error, exit 2, never a
traceback): :data:`DATABASE_URL` and :data:`DAYS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from poller import config
from poller.config.fields import MAX_DAYS, parse_database_url
from poller.daemon.logs import LogFormat, configure_logging
from poller.daemon.signals import EarlySignals

if TYPE_CHECKING:  # click ≥ 8.2 types its ParamType by the value it converts to
    _TextType = click.ParamType[str]
else:
    _TextType = click.ParamType


class DatabaseUrlType(_TextType):
    """A SQLAlchemy database URL (never echoed back: it may hold a password)."""

    name = "url"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        """``value`` if it parses as a database URL."""
        try:
            parse_database_url(value)
        except (ValueError, TypeError):
            self.fail("is not a database URL (e.g. sqlite:///conferences.db or "
                      "postgresql+psycopg://user@host:5432/dbname)", param, ctx)
        return str(value)


class DaysType(click.FloatRange):
    """A finite number of days from 0 to ``MAX_DAYS`` (``nan`` and ``inf`` refused)."""

    def __init__(self) -> None:
        super().__init__(min=0, max=MAX_DAYS)

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        """The number of days, or a usage error naming the range."""
        days = super().convert(value, param, ctx)
        if not math.isfinite(days):
            self.fail(f"{value!r} is not a number of days from 0 to {MAX_DAYS}", param, ctx)
        return days


DATABASE_URL = DatabaseUrlType()
DAYS = DaysType()


@dataclass(frozen=True, slots=True)
class CliState:
    """What the top-level ``poller`` options hand to every sub-command (as ``ctx.obj``)."""

    config_path: Path | None
    """``--config``, or ``None`` to fall back on ``$POLLER_CONFIG`` / ``./config.toml``."""
    log_level: str = "info"
    """``--log-level``."""
    log_format: LogFormat = "text"
    """``--log-format``: ``text`` for people, ``json`` for one JSON object per line."""
    early: EarlySignals | None = None
    """Signals noted since the process started (``poller.entry``): ``poller run`` hands them
    to the daemon, the other commands get them delivered again once they start."""

    def database_url(self) -> str:
        """The database URL of the config (``$POLLER_DATABASE_URL`` first)."""
        return config.database_url(self.config_path)

    def configure_logging(self) -> None:
        """Send logs to stderr as ``--log-level`` / ``--log-format`` say (long-running commands;
        one-shot ones print their summaries instead)."""
        configure_logging(self.log_level, self.log_format)


pass_state = click.make_pass_decorator(CliState)
"""Decorator giving a command the ``CliState`` as its first argument."""
