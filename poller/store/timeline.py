"""What ``poller report timeline`` reads: one conference's whole recorded life.

:func:`load_timeline` returns the conference row, its status transitions and every member with
its events, as plain frozen values (aware UTC times), for ``poller.reports.timeline`` to turn
into a picture. :func:`list_conferences` picks the conferences of an index page and
:func:`busiest_conference` the one ``poller demo`` shows. All of it runs in one read-only
transaction (:func:`reading`), safe beside a running daemon like every report.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, pool, select

from poller.errors import StoreUnavailable
from poller.store.database import make_engine, read_only, refuse_missing_sqlite_file, store_errors
from poller.store.schema import Conference, Member, MemberEvent, PollTarget, StatusTransition


@dataclass(frozen=True, slots=True)
class ConferenceFacts:
    """The ``conference`` row (and its target's last successful poll)."""

    pk: int
    provider: str
    account: str
    conference_id: str
    name: str | None
    status: str
    created_at: datetime | None
    completed_at: datetime | None
    completed_at_source: str | None
    end_reason: str | None
    first_observed_at: datetime
    last_observed_at: datetime | None
    """The last successful poll (``poll_target.last_success_at``); ``None`` without a target."""
    gone_at: datetime | None


@dataclass(frozen=True, slots=True)
class TransitionFacts:
    """One ``status_transition`` row."""

    seq: int
    from_status: str | None
    to_status: str
    observed_at: datetime
    previous_observed_at: datetime | None
    provider_changed_at: datetime | None
    end_reason: str | None


@dataclass(frozen=True, slots=True)
class EventFacts:
    """One ``member_event`` row."""

    seq: int
    kind: str
    observed_at: datetime
    previous_observed_at: datetime | None
    provider_changed_at: datetime | None
    detail: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class MemberFacts:
    """One ``member`` row and its events in order."""

    member_id: str
    call_control_id: str | None
    joined_at: datetime | None
    joined_at_source: str | None
    left_at: datetime | None
    left_at_source: str | None
    first_observed_at: datetime
    last_observed_at: datetime
    events: tuple[EventFacts, ...]


@dataclass(frozen=True, slots=True)
class TimelineFacts:
    """Everything recorded about one conference."""

    conference: ConferenceFacts
    transitions: tuple[TransitionFacts, ...]
    members: tuple[MemberFacts, ...]


@dataclass(frozen=True, slots=True)
class ConferenceEntry:
    """One line of an index page."""

    pk: int
    provider: str
    account: str
    conference_id: str
    name: str | None
    status: str
    started_at: datetime
    """``created_at``, else the first sighting."""
    completed_at: datetime | None
    members: int


@contextmanager
def reading(url: str) -> Iterator[Connection]:
    """A read-only transaction on the database at ``url`` (a missing SQLite file is refused,
    not created); database errors become ``StoreUnavailable``."""
    refuse_missing_sqlite_file(url)
    engine = make_engine(url, poolclass=pool.NullPool)
    try:
        with store_errors("reading the timeline"), read_only(engine) as conn:
            yield conn
    finally:
        engine.dispose()


def find_conferences(conn: Connection, provider: str, conference_id: str,
                     account: str | None = None) -> list[tuple[int, str]]:
    """``(pk, account)`` of each recorded conference with this provider and ID (one per
    account that polled it), optionally of one account."""
    query = (select(Conference.id, Conference.account)
             .where(Conference.provider == provider, Conference.conference_id == conference_id)
             .order_by(Conference.account))
    if account is not None:
        query = query.where(Conference.account == account)
    return [(pk, name) for pk, name in conn.execute(query)]


def load_timeline(conn: Connection, pk: int) -> TimelineFacts:
    """The conference ``pk`` with its transitions and members (raises ``StoreUnavailable`` if
    it is not there: deleted meanwhile)."""
    c = conn.execute(
        select(*_columns(ConferenceFacts, Conference, pk=Conference.id,
                         last_observed_at=PollTarget.last_success_at))
        .outerjoin(PollTarget, (PollTarget.account == Conference.account)
                   & (PollTarget.conference_id == Conference.conference_id))
        .where(Conference.id == pk)).mappings().first()
    if c is None:
        raise StoreUnavailable(f"conference {pk} is no longer in the database")
    transitions = tuple(
        TransitionFacts(**t) for t in conn.execute(
            select(*_columns(TransitionFacts, StatusTransition))
            .where(StatusTransition.conference_pk == pk)
            .order_by(StatusTransition.seq)).mappings())
    events: dict[int, list[EventFacts]] = {}
    for e in conn.execute(select(MemberEvent.member_pk, *_columns(EventFacts, MemberEvent))
                          .where(MemberEvent.conference_pk == pk)
                          .order_by(MemberEvent.member_pk, MemberEvent.seq)).mappings():
        events.setdefault(e["member_pk"], []).append(
            EventFacts(**{k: v for k, v in e.items() if k != "member_pk"}))
    members = tuple(
        MemberFacts(**{k: v for k, v in m.items() if k != "id"},
                    events=tuple(events.get(m["id"], ())))
        for m in conn.execute(
            select(Member.id, *_columns(MemberFacts, Member, events=None))
            .where(Member.conference_pk == pk)
            .order_by(Member.joined_at, Member.first_observed_at, Member.id)).mappings())
    return TimelineFacts(conference=ConferenceFacts(**c), transitions=transitions,
                         members=members)


def _columns(facts: type, table: type, **special: Any) -> list[Any]:
    """The columns of ``table`` named like the fields of ``facts`` (``special`` maps a field to
    another column, or to ``None`` for a field that is no column)."""
    names = [f.name for f in fields(facts) if special.get(f.name, True) is not None]
    return [special[f].label(f) if f in special else getattr(table, f) for f in names]


def list_conferences(conn: Connection, *, since: datetime | None = None,
                     provider: str | None = None, account: str | None = None,
                     limit: int | None = None) -> list[ConferenceEntry]:
    """Conferences started at or after ``since`` (created, else first seen), newest first."""
    started = func.coalesce(Conference.created_at, Conference.first_observed_at)
    members = (select(func.count(Member.id)).where(Member.conference_pk == Conference.id)
               .scalar_subquery())
    query = (select(Conference.id, Conference.provider, Conference.account,
                    Conference.conference_id, Conference.name, Conference.status,
                    started.label("started_at"), Conference.completed_at,
                    members.label("members"))
             .order_by(started.desc(), Conference.id.desc()))
    if since is not None:
        query = query.where(started >= since)
    if provider is not None:
        query = query.where(Conference.provider == provider)
    if account is not None:
        query = query.where(Conference.account == account)
    if limit is not None:
        query = query.limit(limit)
    return [ConferenceEntry(pk=row.id, provider=row.provider, account=row.account,
                            conference_id=row.conference_id, name=row.name, status=row.status,
                            started_at=row.started_at, completed_at=row.completed_at,
                            members=int(row.members))
            for row in conn.execute(query)]


def busiest_conference(conn: Connection) -> int | None:
    """The conference with the most members (then the most member events), or ``None``."""
    events = (select(func.count(MemberEvent.id)).where(MemberEvent.conference_pk == Conference.id)
              .scalar_subquery())
    members = (select(func.count(Member.id)).where(Member.conference_pk == Conference.id)
               .scalar_subquery())
    return conn.execute(select(Conference.id).order_by(members.desc(), events.desc(),
                                                       Conference.id).limit(1)).scalar()
