"""Telnyx participant detail records applied to a completed conference's members.

For accounts with ``detail_records = true``, each Telnyx conference seen completed, or retired
as gone (404 ``polling.not_found_retire_after`` times in a row: it ended unseen, its last
members perhaps never polled; a passing 404 of a live one must not close its members early),
that ended within ``MAX_AGE_DAYS``
(turning the setting on does not fetch all history), is due for its conference-participant
detail records (``due_for_records``); Telnyx has them only some time
after the end, so an empty answer puts the next attempt off (``postpone``: 30 s, doubling, at
most an hour apart, ``MAX_TRIES`` attempts in all, about a day). :func:`apply_records` then,
in one transaction under the conference's row lock, per record:

* a member of that participant ``id`` (else of that ``call_leg_id``): its join and leave times
  become the record's, source ``detail_record``, unless they already are the provider's own
  (Telnyx ``created_at``, ``updated_at`` at the leave) or an event's (``webhook``), which are
  exact already. The ``joined`` event's and the last ``left`` event's ``provider_changed_at``
  follow; a member still open gets its ``left`` event;
* no such member: a stay no poll saw, recorded whole (:func:`poller.store.stays.insert_stay`).

and marks the conference done (``detail_records_at``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Table, exists, func, insert, or_, select, update

from poller.model import ParticipantRecord
from poller.store.database import store_errors
from poller.store.schema import Base
from poller.store.stays import insert_stay

CONFERENCE: Table = Base.metadata.tables["conference"]
TARGET: Table = Base.metadata.tables["poll_target"]
MEMBER: Table = Base.metadata.tables["member"]
MEMBER_EVENT: Table = Base.metadata.tables["member_event"]

SOURCE = "detail_record"
EXACT_SOURCES = frozenset({"provider", "webhook", SOURCE})
FIRST_RETRY_SECONDS = 30.0
MAX_RETRY_SECONDS = 3600.0
MAX_TRIES = 30
MAX_AGE_DAYS = 2.0


@dataclass(frozen=True, slots=True)
class DueConference:
    """A completed Telnyx conference whose detail records are still to fetch."""

    pk: int
    account: str
    conference_id: str
    tries: int


@dataclass(frozen=True, slots=True)
class RecordsApplied:
    """What one conference's records did: times made exact, stays added, already exact."""

    filled: int
    added: int
    kept: int


def due_for_records(engine: Engine, accounts: Collection[str], now: datetime, limit: int = 20
                    ) -> list[DueConference]:
    """Completed (or gone) Telnyx conferences of ``accounts`` due for a (next) attempt, the
    longest over first."""
    if not accounts:
        return []
    ended = func.coalesce(CONFERENCE.c.completed_at, CONFERENCE.c.gone_at)
    query = (select(CONFERENCE.c.id, CONFERENCE.c.account, CONFERENCE.c.conference_id,
                    CONFERENCE.c.detail_records_tries)
             .where(CONFERENCE.c.provider == "telnyx",
                    or_(CONFERENCE.c.status == "completed", exists().where(
                        TARGET.c.account == CONFERENCE.c.account,
                        TARGET.c.conference_id == CONFERENCE.c.conference_id,
                        TARGET.c.retired_reason == "gone")),
                    ended >= now - timedelta(days=MAX_AGE_DAYS),
                    CONFERENCE.c.account.in_(sorted(accounts)),
                    CONFERENCE.c.detail_records_at.is_(None),
                    CONFERENCE.c.detail_records_tries < MAX_TRIES,
                    or_(CONFERENCE.c.detail_records_next_at.is_(None),
                        CONFERENCE.c.detail_records_next_at <= now))
             .order_by(ended, CONFERENCE.c.id).limit(limit))
    with store_errors("finding conferences due for detail records"), engine.connect() as conn:
        return [DueConference(*row) for row in conn.execute(query)]


