"""The ``poller`` sub-commands, one module each; ``poller.cli`` assembles them.

This module holds what they share: the top-level options (:class:`CliState`) and the option
types that check a value before a command runs (a bad one is a usage error, exit 2, never a
traceback): :data:`DATABASE_URL`, :data:`DAYS` and :func:`since_option` (``--since``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from poller import config
from poller.config.fields import MAX_DAYS, parse_database_url
from poller.daemon.logs import LogFormat, configure_logging
from poller.daemon.signals import EarlySignals
from poller.model import utc_now

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


_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800}


def parse_since(value: str, *, now: datetime) -> datetime:
    """The aware UTC moment ``value`` names.

    Accepted: a relative age before ``now`` (``90s``, ``30m``, ``24h``, ``7d``, ``2w``), an ISO
    date (``2025-03-01``, midnight UTC), or an ISO datetime (``2025-03-01T12:00``, ``…Z``,
    ``…+01:00``); a datetime without an offset is UTC. Raises ``ValueError`` otherwise.
    """
    relative = _RELATIVE.match(value)
    if relative:
        amount, unit = relative.groups()
        try:
            return now - timedelta(seconds=float(amount) * _UNIT_SECONDS[unit])
        except (OverflowError, ValueError):
            raise ValueError(f"{value!r} reaches back before the year 1") from None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            f"{value!r} is neither an ISO date or datetime (2025-03-01, 2025-03-01T12:00Z) "
            "nor an age like 30m, 24h, 7d"
        ) from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def since_option(ctx: click.Context, param: click.Parameter, value: str | None
                  ) -> datetime | None:
    """Parse ``--since``; relative ages count back from now. A bad value exits 2."""
    if value is None:
        return None
    try:
        return parse_since(value, now=utc_now())
    except ValueError as error:
        raise click.BadParameter(str(error), ctx=ctx, param=param) from None
