"""Reconciliation on both databases: provider events make polled times exact, record the stays
no poll saw, and never change what contradicts a poll (``poller.store.reconcile``).

Each test records polls with the recorder (a timeline in seconds from ``T0``), stores events
as the receiver would (``poller.store.inbox.store_event``) and reconciles.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from factories import (
    BANDWIDTH_ACCOUNT,
    TELNYX_ACCOUNT,
    at,
    bandwidth_member,
    bandwidth_observation,
    bandwidth_target,
    telnyx_member,
    telnyx_observation,
)
from sqlalchemy import Engine, text

from poller.model import EventKind, Provider, ProviderEvent
from poller.store.inbox import store_event, stored_events
from poller.store.reconcile import PARTNER_WAIT_SECONDS, STALE_SECONDS, reconcile
from poller.store.recorder import Recorder

CONF_BW = "conf-bw-1"


def event(kind: EventKind, when: float, call: str | None = None, *, key: str | None = None,
          provider: Provider = Provider.BANDWIDTH, conference: str = CONF_BW) -> ProviderEvent:
    names = {EventKind.MEMBER_JOINED: "conferenceMemberJoin",
             EventKind.MEMBER_LEFT: "conferenceMemberExit",
             EventKind.CONFERENCE_ENDED: "conferenceCompleted",
             EventKind.CONFERENCE_CREATED: "conferenceCreated"}
    return ProviderEvent(provider=provider, key=key or f"{kind}-{call}-{when}",
                         event_type=names[kind], kind=kind, conference_id=conference,
                         call_id=call, occurred_at=at(when))


def deliver(engine: Engine, *events: ProviderEvent, received: float = 0) -> None:
    account = BANDWIDTH_ACCOUNT
    for item in events:
        if item.provider is Provider.TELNYX:
            account = TELNYX_ACCOUNT
        store_event(engine, account, item, "{}", at(received))


def rows(engine: Engine, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(sql), params)]


def outcomes(engine: Engine) -> dict[str, str]:
    return {e.event_key: e.outcome for e in stored_events(engine)}


def sessions(engine: Engine) -> list[tuple[Any, ...]]:
    return rows(engine, "SELECT member_id, stay, joined_at, joined_at_source, left_at, "
                        "left_at_source FROM member_session ORDER BY member_id, stay")


def same(a: Any, b: datetime) -> bool:
    """A time read back from either database equals ``b`` (SQLite gives naive UTC text)."""
    if isinstance(a, str):
        a = datetime.fromisoformat(a)
    return a.replace(tzinfo=None) == b.replace(tzinfo=None)


def test_bandwidth_join_and_leave_become_exact(engine: Engine) -> None:
    """Polls at 0, 10, 20, 30: c-1 listed at 10 and 20 (joined in (0, 10], left in (20, 30]);
    its events at 4.25 and 27.5 make both ends exact, source ``webhook``."""
    recorder = Recorder(engine)
    recorder.record([bandwidth_observation(at=0)])
    deliver(engine, event(EventKind.MEMBER_JOINED, 4.25, "c-1"),
            event(EventKind.MEMBER_LEFT, 27.5, "c-1"), received=28)
    assert reconcile(engine, at(28)).outcomes == {}  # polling has not looked past them yet
    for when, members in ((10, ["c-1"]), (20, ["c-1"]), (30, [])):
        recorder.record([bandwidth_observation(at=when, members=[
            bandwidth_member(m) for m in members])])
    stats = reconcile(engine, at(31))
    assert stats.outcomes == {("bandwidth", "applied"): 2}
    [(member_id, stay, joined, joined_source, left, left_source)] = sessions(engine)
    assert (member_id, stay, joined_source, left_source) == ("c-1", 1, "webhook", "webhook")
    assert same(joined, at(4.25))
    assert same(left, at(27.5))
    details = rows(engine, "SELECT kind, provider_changed_at FROM member_event ORDER BY seq")
    assert [kind for kind, _ in details] == ["joined", "left"]
    assert same(details[0][1], at(4.25))
    assert same(details[1][1], at(27.5))
    assert reconcile(engine, at(40)).outcomes == {}  # applied once; nothing left to do


def test_a_stay_between_two_polls_is_recorded_from_its_events(engine: Engine) -> None:
    """c-2 joined at 12 and left at 17, between the polls at 10 and 20: no poll listed it; its
    two events record the stay exactly, once."""
    recorder = Recorder(engine)
    for when in (0, 10, 20):
        recorder.record([bandwidth_observation(at=when, members=[bandwidth_member("c-1")])])
    deliver(engine, event(EventKind.MEMBER_LEFT, 17, "c-2"),
            event(EventKind.MEMBER_JOINED, 12, "c-2"), received=21)  # out of order
    stats = reconcile(engine, at(22))
    assert stats.stays == 1
    assert stats.outcomes == {("bandwidth", "applied"): 2}
    stays = {s[0]: s for s in sessions(engine)}
    assert stays["c-2"][3] == stays["c-2"][5] == "webhook"
    assert same(stays["c-2"][2], at(12))
    assert same(stays["c-2"][4], at(17))
    assert reconcile(engine, at(30)).stays == 0
    assert rows(engine, "SELECT COUNT(*) FROM member WHERE member_id = 'c-2'") == [(1,)]


def test_one_end_alone_is_unmatched_after_the_wait(engine: Engine) -> None:
    """A join of a call no poll listed and whose leave never came: nothing is invented; after
    ``PARTNER_WAIT_SECONDS`` it is ``unmatched``. Its leave arriving later still records the
    stay."""
    recorder = Recorder(engine)
    for when in (0, 10, 20):
        recorder.record([bandwidth_observation(at=when, members=[bandwidth_member("c-1")])])
    joined = event(EventKind.MEMBER_JOINED, 12, "c-3")
    deliver(engine, joined, received=13)
    assert reconcile(engine, at(21)).outcomes == {}
    late = 13 + PARTNER_WAIT_SECONDS
    assert reconcile(engine, at(late)).outcomes == {("bandwidth", "unmatched"): 1}
    assert rows(engine, "SELECT COUNT(*) FROM member WHERE member_id = 'c-3'") == [(0,)]
    deliver(engine, event(EventKind.MEMBER_LEFT, 15, "c-3"), received=late + 1)
    stats = reconcile(engine, at(late + 2))
    assert stats.stays == 1
    assert set(outcomes(engine).values()) == {"applied"}


def test_an_event_that_contradicts_a_poll_is_not_applied(engine: Engine) -> None:
    """A join at 25 for c-1, which the polls at 10 and 20 already listed: conflict, and the
    member's times stay polling's."""
    recorder = Recorder(engine)
    for when, members in ((0, []), (10, ["c-1"]), (20, ["c-1"]), (30, ["c-1"])):
        recorder.record([bandwidth_observation(at=when, members=[
            bandwidth_member(m) for m in members])])
    deliver(engine, event(EventKind.MEMBER_JOINED, 25, "c-1"), received=26)
    stats = reconcile(engine, at(31))
    assert stats.outcomes == {("bandwidth", "conflict"): 1}
    assert "no join seen by polling brackets that time" in stats.conflicts[0]
    [(_, _, joined, source, _, _)] = sessions(engine)
    assert source == "observed"
    assert same(joined, at(10))


def test_telnyx_provider_times_are_kept(engine: Engine) -> None:
    """Telnyx's REST answer already gave the join (``created_at``) and leave (``updated_at``):
    the webhook is applied without moving them; the participant is matched on its
    ``call_control_id``."""
    recorder = Recorder(engine)
    recorder.record([telnyx_observation(at=0)])
    recorder.record([telnyx_observation(at=10, members=[telnyx_member("p1", created_at=3)])])
    recorder.record([telnyx_observation(at=20, members=[
        telnyx_member("p1", created_at=3, status="left", updated_at=15)])])
    deliver(engine, event(EventKind.MEMBER_JOINED, 3.001, "cc-p1", provider=Provider.TELNYX,
                          conference="conf-1"),
            event(EventKind.MEMBER_LEFT, 15.002, "cc-p1", provider=Provider.TELNYX,
                  conference="conf-1"), received=21)
    assert reconcile(engine, at(22)).outcomes == {("telnyx", "applied"): 2}
    [(member_id, _, joined, joined_source, left, left_source)] = sessions(engine)
    assert (member_id, joined_source, left_source) == ("p1", "provider", "provider")
    assert same(joined, at(3))
    assert same(left, at(15))


def test_an_end_event_makes_the_conference_due_and_is_checked_by_the_poll(engine: Engine
                                                                          ) -> None:
    """``conferenceCompleted`` arriving makes the target due at once; once a poll past it saw
    the conference completed, it is applied; a poll still seeing it running: conflict."""
    recorder = Recorder(engine)
    recorder.record([bandwidth_observation(at=0, members=[bandwidth_member("c-1")])])
    with engine.begin() as conn:
        conn.execute(text("UPDATE poll_target SET next_poll_at = :later"), {"later": at(100)})
    deliver(engine, event(EventKind.CONFERENCE_ENDED, 5), received=6)
    [(due,)] = rows(engine, "SELECT next_poll_at FROM poll_target")
    assert same(due, at(6))
    recorder.record([bandwidth_observation(at=10, members=[bandwidth_member("c-1")],
                                           completed_at=5)])
    assert reconcile(engine, at(11)).outcomes == {("bandwidth", "applied"): 1}
    deliver(engine, event(EventKind.CONFERENCE_ENDED, 11, conference="conf-bw-2"), received=12)
    recorder.record([bandwidth_observation(at=20, target=bandwidth_target("conf-bw-2"),
                                           members=[bandwidth_member("c-9")])])
    stats = reconcile(engine, at(21))
    assert stats.outcomes == {("bandwidth", "conflict"): 1}


def test_events_of_conferences_not_polled_wait(engine: Engine) -> None:
    deliver(engine, event(EventKind.MEMBER_JOINED, 5, "c-1", conference="conf-unknown"),
            received=6)
    assert reconcile(engine, at(600)).outcomes == {}
    assert outcomes(engine) == {f"{EventKind.MEMBER_JOINED}-c-1-5": "pending"}


def test_reconcile_after_a_rejoin_refines_the_right_stay(engine: Engine) -> None:
    """c-1 present at 10, gone at 20, back at 30, gone at 40: its second join (27) and second
    leave (33) refine the second stay only."""
    recorder = Recorder(engine)
    for when, members in ((0, []), (10, ["c-1"]), (20, []), (30, ["c-1"]), (40, [])):
        recorder.record([bandwidth_observation(at=when, members=[
            bandwidth_member(m) for m in members])])
    deliver(engine, event(EventKind.MEMBER_JOINED, 27, "c-1"),
            event(EventKind.MEMBER_LEFT, 33, "c-1"), received=41)
    assert reconcile(engine, at(42)).outcomes == {("bandwidth", "applied"): 2}
    first, second = sessions(engine)
    assert (first[3], first[5]) == ("observed", "disappeared")
    assert same(second[2], at(27))
    assert same(second[4], at(33))
    assert second[5] == "webhook"


def test_an_event_pending_for_a_day_is_given_up(engine: Engine) -> None:
    """Its conference never polled past it: after ``STALE_SECONDS`` it is ``unmatched`` (and
    so can be pruned), before that it waits."""
    deliver(engine, event(EventKind.MEMBER_JOINED, 5, "c-1", conference="conf-unknown"),
            received=6)
    assert reconcile(engine, at(6 + STALE_SECONDS - 1)).outcomes == {}
    assert reconcile(engine, at(6 + STALE_SECONDS + 1)).outcomes == {("bandwidth", "unmatched"): 1}


def test_a_second_stay_of_one_call_between_polls_does_not_overwrite_the_first(
        engine: Engine) -> None:
    """c-2 came twice between the polls at 10 and 20 (12–13, 15–17): the first stay is
    recorded from its events; the second cannot be placed in a sequence polling never saw, so
    its events are conflicts, and the first stay keeps its exact times."""
    recorder = Recorder(engine)
    for when in (0, 10, 20):
        recorder.record([bandwidth_observation(at=when, members=[bandwidth_member("c-1")])])
    deliver(engine, event(EventKind.MEMBER_JOINED, 12, "c-2"),
            event(EventKind.MEMBER_LEFT, 13, "c-2"), event(EventKind.MEMBER_JOINED, 15, "c-2"),
            event(EventKind.MEMBER_LEFT, 17, "c-2"), received=21)
    stats = reconcile(engine, at(22))
    assert stats.outcomes == {("bandwidth", "applied"): 2, ("bandwidth", "conflict"): 2}
    stays = [s for s in sessions(engine) if s[0] == "c-2"]
    assert len(stays) == 1
    assert same(stays[0][2], at(12))
    assert same(stays[0][4], at(13))


def test_a_later_rejoin_takes_its_own_event(engine: Engine) -> None:
    """c-2's stay 12–13 came from its events; the poll at 30 lists it again (rejoined in
    (20, 30]): the join event at 25 makes that rejoin exact, not the first stay."""
    recorder = Recorder(engine)
    for when in (0, 10, 20):
        recorder.record([bandwidth_observation(at=when, members=[bandwidth_member("c-1")])])
    deliver(engine, event(EventKind.MEMBER_JOINED, 12, "c-2"),
            event(EventKind.MEMBER_LEFT, 13, "c-2"), received=21)
    assert reconcile(engine, at(28)).stays == 1
    recorder.record([bandwidth_observation(at=30, members=[bandwidth_member("c-1"),
                                                           bandwidth_member("c-2")])])
    recorder.record([bandwidth_observation(at=40, members=[bandwidth_member("c-1"),
                                                           bandwidth_member("c-2")])])
    deliver(engine, event(EventKind.MEMBER_JOINED, 25, "c-2"), received=31)
    assert reconcile(engine, at(41)).outcomes == {("bandwidth", "applied"): 1}
    first, second = [s for s in sessions(engine) if s[0] == "c-2"]
    assert (same(first[2], at(12)), same(first[4], at(13))) == (True, True)
    assert same(second[2], at(25))


def test_a_leave_is_never_paired_with_a_later_join(engine: Engine) -> None:
    """The first join of c-3 was lost; it left at 11 and came back at 12.5, between polls:
    no stay 12.5 → 11 is made; both ends wait, then are unmatched."""
    recorder = Recorder(engine)
    for when in (0, 10, 20):
        recorder.record([bandwidth_observation(at=when, members=[bandwidth_member("c-1")])])
    deliver(engine, event(EventKind.MEMBER_LEFT, 11, "c-3"),
            event(EventKind.MEMBER_JOINED, 12.5, "c-3"), received=21)
    assert reconcile(engine, at(22)).outcomes == {}
    later = reconcile(engine, at(22 + PARTNER_WAIT_SECONDS))
    assert later.outcomes == {("bandwidth", "unmatched"): 2}
    assert later.stays == 0


def test_the_last_events_are_applied_by_the_completing_poll(engine: Engine) -> None:
    """The end event made the conference due at once, so the completing poll came 0.4 s after
    the last leave (less than the skew): the completion itself covers them."""
    recorder = Recorder(engine)
    for when in (0, 10):
        recorder.record([bandwidth_observation(at=when, members=[bandwidth_member("c-1")])])
    deliver(engine, event(EventKind.MEMBER_LEFT, 14, "c-1"),
            event(EventKind.CONFERENCE_ENDED, 14), received=14.2)
    recorder.record([bandwidth_observation(at=14.4, completed_at=14)])
    assert reconcile(engine, at(15)).outcomes == {("bandwidth", "applied"): 2}


def test_telnyx_events_of_a_participant_no_poll_listed_are_left_to_polling(
        engine: Engine) -> None:
    """Telnyx lists every participant under an ``id`` its events do not carry: a stay made from
    the events would be the same person twice once a poll or a detail record names it."""
    recorder = Recorder(engine)
    for when in (0, 10, 20):
        recorder.record([telnyx_observation(at=when)])
    deliver(engine, event(EventKind.MEMBER_JOINED, 12, "cc-x", provider=Provider.TELNYX,
                          conference="conf-1"),
            event(EventKind.MEMBER_LEFT, 13, "cc-x", provider=Provider.TELNYX,
                  conference="conf-1"), received=21)
    stats = reconcile(engine, at(23))
    assert stats.outcomes == {("telnyx", "unmatched"): 2}
    assert rows(engine, "SELECT COUNT(*) FROM member") == [(0,)]
