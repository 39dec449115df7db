"""Fixtures of the daemon tests."""

from __future__ import annotations

import pytest
from factories import T0
from sqlalchemy import Engine

from poller.store.recorder import Recorder


@pytest.fixture
def recorder(engine: Engine) -> Recorder:
    """A recorder on the test database, with a fixed clock."""
    return Recorder(engine, clock=lambda: T0)
