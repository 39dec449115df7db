"""``poller db``: schema migrations (placeholder until the store lands)."""

from __future__ import annotations

import click


@click.group()
def db() -> None:
    """Create and upgrade the database schema."""
