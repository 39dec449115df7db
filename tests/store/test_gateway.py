"""The store handed out before the database answers (``poller run`` started during an outage):
it opens itself at the first call that finds the database answering, and only then."""

from __future__ import annotations

import pytest
from factories import at
from sqlalchemy import Engine

from poller.errors import SchemaAhead, StoreDown, StoreUnavailable
from poller.store.gateway import Store

pytestmark = pytest.mark.anyio


async def test_a_store_opens_itself_once_the_database_answers(engine: Engine) -> None:
    """Every call fails with the opening's ``StoreDown`` (nothing reaches the tables) until an
    opening succeeds; then the call goes through, and the steps never run again."""
    attempts: list[int] = []

    def opening() -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise StoreDown("connecting: connection refused")

    store = Store(engine, opening=opening)
    assert not store.ready
    for _ in range(2):
        with pytest.raises(StoreDown, match="connection refused"):
            await store.claim_due(at(0), 10, "me", 60)
    assert not store.ready
    assert await store.claim_due(at(0), 10, "me", 60) == []
    assert store.ready
    await store.sync_targets([], at(0))
    assert len(attempts) == 3
    if engine.dialect.name == "sqlite":
        assert store.file is not None
        assert store.problem() is None


async def test_a_schema_ahead_found_late_waits_for_the_operator(engine: Engine) -> None:
    """A database that answers at last but was migrated by a newer poller is not used: the
    store stays unopened and says why (the daemon keeps spooling), instead of a crash."""
    def opening() -> None:
        raise SchemaAhead("database is at schema revision 9999, which this poller does not know")

    store = Store(engine, opening=opening)
    with pytest.raises(StoreUnavailable, match="9999") as raised:
        await store.claim_due(at(0), 10, "me", 60)
    assert not isinstance(raised.value, StoreDown)
    assert not store.ready
