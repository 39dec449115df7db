"""Telnyx participant detail records on both databases: due conferences, back-off, and what
applying them changes (``poller.store.detail_records``)."""

from __future__ import annotations

from typing import Any

from factories import TELNYX_ACCOUNT, at, telnyx_member, telnyx_observation
from sqlalchemy import Engine, text

from poller.model import ParticipantRecord
from poller.store.detail_records import (
    MAX_TRIES,
    apply_records,
    due_for_records,
    postpone,
)
from poller.store.recorder import Recorder


def rows(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(sql))]


def same(moment: Any) -> str:
    """A time read back from either database, as naive ISO text to the microsecond."""
    from datetime import datetime
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return str(moment.replace(tzinfo=None).isoformat(timespec="microseconds"))


def completed_conference(engine: Engine) -> None:
    """p1 polled with Telnyx's times (joined 3, left 15); p2 polled without a ``created_at``
    (joined observed at 10) and still present when the conference completed at 30."""
    recorder = Recorder(engine)
    recorder.record([telnyx_observation(at=0)])
    recorder.record([telnyx_observation(at=10, members=[
        telnyx_member("p1", created_at=3), telnyx_member("p2")])])
    recorder.record([telnyx_observation(at=20, members=[
        telnyx_member("p1", created_at=3, status="left", updated_at=15), telnyx_member("p2")])])
    recorder.record([telnyx_observation(at=30, status="completed", updated_at=29,
                                        end_reason="all_left", members=[
        telnyx_member("p1", created_at=3, status="left", updated_at=15), telnyx_member("p2")])])


def test_due_then_postponed_with_back_off(engine: Engine) -> None:
    completed_conference(engine)
    [due] = due_for_records(engine, [TELNYX_ACCOUNT], at(31))
    assert (due.conference_id, due.tries) == ("conf-1", 0)
    assert due_for_records(engine, ["another-account"], at(31)) == []
    assert postpone(engine, due, at(31)) == at(61)
    assert due_for_records(engine, [TELNYX_ACCOUNT], at(60)) == []
    [again] = due_for_records(engine, [TELNYX_ACCOUNT], at(61))
    assert again.tries == 1
    assert postpone(engine, again, at(61)) == at(121)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE conference SET detail_records_tries = {MAX_TRIES}, "
                          "detail_records_next_at = NULL"))
    assert due_for_records(engine, [TELNYX_ACCOUNT], at(10_000)) == []


def test_records_make_times_exact_and_add_unseen_participants(engine: Engine) -> None:
    """p1's times are Telnyx's own already: kept. p2's join (observed) and leave (closed by the
    completion) take the record's. p3, never polled: a whole stay from its record."""
    completed_conference(engine)
    [due] = due_for_records(engine, [TELNYX_ACCOUNT], at(31))
    records = [ParticipantRecord("p1", "leg-p1", at(3.5), at(15.5)),
               ParticipantRecord("p2", "leg-p2", at(7.25), at(28.5)),
               ParticipantRecord("p3", "leg-p3", at(21), at(22.5))]
    applied = apply_records(engine, due.pk, records, at(40))
    assert (applied.filled, applied.added, applied.kept) == (1, 1, 1)
    sessions = {row[0]: row[1:] for row in rows(
        engine, "SELECT member_id, joined_at_source, left_at_source FROM member_session")}
    assert sessions == {"p1": ("provider", "provider"),
                        "p2": ("detail_record", "detail_record"),
                        "p3": ("detail_record", "detail_record")}
    events = rows(engine, "SELECT m.member_id, e.kind, e.provider_changed_at FROM member_event e "
                          "JOIN member m ON m.id = e.member_pk WHERE m.member_id = 'p2' "
                          "AND e.kind IN ('joined', 'left') ORDER BY e.seq")
    assert [(member, kind) for member, kind, _ in events] == [("p2", "joined"), ("p2", "left")]
    assert [same(moment) for _, _, moment in events] == [same(at(7.25)), same(at(28.5))]
    assert due_for_records(engine, [TELNYX_ACCOUNT], at(10_000)) == []
    [(done,)] = rows(engine, "SELECT detail_records_at FROM conference")
    assert done is not None


def test_a_participant_polling_left_open_is_closed_by_its_record(engine: Engine) -> None:
    """A conference gone (404) before polling saw p1 leave: the record closes its stay."""
    recorder = Recorder(engine)
    recorder.record([telnyx_observation(at=0, members=[telnyx_member("p1", created_at=-5)])])
    recorder.record([telnyx_observation(at=10, status="completed", updated_at=9,
                                        members=[telnyx_member("p1", created_at=-5)])])
    with engine.begin() as conn:  # as if polling had not closed it (a member left open)
        conn.execute(text("UPDATE member SET left_at = NULL, left_at_source = NULL"))
        conn.execute(text("DELETE FROM member_event WHERE kind = 'left'"))
    [due] = due_for_records(engine, [TELNYX_ACCOUNT], at(11))
    apply_records(engine, due.pk, [ParticipantRecord("p1", "leg-p1", at(-5), at(8))], at(12))
    assert rows(engine, "SELECT kind FROM member_event ORDER BY seq") == [("joined",), ("left",)]
    [(source,)] = rows(engine, "SELECT left_at_source FROM member")
    assert source == "detail_record"
