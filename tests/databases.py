"""Throw-away test databases: migrated SQLite files and PostgreSQL databases from a template.

SQLite: the migrations run once per session into a template file, and each test gets a copy.
PostgreSQL (when ``POLLER_TEST_DATABASE_URL`` names a server and database we may connect to):
a template database is migrated once per session, and each test gets ``CREATE DATABASE
poller_t_<hex> TEMPLATE …``, dropped ``WITH (FORCE)`` afterwards.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, pool, select, text
from sqlalchemy.engine import make_url

from poller.model import PollResult
from poller.store import migrate
from poller.store.database import make_engine, normalise_url
from poller.store.recorder import Recorder
from poller.store.schema import Base

POSTGRES_URL_ENV = "POLLER_TEST_DATABASE_URL"


def postgres_server_url() -> str:
    """The configured PostgreSQL URL; fails under CI=true, else skips, when it is not set."""
    url = os.environ.get(POSTGRES_URL_ENV)
    if url:
        return normalise_url(url)
    reason = f"PostgreSQL tests need {POSTGRES_URL_ENV} (e.g. postgresql+psycopg://user@host/db)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI must run them")
    pytest.skip(reason)


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of a SQLite file."""
    return f"sqlite:///{path}"


def migrated_sqlite_template(directory: Path) -> Path:
    """Migrate a fresh SQLite file to head, once, to be copied by each test."""
    path = directory / "template.db"
    migrate.upgrade(sqlite_url(path))
    return path


def copy_sqlite(template: Path, directory: Path) -> str:
    """A private copy of the template file (its WAL is checkpointed when migrations end)."""
    path = directory / "poller.db"
    shutil.copyfile(template, path)
    return sqlite_url(path)


class PostgresServer:
    """Creates and drops uniquely named databases on the configured server."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._admin: Engine = create_engine(url, isolation_level="AUTOCOMMIT",
                                            poolclass=pool.NullPool)

    def url_for(self, name: str) -> str:
        """The URL of database ``name`` on this server."""
        return make_url(self.url).set(database=name).render_as_string(hide_password=False)

    def create(self, *, template: str | None = None, prefix: str = "poller_t_") -> str:
        """Create an empty (or template-copied) database and return its name."""
        name = f"{prefix}{uuid.uuid4().hex[:12]}"
        suffix = f" TEMPLATE {template}" if template else ""
        with self._admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}{suffix}")
        return name

    def drop(self, name: str) -> None:
        """Drop a database, disconnecting whoever still uses it."""
        with self._admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    @contextmanager
    def database(self, *, template: str | None = None) -> Iterator[str]:
        """A fresh database's URL for the duration of the block."""
        name = self.create(template=template)
        try:
            yield self.url_for(name)
        finally:
            self.drop(name)

    def close(self) -> None:
        """Release the admin engine."""
        self._admin.dispose()


class DatabasePool:
    """Fresh copies of a template database, created ahead in background threads.

    ``CREATE DATABASE`` costs a few hundred milliseconds of fsyncs; creating the next copies
    while the current test runs (and dropping used ones in the background) keeps the
    PostgreSQL half of the suite about as fast as the SQLite half.
    """

    def __init__(self, server: PostgresServer, template: str, ahead: int = 4) -> None:
        self.server = server
        self.template = template
        self.ahead = ahead
        self._workers = ThreadPoolExecutor(max_workers=ahead, thread_name_prefix="pg-pool")
        self._ready: deque[Future[str]] = deque()
        self._drops: list[Future[None]] = []

    def _fill(self) -> None:
        while len(self._ready) < self.ahead:
            self._ready.append(self._workers.submit(self.server.create, template=self.template))

    def take(self) -> str:
        """The name of a fresh copy of the template (the caller must ``give_back`` it)."""
        self._fill()
        name = self._ready.popleft().result()
        self._fill()
        return name

    def give_back(self, name: str) -> None:
        """Drop a used database in the background."""
        self._drops.append(self._workers.submit(self.server.drop, name))

    def close(self) -> None:
        """Drop every database this pool made, then stop its threads."""
        for future in self._ready:
            self._drops.append(self._workers.submit(self.server.drop, future.result()))
        self._ready.clear()
        for drop in self._drops:
            drop.result()
        self._workers.shutdown()


TABLES = ("poll_target", "conference", "conference_snapshot", "status_transition", "member",
          "member_event", "poll_error")
"""Every table the migrations create, parents first."""


def row_counts(engine: Engine) -> dict[str, int]:
    """The number of rows in each table."""
    with engine.connect() as conn:
        return {t: conn.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar_one() for t in TABLES}


def dump_tables(engine: Engine) -> dict[str, list[dict[str, object]]]:
    """Every row of every table, in id order (for before/after comparisons)."""
    with engine.connect() as conn:
        return {
            t: [dict(r._mapping) for r in conn.exec_driver_sql(f"SELECT * FROM {t} ORDER BY id")]
            for t in TABLES
        }


def fetch(engine: Engine, table: str, **where: object) -> list[dict[str, Any]]:
    """Rows of ``table`` (typed: aware datetimes, decoded JSON) matching ``where``, by id."""
    t = Base.metadata.tables[table]
    query = select(t).where(*(t.c[k] == v for k, v in where.items())).order_by(t.c.id)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def execute(url: str, sql: str) -> None:
    """Run one SQL statement on the database at ``url`` and commit (a test's tampering)."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


def record(url: str, results: list[PollResult]) -> str:
    """Record ``results`` one poll at a time, in time order, with the real recorder; returns
    ``url``."""
    engine = make_engine(url)
    try:
        recorder = Recorder(engine)
        for result in sorted(results, key=lambda r: r.observed_at):
            recorder.record([result])
    finally:
        engine.dispose()
    return url


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements sent to the database inside the block (an executemany is one)."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)
