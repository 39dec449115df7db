"""Recorder behaviour for members: joins, leaves, flags, coaching, completion, partial lists."""

from __future__ import annotations

from typing import Any

from databases import fetch
from factories import (
    at,
    bandwidth_member,
    bandwidth_observation,
    telnyx_member,
    telnyx_observation,
)
from sqlalchemy import Engine

from poller.model import MemberState
from poller.store.recorder import Recorder


def _events(engine: Engine, member_id: str) -> list[str]:
    [member] = fetch(engine, "member", member_id=member_id)
    return [e["kind"] for e in fetch(engine, "member_event", member_pk=member["id"])]


def _poll(recorder: Recorder, seconds: float, *members: MemberState, status: str = "in_progress",
          **kwargs: Any) -> None:
    recorder.record([telnyx_observation(at=seconds, status=status, members=members,
                                        **kwargs)])


def test_join_from_provider_created_at(recorder: Recorder, engine: Engine) -> None:
    """A Telnyx participant joins at its created_at (source provider), bracketed by polls."""
    _poll(recorder, 0)
    _poll(recorder, 10, telnyx_member("p1", created_at=4))
    [member] = fetch(engine, "member")
    assert (member["joined_at"], member["joined_at_source"]) == (at(4), "provider")
    [joined] = fetch(engine, "member_event")
    assert (joined["kind"], joined["seq"]) == ("joined", 1)
    assert (joined["previous_observed_at"], joined["observed_at"]) == (at(0), at(10))
    assert joined["provider_changed_at"] == at(4)
    assert joined["detail"] == {"status": "joined", "muted": False, "on_hold": False,
                                "coaching": []}


def test_bandwidth_join_and_disappearance(recorder: Recorder, engine: Engine) -> None:
    """A Bandwidth member joins when first listed and leaves when it stops being listed."""
    recorder.record([bandwidth_observation(at=0, members=[bandwidth_member("c1")])])
    recorder.record([bandwidth_observation(at=10, members=[bandwidth_member("c1"),
                                                           bandwidth_member("c2")])])
    recorder.record([bandwidth_observation(at=20, members=[bandwidth_member("c2")])])
    c1 = fetch(engine, "member", member_id="c1")[0]
    assert (c1["joined_at"], c1["joined_at_source"]) == (at(0), "observed")
    assert (c1["left_at"], c1["left_at_source"]) == (at(20), "disappeared")
    assert c1["last_observed_at"] == at(10)
    assert _events(engine, "c1") == ["joined", "left"]
    left = fetch(engine, "member_event")[-1]
    assert (left["previous_observed_at"], left["observed_at"]) == (at(10), at(20))
    assert left["provider_changed_at"] is None


def test_telnyx_left_status_uses_updated_at(recorder: Recorder, engine: Engine) -> None:
    """Telnyx status 'left' closes the member at its updated_at (source provider)."""
    _poll(recorder, 0, telnyx_member("p1", created_at=-5))
    _poll(recorder, 10, telnyx_member("p1", created_at=-5, status="left", updated_at=7))
    [member] = fetch(engine, "member")
    assert (member["left_at"], member["left_at_source"], member["status"]) == (
        at(7), "provider", "left")
    assert _events(engine, "p1") == ["joined", "left"]
    assert fetch(engine, "member_event")[-1]["provider_changed_at"] == at(7)


def test_every_flag_event_kind(recorder: Recorder, engine: Engine) -> None:
    """Mute, hold, status and coaching changes each make their own numbered event."""
    _poll(recorder, 0, telnyx_member("p1", status="joining"))
    _poll(recorder, 10, telnyx_member("p1", status="joined", updated_at=9))
    _poll(recorder, 20, telnyx_member("p1", muted=True, updated_at=19))
    _poll(recorder, 30, telnyx_member("p1", muted=False, on_hold=True, updated_at=29))
    _poll(recorder, 40, telnyx_member("p1", on_hold=False, coaching=["cc-x"], updated_at=39))
    _poll(recorder, 50, telnyx_member("p1", updated_at=49))
    assert _events(engine, "p1") == ["joined", "status_changed", "muted", "unmuted", "held",
                                     "unheld", "coaching_changed", "coaching_changed"]
    events = fetch(engine, "member_event")
    assert [e["seq"] for e in events] == list(range(1, 9))
    assert events[1]["detail"] == {"from": "joining", "to": "joined"}
    assert events[6]["detail"] == {"from": [], "to": ["cc-x"]}
    assert [e["provider_changed_at"] for e in events[1:]] == [
        at(9), at(19), at(29), at(29), at(39), at(39), at(49)]


def test_rejoin_after_leaving(recorder: Recorder, engine: Engine) -> None:
    """A member listed again after it disappeared has rejoined, and is open again."""
    recorder.record([bandwidth_observation(at=0, members=[bandwidth_member("c1"),
                                                          bandwidth_member("c2")])])
    recorder.record([bandwidth_observation(at=10, members=[bandwidth_member("c2")])])
    recorder.record([bandwidth_observation(at=20, members=[bandwidth_member("c1"),
                                                           bandwidth_member("c2")])])
    assert _events(engine, "c1") == ["joined", "left", "rejoined"]
    c1 = fetch(engine, "member", member_id="c1")[0]
    assert (c1["left_at"], c1["left_at_source"]) == (None, None)


