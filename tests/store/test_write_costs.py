"""The write cost of a poll, pinned: rows inserted and updated per table."""

from __future__ import annotations

from factories import telnyx_member, telnyx_observation, telnyx_target

from poller.store.recorder import Recorder


def test_cost_of_unchanged_and_changed_polls(recorder: Recorder) -> None:
    """Unchanged: two row updates, no insert. Status + member change: only the rows it needs."""
    targets = [telnyx_target(f"conf-{i}") for i in range(100)]
    members = [telnyx_member("p1"), telnyx_member("p2")]
    recorder.record([telnyx_observation(at=0, target=t, members=members) for t in targets])

    unchanged = recorder.record([telnyx_observation(at=10, target=t, members=members)
                                 for t in targets])
    assert unchanged.inserted == {}
    assert unchanged.updated == {"poll_target": 100, "conference": 100}
    assert unchanged.unchanged == 100

    changed = recorder.record([
        telnyx_observation(at=20, target=t, status="completed", updated_at=19,
                           members=[telnyx_member("p1", muted=True), telnyx_member("p2")])
        for t in targets[:1]
    ])
    assert changed.inserted == {"conference_snapshot": 1, "status_transition": 1,
                                "member_event": 3}  # p1 muted; p1 and p2 closed by completion
    assert changed.updated == {"conference": 1, "conference_snapshot": 1, "member": 2,
                               "poll_target": 1}
