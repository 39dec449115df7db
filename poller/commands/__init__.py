"""The ``poller`` sub-commands, one module each; ``poller.cli`` assembles them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from poller import config
from poller.daemon.logs import LogFormat, configure_logging


@dataclass(frozen=True, slots=True)
class CliState:
    """What the top-level ``poller`` options hand to every sub-command (as ``ctx.obj``)."""

    config_path: Path | None
    """``--config``, or ``None`` to fall back on ``$POLLER_CONFIG`` / ``./config.toml``."""
    log_level: str = "info"
    """``--log-level``."""
    log_format: LogFormat = "text"
    """``--log-format``: ``text`` for people, ``json`` for one JSON object per line."""

    def database_url(self) -> str:
        """The database URL of the config (``$POLLER_DATABASE_URL`` first)."""
        return config.database_url(self.config_path)

    def configure_logging(self) -> None:
        """Send logs to stderr as ``--log-level`` / ``--log-format`` say (long-running commands;
        one-shot ones print their summaries instead)."""
        configure_logging(self.log_level, self.log_format)


pass_state = click.make_pass_decorator(CliState)
"""Decorator giving a command the ``CliState`` as its first argument."""
