"""Reconciliation: the pending provider events applied to the history polling recorded.

Polling stays the authority; an event only makes the times of what polling saw exact, and adds
the member stays polling could not see. :func:`reconcile` takes the ``pending`` events whose
conference has been polled *past* their time (``poll_target.last_success_at`` at or after the
event's ``apply_after``, its time plus ``SKEW_SECONDS``; or the conference seen completed at or
after it), in provider-time order, and gives each an outcome:

* **member joined / left, member known** (matched on ``call_control_id``, which is also
  Bandwidth's ``callId``): the member's ``joined``/``rejoined`` (or ``left``) event whose bracket
  ``(previous_observed_at, observed_at]`` holds the event's time (± ``SKEW_SECONDS``) takes
  that time as its ``provider_changed_at``, with ``"time_source": "webhook"`` in its ``detail``
  (a ``left`` event's ``detail.source`` becomes ``webhook``), and so do ``member.joined_at`` /
  ``left_at`` (source ``webhook``) when it is the member's first join or its current leave.
  A member event an event or detail record already timed matches only that very time (± the
  skew), and a join never lands after the member's leave, nor a leave before its join.
  A time the provider's REST answer already gave (Telnyx ``created_at``, ``updated_at`` at
  the leave) is kept: ``applied``, nothing changes. No bracket holds it: ``conflict``, nothing
  changes (it contradicts what a poll saw, or a stay inside one polling saw whole).
* **member joined / left, no member** (Bandwidth): a stay no poll saw (it began and ended
  between two polls). A join and its leave (the first leave of that call at or after it) are
  recorded together
  as a member whose ``member_id`` is the call, with both exact times (sources ``webhook``):
  both ``applied``. Alone for ``PARTNER_WAIT_SECONDS`` after it arrived, one of the pair is
  ``unmatched`` (a stay with only one end known is not invented). A Telnyx event of a
  participant no poll listed is ``unmatched`` at once: Telnyx lists every participant, those who
  left included, under a participant ``id`` its events do not carry, so the stay is polling's or
  the detail records' to record (from the events too it would be one person twice).
* **conference created**: the conference's own creation time stays the REST one: ``applied``.
* **conference ended**: ``applied`` when a poll after it saw the conference completed, else
  ``conflict``. (Its arrival already made the conference due: :mod:`poller.store.inbox`.)

Events of conferences poller has not polled, or not past the event yet, stay ``pending``; one
still pending ``STALE_SECONDS`` (a day) after it arrived is ``unmatched`` (its conference was
never polled past it: not one poller polls, or gone before it could). One
transaction per call, locking ``poll_target`` then ``conference`` rows in the recorder's order,
so reconciliation and recording serialise per conference.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Table, and_, or_, select, tuple_, update

from poller.model import EventKind
from poller.store import inbox
from poller.store.database import store_errors
from poller.store.schema import Base
from poller.store.stays import insert_stay

EVENT: Table = Base.metadata.tables["webhook_event"]
TARGET: Table = Base.metadata.tables["poll_target"]
CONFERENCE: Table = Base.metadata.tables["conference"]
MEMBER: Table = Base.metadata.tables["member"]
MEMBER_EVENT: Table = Base.metadata.tables["member_event"]

SKEW_SECONDS = inbox.SKEW_SECONDS
"""How far an event's time may lie outside a poll bracket and still match it (the provider's
clock against poller's)."""
PARTNER_WAIT_SECONDS = 60.0
"""How long one end of a stay no poll saw waits for the other before it is ``unmatched``."""
STALE_SECONDS = 86_400.0
"""A pending event this old is given up as ``unmatched``."""
BATCH = 500
"""Events taken per call."""

Row = Mapping[Any, Any]
"""A row's mapping (``Row._mapping``)."""
APPLIED, CONFLICT, UNMATCHED = "applied", "conflict", "unmatched"
JOIN_KINDS = ("joined", "rejoined")
_SKEW = timedelta(seconds=SKEW_SECONDS)


@dataclass(slots=True)
class ReconcileStats:
    """What one call did: events by (provider, outcome), stays recorded from events alone."""

    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    stays: int = 0
    conflicts: list[str] = field(default_factory=list)
    """The ``detail`` of each conflict, for the log."""


def reconcile(engine: Engine, now: datetime, *, limit: int = BATCH) -> ReconcileStats:
    """Apply the pending events that polling has caught up with (see the module docstring)."""
    with store_errors("applying provider events"), engine.begin() as conn:
        return _Reconciler(conn, now).run(limit)


def _covered(event: Row, target: Row, conference: Row) -> bool:
    """Whether polling has looked past ``event``: a poll at or after its ``apply_after``, or
    the conference seen completed at or after the event's time (after the end nothing more can
    be seen, and the completing poll may come within the skew of the last leave)."""
    polled: datetime | None = target["last_success_at"]
    if polled is not None and event["apply_after"] is not None and polled >= event["apply_after"]:
        return True
    completed: datetime | None = conference["completed_at"]
    return (conference["status"] == "completed" and completed is not None
            and event["occurred_at"] <= completed)


