"""The write cost of a poll, pinned: rows inserted and updated per table, and statements."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from databases import fetch
from factories import failure, telnyx_member, telnyx_observation, telnyx_target
from sqlalchemy import Engine, event

from poller.store.recorder import Recorder


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements sent to the database inside the block (an executemany is one)."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_cost_of_unchanged_and_changed_polls(recorder: Recorder, engine: Engine) -> None:
    """Unchanged: two row updates, no insert. Status + member change: only the rows it needs."""
    targets = [telnyx_target(f"conf-{i}") for i in range(100)]
    members = [telnyx_member("p1"), telnyx_member("p2")]
    recorder.record([telnyx_observation(at=0, target=t, members=members) for t in targets])

    with statements(engine) as sent:
        unchanged = recorder.record([telnyx_observation(at=10, target=t, members=members)
                                     for t in targets])
    assert unchanged.inserted == {}
    assert unchanged.updated == {"poll_target": 100, "conference": 100}
    assert unchanged.unchanged == 100
    # The poll counters ride in the one batched target UPDATE: no statement per poll.
    assert sum(s.startswith("UPDATE poll_target") for s in sent) == 1
    assert {(t["poll_count"], t["failure_count"]) for t in fetch(engine, "poll_target")} == {
        (2, 0)}

    changed = recorder.record([
        telnyx_observation(at=20, target=t, status="completed", updated_at=19,
                           members=[telnyx_member("p1", muted=True), telnyx_member("p2")])
        for t in targets[:1]
    ])
    assert changed.inserted == {"conference_snapshot": 1, "status_transition": 1,
                                "member_event": 3}  # p1 muted; p1 and p2 closed by completion
    assert changed.updated == {"conference": 1, "conference_snapshot": 1, "member": 2,
                               "poll_target": 1}


def test_failures_cost_one_target_update(recorder: Recorder, engine: Engine) -> None:
    """Several results of one target in a batch still make one target row update."""
    target = telnyx_target()
    recorder.record([telnyx_observation(at=0, target=target)])
    with statements(engine) as sent:
        stats = recorder.record([failure(at=10, target=target, kind="timeout", http_status=None),
                                 failure(at=20, target=target, kind="timeout", http_status=None),
                                 telnyx_observation(at=30, target=target)])
    assert stats.updated == {"poll_target": 1, "conference": 1}
    assert stats.inserted == {"poll_error": 2}
    assert sum(s.startswith("UPDATE poll_target") for s in sent) == 1
    [row] = fetch(engine, "poll_target")
    assert (row["poll_count"], row["failure_count"]) == (4, 2)
