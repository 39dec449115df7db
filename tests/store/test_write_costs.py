"""The write cost of a poll, pinned: rows inserted and updated per table, and statements."""

from __future__ import annotations

from databases import fetch, statements
from factories import at, failure, telnyx_member, telnyx_observation, telnyx_target
from sqlalchemy import Engine

from poller.store.recorder import Recorder


def _writes(sent: list[str]) -> list[str]:
    """The data-changing statements among ``sent`` (first three words: verb and table)."""
    return [" ".join(s.split()[:3]) for s in sent
            if s.startswith(("INSERT", "UPDATE", "DELETE"))]


def test_cost_of_unchanged_and_changed_polls(recorder: Recorder, engine: Engine) -> None:
    """Unchanged: one batched target UPDATE, nothing else. A change: only the rows it needs.

    DESIGN §3 invariant 1: a batch of unchanged polls inserts no row and updates only
    ``poll_target`` (one row each, in one executemany statement); the ``conference`` row is
    not touched (``poll_target.last_success_at`` is the "last seen" time).
    """
    targets = [telnyx_target(f"conf-{i}") for i in range(100)]
    members = [telnyx_member("p1"), telnyx_member("p2")]
    recorder.record([telnyx_observation(at=0, target=t, members=members) for t in targets])

    with statements(engine) as sent:
        unchanged = recorder.record([telnyx_observation(at=10, target=t, members=members)
                                     for t in targets])
    assert unchanged.inserted == {}
    assert unchanged.updated == {"poll_target": 100}
    assert unchanged.unchanged == 100
    # The poll counters ride in the one batched target UPDATE: no statement per poll. And
    # nothing is read: the recorder wrote these targets before (poller.store.unchanged).
    assert _writes(sent) == ["UPDATE poll_target SET"]
    assert [s for s in sent if s.startswith("SELECT")] == []
    assert {(t["poll_count"], t["failure_count"]) for t in fetch(engine, "poll_target")} == {
        (2, 0)}

    with statements(engine) as sent:
        one = recorder.record([telnyx_observation(at=20, target=targets[0], members=members)])
    assert (one.inserted, one.updated) == ({}, {"poll_target": 1})
    assert _writes(sent) == ["UPDATE poll_target SET"]

    changed = recorder.record([
        telnyx_observation(at=30, target=t, status="completed", updated_at=29,
                           members=[telnyx_member("p1", muted=True), telnyx_member("p2")])
        for t in targets[:1]
    ])
    assert changed.inserted == {"conference_snapshot": 1, "status_transition": 1,
                                "member_event": 3}  # p1 muted; p1 and p2 closed by completion
    assert changed.updated == {"conference": 1, "conference_snapshot": 1, "member": 2,
                               "poll_target": 1}

    muted = recorder.record([telnyx_observation(
        at=30, target=targets[1], members=[telnyx_member("p1", muted=True), telnyx_member("p2")])])
    assert muted.inserted == {"conference_snapshot": 1, "member_event": 1}
    assert muted.updated == {"conference": 1, "conference_snapshot": 1, "member": 1,
                             "poll_target": 1}

    first = recorder.record([telnyx_observation(at=30, target=telnyx_target("new"),
                                                members=members)])
    assert first.inserted == {"poll_target": 1, "conference": 1, "conference_snapshot": 1,
                              "status_transition": 1, "member": 2, "member_event": 2}
    assert first.updated == {"poll_target": 1}


def test_failures_cost_one_target_update(recorder: Recorder, engine: Engine) -> None:
    """Several results of one target in a batch still make one target row update."""
    target = telnyx_target()
    recorder.record([telnyx_observation(at=0, target=target)])
    with statements(engine) as sent:
        stats = recorder.record([failure(at=10, target=target, kind="timeout", http_status=None),
                                 failure(at=20, target=target, kind="timeout", http_status=None),
                                 telnyx_observation(at=30, target=target)])
    assert stats.updated == {"poll_target": 1}
    assert stats.inserted == {"poll_error": 2}
    assert _writes(sent) == ["UPDATE poll_target SET", "INSERT INTO poll_error"]
    [row] = fetch(engine, "poll_target")
    assert (row["poll_count"], row["failure_count"]) == (4, 2)


def test_gone_and_back_write_the_conference_row(recorder: Recorder, engine: Engine) -> None:
    """A 404 after a sighting, and a sighting after it, are changes: one conference update each."""
    target = telnyx_target()
    recorder.record([telnyx_observation(at=0, target=target)])
    gone = recorder.record([failure(at=10, target=target)])
    assert (gone.inserted, gone.updated) == ({"poll_error": 1}, {"conference": 1,
                                                                 "poll_target": 1})
    back = recorder.record([telnyx_observation(at=20, target=target)])
    assert back.outcomes == {"unchanged": 1}
    assert (back.inserted, back.updated) == ({}, {"conference": 1, "poll_target": 1})
    [conference] = fetch(engine, "conference")
    assert (conference["gone_at"], conference["last_changed_at"]) == (None, at(20))
