"""``poller db``: create, upgrade, inspect and downgrade the database schema.

Examples::

    poller db upgrade                  # migrate the configured database to the newest schema
    poller db current                  # e.g. "0001_initial (head)"
    poller db downgrade 0001_initial   # step back (``base`` removes every table)

The database is ``$POLLER_DATABASE_URL``, else ``[database] url`` of the config file, else
``sqlite:///conferences.db``; ``--database-url`` overrides all three.
"""

from __future__ import annotations

import click

from poller.commands import DATABASE_URL, CliState, pass_state
from poller.store import migrate

database_url_option = click.option(
    "--database-url",
    "database_url",
    type=DATABASE_URL,
    default=None,
    metavar="URL",
    help="Database to act on (default: the configured one).",
)


def _url(state: CliState, explicit: str | None) -> str:
    return explicit if explicit else state.database_url()


@click.group()
def db() -> None:
    """Create and upgrade the database schema."""


@db.command()
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@database_url_option
@pass_state
def upgrade(state: CliState, revision: str, database_url: str | None) -> None:
    """Migrate the database up to REVISION (the newest schema by default)."""
    url = _url(state, database_url)
    migrate.upgrade(url, revision)
    click.echo(f"database at {migrate.current(url) or 'base'}")


@db.command()
@click.argument("revision")
@database_url_option
@pass_state
def downgrade(state: CliState, revision: str, database_url: str | None) -> None:
    """Migrate the database down to REVISION (``base`` removes every table)."""
    url = _url(state, database_url)
    migrate.downgrade(url, revision)
    click.echo(f"database at {migrate.current(url) or 'base'}")


@db.command()
@database_url_option
@pass_state
def current(state: CliState, database_url: str | None) -> None:
    """Print the database's schema revision and whether it is the newest.

    Exits 1 when the database is not at head, so scripts can check before starting.
    """
    url = _url(state, database_url)
    revision = migrate.require_known(url)
    newest = migrate.head()
    if revision == newest:
        click.echo(f"{revision} (head)")
        return
    click.echo(f"{revision or 'base (empty)'} (not at head; head is {newest})")
    raise click.exceptions.Exit(1)
