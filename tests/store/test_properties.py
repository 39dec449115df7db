"""Property tests: random observation sequences always give one clean, replay-proof history."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

from databases import dump_tables, fetch
from factories import failure, telnyx_member, telnyx_observation, telnyx_target
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from poller.model import MemberState, Observation, PollResult
from poller.store.diff import plan_observation
from poller.store.recorder import Recorder
from poller.store.rows import ConferenceView, MemberView, Outcome

STATUSES = ["init", "in_progress", "completed", "paused", "weird-new-status"]
_conference_ids = itertools.count()


@st.composite
def members(draw: st.DrawFn) -> tuple[MemberState, ...]:
    """A random member list: any subset of four members, each with random flags."""
    chosen = draw(st.lists(st.sampled_from(["m1", "m2", "m3", "m4"]), unique=True, max_size=4))
    return tuple(
        telnyx_member(member_id, status=draw(st.sampled_from(["joining", "joined", "left", None])),
                      muted=draw(st.booleans()), on_hold=draw(st.booleans()),
                      coaching=draw(st.sampled_from([(), ("cc-m1",), ("cc-m2", "cc-m3")])),
                      updated_at=draw(st.sampled_from([None, -1, 1])))
        for member_id in chosen
    )


@st.composite
def timelines(draw: st.DrawFn) -> list[PollResult]:
    """Polls of one fresh conference at increasing times, with failures and random gaps."""
    target = telnyx_target(f"prop-{next(_conference_ids)}")
    results: list[PollResult] = []
    seconds = 0
    for _ in range(draw(st.integers(1, 10))):
        seconds += draw(st.integers(1, 300))
        if draw(st.integers(0, 5)) == 0:
            results.append(failure(at=seconds, target=target,
                                   kind=draw(st.sampled_from(["not_found", "timeout"]))))
            continue
        results.append(telnyx_observation(
            at=seconds, target=target, status=draw(st.sampled_from(STATUSES)),
            members=draw(members()), members_complete=draw(st.booleans()),
            updated_at=draw(st.sampled_from([None, seconds - 1])),
        ))
    return results


def _split(results: list[PollResult], cuts: list[int]) -> list[list[PollResult]]:
    points = sorted({c % (len(results) + 1) for c in cuts} | {0, len(results)})
    return [results[a:b] for a, b in itertools.pairwise(points) if b > a]


def _assert_clean_history(engine: Engine, conference_id: str) -> None:
    conferences = fetch(engine, "conference", conference_id=conference_id)
    if not conferences:
        return
    pk = conferences[0]["id"]
    transitions = fetch(engine, "status_transition", conference_pk=pk)
    assert [t["seq"] for t in transitions] == list(range(1, len(transitions) + 1))
    assert transitions[0]["from_status"] is None
    for before, after in itertools.pairwise(transitions):
        assert after["from_status"] == before["to_status"]
        assert after["previous_observed_at"] < after["observed_at"]
    assert transitions[-1]["to_status"] == conferences[0]["status"]
    snapshots = fetch(engine, "conference_snapshot", conference_pk=pk)
    assert sum(1 for s in snapshots if s["valid_to"] is None) == 1
    for member in fetch(engine, "member", conference_pk=pk):
        events = fetch(engine, "member_event", member_pk=member["id"])
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert events[0]["kind"] == "joined"


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(results=timelines(), cuts=st.lists(st.integers(0, 20), max_size=4),
       prefix=st.integers(0, 20))
def test_random_timelines_record_cleanly(engine: Engine, results: list[PollResult],
                                         cuts: list[int], prefix: int) -> None:
    """Transitions chain unbroken with seq 1..n, and replaying any prefix changes nothing."""
    recorder = Recorder(engine)
    for batch in _split(results, cuts):
        recorder.record(batch)
    _assert_clean_history(engine, results[0].target.conference_id)
    before = dump_tables(engine)
    recorder.record(results[: prefix % (len(results) + 1)])
    assert dump_tables(engine) == before


def _replay(results: list[PollResult]) -> list[Any]:
    """Run the pure diff over a timeline, returning every plan."""
    conference: ConferenceView | None = None
    stored: dict[str, MemberView] = {}
    last_seen: datetime | None = None
    plans = []
    for result in results:
        if not isinstance(result, Observation):
            continue
        plan = plan_observation(conference, stored, result, last_seen=last_seen)
        plans.append(plan)
        conference, stored = plan.conference, dict(plan.members)
        last_seen = result.observed_at
    return plans


@settings(max_examples=200, deadline=None)
@given(results=timelines())
def test_diff_chains_and_is_idempotent(results: list[PollResult]) -> None:
    """The pure diff chains statuses, and re-applying an observation is always stale."""
    plans = _replay(results)
    transitions = [t for plan in plans for t in plan.transitions]
    if transitions:
        assert transitions[0].from_status is None
    for before, after in itertools.pairwise(transitions):
        assert after.from_status == before.to_status
    if plans:
        observation = [r for r in results if isinstance(r, Observation)][-1]
        again = plan_observation(plans[-1].conference, plans[-1].members, observation,
                                 last_seen=observation.observed_at)
        assert again.outcome is Outcome.STALE
    for plan in plans:
        if plan.outcome is not Outcome.CHANGED:
            assert (plan.transitions, plan.member_events, plan.snapshot) == ((), (), None)
        for view in plan.members.values():
            assert isinstance(view.first_observed_at, datetime)
            assert view.left_at is None or view.left_at_source is not None
