"""``poller simulate``: serve the provider simulator (placeholder until the simulator lands)."""

from __future__ import annotations

import click


@click.command()
@click.option("--port", type=int, default=8765, show_default=True, help="TCP port on 127.0.0.1.")
@click.option("--seed", type=int, default=1, show_default=True, help="Scenario seed.")
def simulate(port: int, seed: int) -> None:
    """Serve a simulator of both providers on 127.0.0.1."""
    raise click.ClickException("not implemented yet")