def _already_exact(row: Row, joined: bool) -> datetime | None:
    """The time an event or detail record already gave this member event, if one did."""
    detail = row["detail"] or {}
    told = detail.get("time_source") if joined else detail.get("source")
    return row["provider_changed_at"] if told in ("webhook", "detail_record") else None


def _brackets(event: Row, at: datetime) -> bool:
    """Whether a member event's bracket ``(previous_observed_at, observed_at]`` holds ``at``."""
    before: datetime | None = event["previous_observed_at"]
    after: datetime = event["observed_at"]
    return (before is None or at > before - _SKEW) and at <= after + _SKEW


class _Reconciler:
    def __init__(self, conn: Connection, now: datetime) -> None:
        self.conn = conn
        self.now = now
        self.stats = ReconcileStats()
        self.done: set[int] = set()
        """Events given an outcome in this call (a stay's second end among them)."""

    def run(self, limit: int) -> ReconcileStats:
        self._give_up_stale()
        same = {table: and_(table.c.account == EVENT.c.account,
                            table.c.conference_id == EVENT.c.conference_id)
                for table in (TARGET, CONFERENCE)}
        covered = or_(TARGET.c.last_success_at >= EVENT.c.apply_after,
                      and_(CONFERENCE.c.status == "completed",
                           EVENT.c.occurred_at <= CONFERENCE.c.completed_at))
        # Other daemons reconciling at the same time skip the events this one took.
        due = (select(EVENT).join(TARGET, same[TARGET]).join(CONFERENCE, same[CONFERENCE])
               .where(EVENT.c.outcome == "pending", covered)
               .order_by(EVENT.c.occurred_at, EVENT.c.id).limit(limit)
               .with_for_update(skip_locked=True, of=EVENT))
        events = [row._mapping for row in self.conn.execute(due)]
        keys = sorted({(e["account"], e["conference_id"]) for e in events})
        targets = self._locked(TARGET, keys)
        conferences = self._locked(CONFERENCE, keys)
        for event in events:  # covered: the query asked for that (``_covered`` in SQL)
            if event["id"] in self.done:
                continue
            key = (event["account"], event["conference_id"])
            result = self._apply(event, targets[key], conferences[key])
            if result is not None:
                self._close(event, *result)
        return self.stats

    def _give_up_stale(self) -> None:
        stale = [r._mapping for r in self.conn.execute(
            select(EVENT.c.id, EVENT.c.provider).where(
                EVENT.c.outcome == "pending",
                EVENT.c.received_at < self.now - timedelta(seconds=STALE_SECONDS)))]
        for event in stale:
            self._close(event, UNMATCHED, "still pending a day after it came: its conference "
                                          "was never polled past it")

    def _locked(self, table: Table, keys: Sequence[tuple[str, str]]
                ) -> dict[tuple[str, str], Row]:
        if not keys:
            return {}
        rows = self.conn.execute(
            select(table).where(tuple_(table.c.account, table.c.conference_id).in_(keys))
            .order_by(table.c.account, table.c.conference_id).with_for_update())
        return {(r._mapping["account"], r._mapping["conference_id"]): r._mapping for r in rows}

    def _close(self, event: Row, outcome: str, detail: str | None) -> None:
        closed = self.conn.execute(update(EVENT).where(
            EVENT.c.id == event["id"], EVENT.c.outcome.in_(("pending", UNMATCHED))).values(
            outcome=outcome, processed_at=self.now,
            detail=EVENT.c.detail if detail is None else detail)).rowcount  # keep the parser's
        if not closed:
            return  # another daemon gave it its outcome meanwhile
        self.done.add(event["id"])
        self.stats.outcomes[(event["provider"], outcome)] += 1
        if outcome == CONFLICT and detail is not None:
            self.stats.conflicts.append(detail)

    # -- one event ---------------------------------------------------------------------------

    def _apply(self, event: Row, target: Row, conference: Row
               ) -> tuple[str, str | None] | None:
        """``(outcome, detail)``, or ``None`` to leave it pending."""
        kind, at = event["kind"], event["occurred_at"]
        if kind == EventKind.CONFERENCE_CREATED:
            return APPLIED, "the conference's creation time stays the provider's REST one"
        if kind == EventKind.CONFERENCE_ENDED:
            if conference["status"] == "completed":
                return APPLIED, None
            return CONFLICT, (f"{event['event_type']} at {at.isoformat()}, but a later poll saw "
                              f"conference {conference['conference_id']} {conference['status']}")
        members = [r._mapping for r in self.conn.execute(
            select(MEMBER).where(MEMBER.c.conference_pk == conference["id"],
                                 MEMBER.c.call_control_id == event["call_id"])
            .order_by(MEMBER.c.id))]
        if members:
            return self._refine(event, members)
        return self._stay(event, target, conference)

    def _refine(self, event: Row, members: Sequence[Row]
                ) -> tuple[str, str | None]:
        """A known member: make the matching join or leave exact (module docstring)."""
        at, joined = event["occurred_at"], event["kind"] == EventKind.MEMBER_JOINED
        kinds = JOIN_KINDS if joined else ("left",)
        for member in members:
            rows = [r._mapping for r in self.conn.execute(
                select(MEMBER_EVENT).where(MEMBER_EVENT.c.member_pk == member["id"],
                                           MEMBER_EVENT.c.kind.in_(kinds))
                .order_by(MEMBER_EVENT.c.seq))]
            match = next((r for r in rows if self._matches(r, member, at, joined)), None)
            if match is None:
                continue
            if _already_exact(match, joined) is not None:
                return APPLIED, "this change's time came from an event or record already"
            detail = dict(match["detail"] or {})
            if joined:
                provider_time = (member["joined_at_source"] == "provider"
                                 if match["kind"] == "joined"
                                 else match["provider_changed_at"] is not None)
                detail["time_source"] = "webhook"
            else:
                provider_time = detail.get("source") == "provider"
                detail["source"] = "webhook"
            if provider_time:
                return APPLIED, "the provider's own time of the change is kept"
            self.conn.execute(update(MEMBER_EVENT).where(MEMBER_EVENT.c.id == match["id"])
                              .values(provider_changed_at=at, detail=detail))
            if joined and match["kind"] == "joined":
                self._member(member["id"], joined_at=at, joined_at_source="webhook")
            elif not joined and match["id"] == rows[-1]["id"] and member["left_at"] is not None:
                self._member(member["id"], left_at=at, left_at_source="webhook")
            return APPLIED, None
        what = "join" if joined else "leave"
        return CONFLICT, (f"{event['event_type']} of call {event['call_id']} at {at.isoformat()}: "
                          f"no {what} seen by polling brackets that time")

    @staticmethod
    def _matches(row: Row, member: Row, at: datetime, joined: bool) -> bool:
        """Whether the event at ``at`` is this member event: its poll bracket holds it, or (a
        time an event or record gave already) it is that very time; never a join after the
        member's leave, nor a leave before its join."""
        exact = _already_exact(row, joined)
        if exact is not None:
            return abs(exact - at) <= _SKEW
        if not _brackets(row, at):
            return False
        if joined and row["kind"] == "joined" and member["left_at"] is not None:
            return bool(at <= member["left_at"] + _SKEW)
        if not joined and member["joined_at"] is not None:
            return bool(at >= member["joined_at"] - _SKEW)
        return True

    def _member(self, pk: int, **values: Any) -> None:
        self.conn.execute(update(MEMBER).where(MEMBER.c.id == pk).values(**values))

    def _stay(self, event: Row, target: Row, conference: Row
              ) -> tuple[str, str | None] | None:
        """No member has this call: a stay between two polls, recorded from its two ends.

        Not for Telnyx: it lists every participant, those who left included, under its own
        participant ``id`` (which its events do not carry), so polling or the detail records
        record the stay; one made from the events too would be the same person twice."""
        at, joined = event["occurred_at"], event["kind"] == EventKind.MEMBER_JOINED
        if event["provider"] == "telnyx":
            return UNMATCHED, ("no poll listed this participant: Telnyx lists every one, so "
                               "its stay is left to polling and detail records")
        other = EventKind.MEMBER_LEFT if joined else EventKind.MEMBER_JOINED
        time_ok = EVENT.c.occurred_at >= at if joined else EVENT.c.occurred_at <= at
        partners = [r._mapping for r in self.conn.execute(
            select(EVENT).where(EVENT.c.account == event["account"],
                                EVENT.c.conference_id == event["conference_id"],
                                EVENT.c.call_id == event["call_id"], EVENT.c.kind == other.value,
                                EVENT.c.outcome.in_(("pending", UNMATCHED)), time_ok)
            .order_by(EVENT.c.occurred_at.asc() if joined else EVENT.c.occurred_at.desc())
            .limit(1))]
        if not partners:
            waited = self.now - event["received_at"] >= timedelta(seconds=PARTNER_WAIT_SECONDS)
            if not waited:
                return None
            return UNMATCHED, ("no poll listed this call and the other end of its stay never "
                               "came: nothing recorded")
        join, leave = (event, partners[0]) if joined else (partners[0], event)
        if not _covered(leave, target, conference):
            return None  # polling has not looked past the leave yet
        insert_stay(self.conn, conference["id"], join["call_id"], joined_at=join["occurred_at"],
                    left_at=leave["occurred_at"], source="webhook", now=self.now,
                    call_control_id=join["call_id"])
        self.stats.stays += 1
        self._close(partners[0], APPLIED, "recorded as a stay no poll saw")
        return APPLIED, "recorded as a stay no poll saw"
