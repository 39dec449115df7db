"""Alembic environment for poller: one migration tree for SQLite and PostgreSQL.

The database comes from, in order: a connection handed in as
``config.attributes["connection"]`` (tests and ``poller.store.migrate`` run migrations on an
existing connection), ``config.attributes["db_url"]``, ``alembic -x db_url=...``, and finally
``poller.config.database_url()`` (``POLLER_DATABASE_URL``, else ``config.toml`` ``[database]
url``, else the SQLite default). Migrations run in batch mode (SQLite cannot ALTER most things)
inside one transaction; on PostgreSQL an advisory lock stops two daemons migrating at once.
"""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy import Connection, inspect, pool, text

from poller import config as poller_config
from poller.store.database import make_engine
from poller.store.schema import Base

config = context.config
target_metadata = Base.metadata

MIGRATION_LOCK_ID = 0x706F6C6C  # "poll": pg_advisory_xact_lock key shared by all poller daemons

if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    """The URL to migrate (see the module docstring for the precedence)."""
    explicit = config.attributes.get("db_url") or context.get_x_argument(as_dictionary=True).get(
        "db_url"
    )
    return str(explicit) if explicit else poller_config.database_url()


def _include_object_for(connection: Connection) -> Any:
    """An autogenerate filter ignoring the reporting views (they are views, not models)."""
    view_names: set[str] = set()
    loaded = False

    def include_object(
        obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
    ) -> bool:
        nonlocal loaded
        if not (type_ == "table" and reflected and compare_to is None):
            return True
        if not loaded:  # looked up lazily: inside the migration's own transaction
            view_names.update(inspect(connection).get_view_names())
            loaded = True
        return name not in view_names

    return include_object


def run_migrations_offline() -> None:
    """Emit SQL to stdout (``alembic upgrade head --sql``) instead of running it."""
    context.configure(
        url=database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_on(connection: Connection) -> None:
    """Run the migrations on an open connection, in one transaction."""
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        transactional_ddl=True,  # true on SQLite too: poller's engine emits BEGIN itself
        compare_type=True,
        include_object=_include_object_for(connection),
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_ID})
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on the given connection, or on a fresh engine for the URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    engine = make_engine(database_url(), sqlite_foreign_keys=False, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            run_on(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
