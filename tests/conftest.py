"""Shared test fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from databases import (
    DatabasePool,
    PostgresServer,
    copy_sqlite,
    migrated_sqlite_template,
    postgres_server_url,
    sqlite_url,
)
from sqlalchemy import Engine

from poller.store import migrate
from poller.store.database import make_engine

WORKERS_PER_CPU = 2
"""``-n auto`` (what ``./dev test`` passes) starts this many pytest-xdist workers per CPU: much
of the suite waits on subprocesses, sockets, fsyncs and PostgreSQL rather than computing."""

MAX_AUTO_WORKERS = 8
"""…and at most this many (each fleet or proof test runs several daemons and PostgreSQL
connections)."""


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: absent under -p no:xdist
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """The number of workers of ``-n auto``; ``PYTEST_XDIST_AUTO_NUM_WORKERS`` overrides it."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # pytest-xdist's own hook reads it
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(MAX_AUTO_WORKERS, WORKERS_PER_CPU * (cpus or 1)))


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (``@pytest.mark.anyio``) run on asyncio, like the daemon."""
    return "asyncio"


# --- Databases -------------------------------------------------------------------------------
# Every store test runs on SQLite and, when POLLER_TEST_DATABASE_URL is set, on PostgreSQL
# (the `postgres` params fail under CI=true without it, and skip otherwise). Schemas always
# come from the Alembic migrations, never from metadata.create_all().

DATABASE_PARAMS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per session (tests get copies)."""
    return migrated_sqlite_template(tmp_path_factory.mktemp("sqlite-template"))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The PostgreSQL server of POLLER_TEST_DATABASE_URL (skips, or fails under CI, if unset)."""
    server = PostgresServer(postgres_server_url())
    yield server
    server.close()


@pytest.fixture(scope="session")
def postgres_pool(postgres_server: PostgresServer) -> Iterator[DatabasePool]:
    """Fresh PostgreSQL databases copied from a template migrated to head once per session."""
    template = postgres_server.create(prefix="poller_tpl_")
    try:
        migrate.upgrade(postgres_server.url_for(template))
        pool = DatabasePool(postgres_server, template)
        try:
            yield pool
        finally:
            pool.close()
    finally:
        postgres_server.drop(template)


@pytest.fixture(params=DATABASE_PARAMS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database migrated to head: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield copy_sqlite(request.getfixturevalue("sqlite_template"), tmp_path)
        return
    pool: DatabasePool = request.getfixturevalue("postgres_pool")
    name = pool.take()
    try:
        yield pool.server.url_for(name)
    finally:
        pool.give_back(name)


@pytest.fixture(params=DATABASE_PARAMS)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, never-migrated database (for migration tests)."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "empty.db")
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    with server.database() as url:
        yield url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine (``make_engine``) on the fresh migrated database."""
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def postgres_url(postgres_pool: DatabasePool) -> Iterator[str]:
    """A fresh migrated PostgreSQL database (for tests that only make sense there)."""
    name = postgres_pool.take()
    try:
        yield postgres_pool.server.url_for(name)
    finally:
        postgres_pool.give_back(name)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The one-line figures of the proofs (``tests/daemon/test_proofs.py``,
    ``test_webhook_proofs.py``), at the end of the run. Here, in the root conftest, so that
    the pytest-xdist controller (which collects no test module) has it too."""
    lines = [value for reports in terminalreporter.stats.values() for report in reports
             for name, value in getattr(report, "user_properties", ()) if name == "proof"]
    if lines:
        terminalreporter.section("proofs: recorded history vs ground truth")
        for line in dict.fromkeys(lines):
            terminalreporter.write_line(str(line))
