"""The ``poller`` sub-commands, one module each; ``poller.cli`` assembles them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from poller import config


@dataclass(frozen=True, slots=True)
class CliState:
    """What the top-level ``poller`` options hand to every sub-command (as ``ctx.obj``)."""

    config_path: Path | None
    """``--config``, or ``None`` to fall back on ``$POLLER_CONFIG`` / ``./config.toml``."""

    def database_url(self) -> str:
        return config.database_url(self.config_path)


pass_state = click.make_pass_decorator(CliState)
"""Decorator giving a command the ``CliState`` as its first argument."""
