"""Fixtures of the daemon tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from databases import DatabasePool
from factories import T0
from sqlalchemy import Engine

from poller.store.recorder import Recorder


@pytest.fixture
def postgres_url(postgres_pool: DatabasePool) -> Iterator[str]:
    """A fresh migrated PostgreSQL database (for tests that only make sense there)."""
    name = postgres_pool.take()
    try:
        yield postgres_pool.server.url_for(name)
    finally:
        postgres_pool.give_back(name)


@pytest.fixture
def recorder(engine: Engine) -> Recorder:
    """A recorder on the test database, with a fixed clock."""
    return Recorder(engine, clock=lambda: T0)