def postpone(engine: Engine, conference: DueConference, now: datetime) -> datetime:
    """No records yet: the next attempt, backing off; when it is."""
    wait = min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2 ** conference.tries)
    at = now + timedelta(seconds=wait)
    with store_errors("postponing detail records"), engine.begin() as conn:
        conn.execute(update(CONFERENCE).where(CONFERENCE.c.id == conference.pk).values(
            detail_records_next_at=at, detail_records_tries=conference.tries + 1))
    return at


def apply_records(engine: Engine, conference_pk: int, records: Sequence[ParticipantRecord],
                  now: datetime) -> RecordsApplied:
    """Apply one conference's records (see the module docstring)."""
    filled = added = kept = 0
    with store_errors("applying detail records"), engine.begin() as conn:
        conn.execute(select(CONFERENCE.c.id).where(CONFERENCE.c.id == conference_pk)
                     .with_for_update())
        members = [r._mapping for r in conn.execute(
            select(MEMBER).where(MEMBER.c.conference_pk == conference_pk))]
        by_id = {m["member_id"]: m for m in members}
        by_leg = {m["call_leg_id"]: m for m in members if m["call_leg_id"] is not None}
        for record in records:
            member = by_id.get(record.member_id) or (
                by_leg.get(record.call_leg_id) if record.call_leg_id else None)
            if member is None:
                if record.left_at is not None:
                    insert_stay(conn, conference_pk, record.member_id, joined_at=record.joined_at,
                                left_at=record.left_at, source=SOURCE, now=now,
                                call_leg_id=record.call_leg_id)
                    added += 1
                continue
            values: dict[str, object] = {}
            if member["joined_at_source"] not in EXACT_SOURCES:
                values |= {"joined_at": record.joined_at, "joined_at_source": SOURCE}
                _exact_event(conn, member["id"], "joined", record.joined_at)
            if record.left_at is not None and member["left_at_source"] not in EXACT_SOURCES:
                values |= {"left_at": record.left_at, "left_at_source": SOURCE}
                if member["left_at"] is None:
                    _add_left(conn, member, record.left_at, now)
                else:
                    _exact_event(conn, member["id"], "left", record.left_at)
            if values:
                conn.execute(update(MEMBER).where(MEMBER.c.id == member["id"]).values(**values))
                filled += 1
            else:
                kept += 1
        conn.execute(update(CONFERENCE).where(CONFERENCE.c.id == conference_pk).values(
            detail_records_at=now, detail_records_next_at=None))
    return RecordsApplied(filled, added, kept)


def _exact_event(conn: Connection, member_pk: int, kind: str, at: datetime) -> None:
    """The member's first ``joined`` or last ``left`` event takes ``at``, source noted."""
    order = MEMBER_EVENT.c.seq.asc() if kind == "joined" else MEMBER_EVENT.c.seq.desc()
    row = conn.execute(select(MEMBER_EVENT.c.id, MEMBER_EVENT.c.detail)
                       .where(MEMBER_EVENT.c.member_pk == member_pk,
                              MEMBER_EVENT.c.kind == kind).order_by(order).limit(1)).first()
    if row is None:
        return
    detail = dict(row.detail or {})
    detail["time_source" if kind == "joined" else "source"] = SOURCE
    conn.execute(update(MEMBER_EVENT).where(MEMBER_EVENT.c.id == row.id).values(
        provider_changed_at=at, detail=detail))


def _add_left(conn: Connection, member: Mapping[Any, Any], at: datetime, now: datetime
              ) -> None:
    """A member polling last saw present: its ``left`` event, from the record."""
    pk = member["id"]
    seq = conn.execute(select(func.max(MEMBER_EVENT.c.seq))
                       .where(MEMBER_EVENT.c.member_pk == pk)).scalar() or 0
    conn.execute(insert(MEMBER_EVENT).values(
        member_pk=pk, conference_pk=member["conference_pk"], seq=seq + 1,
        kind="left", observed_at=now, previous_observed_at=None, provider_changed_at=at,
        detail={"source": SOURCE}))