def test_rejoined_carries_the_state_it_rejoined_in(recorder: Recorder, engine: Engine) -> None:
    """``rejoined`` has a ``joined``-like detail; mute and hold are not also separate events."""
    recorder.record([bandwidth_observation(at=0, members=[bandwidth_member("c1", mute=True)])])
    recorder.record([bandwidth_observation(at=10)])
    recorder.record([bandwidth_observation(at=20, members=[
        bandwidth_member("c1", mute=True, hold=True)])])
    recorder.record([bandwidth_observation(at=30, members=[bandwidth_member("c1", hold=True)])])
    events = fetch(engine, "member_event")
    assert [e["kind"] for e in events] == ["joined", "left", "rejoined", "unmuted"]
    assert events[2]["detail"] == {"status": None, "muted": True, "on_hold": True,
                                   "coaching": None}
    assert events[0]["detail"] == {"status": None, "muted": True, "on_hold": False,
                                   "coaching": None}


def test_left_events_name_their_source(recorder: Recorder, engine: Engine) -> None:
    """Every ``left`` event's detail says where its time came from, like ``left_at_source``."""
    _poll(recorder, 0, telnyx_member("p1"), telnyx_member("p2"), telnyx_member("p3"),
          telnyx_member("p4"))
    _poll(recorder, 10, telnyx_member("p1", status="left", updated_at=8),
          telnyx_member("p2", status="left"), telnyx_member("p4"))
    _poll(recorder, 20, telnyx_member("p1", status="left", updated_at=8),
          telnyx_member("p2", status="left"), telnyx_member("p4"), status="completed")
    sources = {}
    for member in fetch(engine, "member"):
        [left] = [e for e in fetch(engine, "member_event", member_pk=member["id"])
                  if e["kind"] == "left"]
        assert left["detail"] == {"source": member["left_at_source"]}
        sources[member["member_id"]] = member["left_at_source"]
    assert sources == {"p1": "provider", "p2": "observed", "p3": "disappeared",
                       "p4": "conference_completed"}


def test_completion_closes_open_members(recorder: Recorder, engine: Engine) -> None:
    """Members still open when the conference completes leave at the completion time."""
    _poll(recorder, 0, telnyx_member("p1"), telnyx_member("p2"))
    _poll(recorder, 10, telnyx_member("p1"), telnyx_member("p2", status="left", updated_at=5))
    _poll(recorder, 20, telnyx_member("p1"), telnyx_member("p2", status="left", updated_at=5),
          status="completed", updated_at=18)
    p1 = fetch(engine, "member", member_id="p1")[0]
    assert (p1["left_at"], p1["left_at_source"]) == (at(18), "conference_completed")
    assert p1["last_observed_at"] == at(20)
    p2 = fetch(engine, "member", member_id="p2")[0]
    assert (p2["left_at"], p2["left_at_source"]) == (at(5), "provider")
    assert _events(engine, "p1") == ["joined", "left"]
    assert _events(engine, "p2") == ["joined", "left"]
    last = fetch(engine, "conference_snapshot")[-1]
    assert last["member_count"] == 0


def test_partial_member_list_fabricates_no_leave(recorder: Recorder, engine: Engine) -> None:
    """Members missing from a possibly partial list (members_complete=False) stay open."""
    _poll(recorder, 0, telnyx_member("p1"), telnyx_member("p2"))
    _poll(recorder, 10, telnyx_member("p1", muted=True), members_complete=False)
    assert _events(engine, "p2") == ["joined"]
    assert fetch(engine, "member", member_id="p2")[0]["left_at"] is None
    _poll(recorder, 20, telnyx_member("p1", muted=True))
    assert _events(engine, "p2") == ["joined", "left"]


def test_member_already_left_on_first_sight(recorder: Recorder, engine: Engine) -> None:
    """A participant first seen with status 'left' joined and left between two polls."""
    _poll(recorder, 0)
    _poll(recorder, 10, telnyx_member("p1", status="left", created_at=2, updated_at=6))
    [member] = fetch(engine, "member")
    assert (member["joined_at"], member["left_at"]) == (at(2), at(6))
    assert _events(engine, "p1") == ["joined", "left"]


def test_unchanged_members_are_not_rewritten(recorder: Recorder, engine: Engine) -> None:
    """A change elsewhere in the conference leaves other members' rows alone."""
    _poll(recorder, 0, telnyx_member("p1"), telnyx_member("p2"))
    stats = recorder.record([telnyx_observation(at=10, members=[
        telnyx_member("p1", muted=True), telnyx_member("p2")])])
    assert stats.updated["member"] == 1
    assert stats.member_events == 1
