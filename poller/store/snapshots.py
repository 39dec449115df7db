"""Reading back the current snapshot of conferences: what list polling compares a list with.

:func:`current_snapshots` returns, per ``(account, conference_id)``, the stored status, the
provider's ``created_at``, when it was last observed (``poll_target.last_success_at``), and the
raw provider payload of the current ``conference_snapshot`` row (``valid_to IS NULL``) with its
``members_complete`` flag. ``poller.polling.lists`` rebuilds an
unchanged observation from it instead of asking the provider again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Table, and_, select

from poller.store.database import store_errors
from poller.store.schema import Base

CONFERENCE: Table = Base.metadata.tables["conference"]
SNAPSHOT: Table = Base.metadata.tables["conference_snapshot"]
TARGET: Table = Base.metadata.tables["poll_target"]
CHUNK = 400


@dataclass(frozen=True, slots=True)
class StoredSnapshot:
    """The newest recorded state of one conference."""

    status: str
    created_at: datetime | None
    last_observed_at: datetime | None
    """The newest recorded observation (``poll_target.last_success_at``)."""
    raw: dict[str, Any] | None
    """``{"conference": …, "members": […]}`` as the provider sent it (``None`` if pruned)."""
    members_complete: bool


def current_snapshots(engine: Engine, keys: Sequence[tuple[str, str]]
                      ) -> dict[tuple[str, str], StoredSnapshot]:
    """The current snapshot of each of ``keys`` that has one (see the module docstring)."""
    found: dict[tuple[str, str], StoredSnapshot] = {}
    by_account: dict[str, list[str]] = {}
    for account, conference_id in keys:
        by_account.setdefault(account, []).append(conference_id)
    with store_errors("reading current snapshots"), engine.connect() as conn:
        for account, ids in sorted(by_account.items()):
            for start in range(0, len(ids), CHUNK):
                query = (select(CONFERENCE.c.conference_id, CONFERENCE.c.status,
                                CONFERENCE.c.created_at, TARGET.c.last_success_at,
                                SNAPSHOT.c.raw, SNAPSHOT.c.state)
                         .join(SNAPSHOT, and_(SNAPSHOT.c.conference_pk == CONFERENCE.c.id,
                                              SNAPSHOT.c.valid_to.is_(None)))
                         .outerjoin(TARGET, and_(TARGET.c.account == CONFERENCE.c.account,
                                                 TARGET.c.conference_id
                                                 == CONFERENCE.c.conference_id))
                         .where(CONFERENCE.c.account == account,
                                CONFERENCE.c.conference_id.in_(ids[start:start + CHUNK])))
                for row in conn.execute(query):
                    state = row.state if isinstance(row.state, dict) else {}
                    found[account, row.conference_id] = StoredSnapshot(
                        status=row.status, created_at=row.created_at,
                        last_observed_at=row.last_success_at,
                        raw=row.raw if isinstance(row.raw, dict) else None,
                        members_complete=bool(state.get("members_complete", True)))
    return found
