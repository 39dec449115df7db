"""Member stays learned after the fact: a member row and its ``joined`` / ``left`` events.

A stay no poll saw (it began and ended between two polls) is known only from what a provider
told later: its join and leave events (``poller.store.reconcile``) or a Telnyx participant
detail record (``poller.store.detail_records``). :func:`insert_stay` records it as polling
would have, had it seen it: a ``member`` row with both times and their source, and its
``joined`` (seq 1) and ``left`` (seq 2) events, each with the exact time as
``provider_changed_at``. ``observed_at`` of both events, and the member's first and last
observation, are when poller learned of it (``now``); ``previous_observed_at`` is NULL: no
poll bracket applies. The caller holds the conference's row lock.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, Table, insert

from poller.store.schema import Base

MEMBER: Table = Base.metadata.tables["member"]
MEMBER_EVENT: Table = Base.metadata.tables["member_event"]


def insert_stay(conn: Connection, conference_pk: int, member_id: str, *, joined_at: datetime,
                left_at: datetime, source: str, now: datetime,
                call_control_id: str | None = None, call_leg_id: str | None = None) -> int:
    """Record one stay (see the module docstring); the new member's pk."""
    member_pk: int = conn.execute(insert(MEMBER).values(
        conference_pk=conference_pk, member_id=member_id, call_control_id=call_control_id,
        call_leg_id=call_leg_id, joined_at=joined_at, joined_at_source=source,
        left_at=left_at, left_at_source=source, first_observed_at=now, last_observed_at=now,
    ).returning(MEMBER.c.id)).scalar_one()
    base = {"member_pk": member_pk, "conference_pk": conference_pk, "observed_at": now,
            "previous_observed_at": None}
    conn.execute(insert(MEMBER_EVENT), [
        {**base, "seq": 1, "kind": "joined", "provider_changed_at": joined_at,
         "detail": {"status": None, "muted": None, "on_hold": None, "coaching": None,
                    "time_source": source}},
        {**base, "seq": 2, "kind": "left", "provider_changed_at": left_at,
         "detail": {"source": source}},
    ])
    return member_pk
