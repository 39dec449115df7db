"""Recorder behaviour for conferences: current view, snapshots, transitions, completion, gone."""

from __future__ import annotations

from dataclasses import replace

from databases import fetch, row_counts
from factories import (
    T0,
    at,
    bandwidth_member,
    bandwidth_observation,
    failure,
    telnyx_member,
    telnyx_observation,
    telnyx_target,
)
from sqlalchemy import Engine

from poller.store.recorder import Recorder
from poller.store.rows import ScheduleUpdate


def test_first_sighting_is_transition_one(recorder: Recorder, engine: Engine) -> None:
    """The first observation inserts the conference, a snapshot and transition seq 1 from NULL."""
    stats = recorder.record([telnyx_observation(at=0, status="init")])
    assert stats.inserted["conference"] == 1
    assert stats.transitions == 1
    [conference] = fetch(engine, "conference")
    assert conference["status"] == "init"
    assert conference["first_observed_at"] == conference["last_changed_at"] == at(0)
    [transition] = fetch(engine, "status_transition")
    assert (transition["seq"], transition["from_status"], transition["to_status"]) == (
        1, None, "init")
    assert transition["previous_observed_at"] is None
    assert transition["provider_changed_at"] == at(-60)  # created_at: it was born in init


def test_status_change_bracket_and_provider_time(recorder: Recorder, engine: Engine) -> None:
    """A status change records (last poll with the old status, first poll with the new]."""
    recorder.record([telnyx_observation(at=0, status="init")])
    recorder.record([telnyx_observation(at=10, status="init")])
    recorder.record([telnyx_observation(at=20, status="in_progress", updated_at=14)])
    transitions = fetch(engine, "status_transition")
    assert [t["seq"] for t in transitions] == [1, 2]
    second = transitions[1]
    assert (second["from_status"], second["to_status"]) == ("init", "in_progress")
    assert (second["from_provider_status"], second["to_provider_status"]) == (
        "init", "in_progress")
    assert second["previous_observed_at"] == at(10)
    assert second["observed_at"] == at(20)
    assert second["provider_changed_at"] == at(14)


def test_snapshots_are_scd2(recorder: Recorder, engine: Engine) -> None:
    """Each distinct state is a snapshot; the previous one closes when the next opens."""
    recorder.record([telnyx_observation(at=0, status="init")])
    recorder.record([telnyx_observation(at=10, status="in_progress")])
    recorder.record([telnyx_observation(at=20, status="in_progress")])
    snapshots = fetch(engine, "conference_snapshot")
    assert [(s["valid_from"], s["valid_to"]) for s in snapshots] == [(at(0), at(10)),
                                                                      (at(10), None)]
    [conference] = fetch(engine, "conference")
    assert conference["content_hash"] == snapshots[-1]["content_hash"]
    assert snapshots[-1]["state"]["conference"]["status"] == "in_progress"
    assert snapshots[-1]["raw"]["conference"]["status"] == "in_progress"


def test_telnyx_completion_uses_updated_at(recorder: Recorder, engine: Engine) -> None:
    """Telnyx completion time is updated_at of the first completed observation."""
    recorder.record([telnyx_observation(at=0, updated_at=-5)])
    recorder.record([telnyx_observation(at=30, status="completed", updated_at=25,
                                        end_reason="host_left")])
    recorder.record([telnyx_observation(at=40, status="completed", updated_at=38,
                                        end_reason="host_left")])
    [conference] = fetch(engine, "conference")
    assert conference["completed_at"] == at(25)
    assert conference["completed_at_source"] == "provider_updated_at"
    assert conference["duration_seconds"] == 85.0  # created at -60
    assert conference["end_reason"] == "host_left"
    last = fetch(engine, "status_transition")[-1]
    assert (last["to_status"], last["end_reason"], last["provider_changed_at"]) == (
        "completed", "host_left", at(25))
    assert last["previous_observed_at"] == at(0)


def test_bandwidth_completion_uses_completed_time(recorder: Recorder, engine: Engine) -> None:
    """Bandwidth completedTime is the completion time, source "provider", no end reason."""
    recorder.record([bandwidth_observation(at=0, members=[bandwidth_member("c1")])])
    recorder.record([bandwidth_observation(at=20, completed_at=17)])
    [conference] = fetch(engine, "conference")
    assert (conference["completed_at"], conference["completed_at_source"]) == (at(17), "provider")
    assert conference["end_reason"] is None
    assert conference["provider_status"] is None
    last = fetch(engine, "status_transition")[-1]
    assert last["provider_changed_at"] == at(17)


def test_completion_without_provider_time_is_observed(recorder: Recorder, engine: Engine) -> None:
    """Without any provider time the first poll that saw it completed is the completion time."""
    recorder.record([telnyx_observation(at=0, created_at=None)])
    recorder.record([telnyx_observation(at=30, status="completed", created_at=None)])
    [conference] = fetch(engine, "conference")
    assert (conference["completed_at"], conference["completed_at_source"]) == (at(30), "observed")
    assert conference["duration_seconds"] is None


def test_unknown_status_is_stored_as_seen(recorder: Recorder, engine: Engine) -> None:
    """An unknown provider status is recorded and transitioned to, not refused."""
    recorder.record([telnyx_observation(at=0, status="in_progress")])
    recorder.record([telnyx_observation(at=10, status="paused")])
    assert [t["to_status"] for t in fetch(engine, "status_transition")] == ["in_progress",
                                                                             "paused"]


def test_not_found_after_sighting_marks_gone_once(recorder: Recorder, engine: Engine) -> None:
    """A 404 for a seen conference sets gone_at once and fabricates no history."""
    recorder.record([telnyx_observation(at=0)])
    before = row_counts(engine)
    recorder.record([failure(at=10)])
    recorder.record([failure(at=20)])
    [conference] = fetch(engine, "conference")
    assert conference["gone_at"] == at(10)
    assert conference["status"] == "in_progress"
    assert conference["completed_at"] is None
    after = row_counts(engine)
    assert after == before | {"poll_error": 2}


def test_not_found_before_sighting_creates_no_conference(recorder: Recorder,
                                                        engine: Engine) -> None:
    """A 404 for a never-seen conference writes only the target and the error."""
    recorder.record([failure(at=0)])
    assert row_counts(engine) == {"poll_target": 1, "conference": 0, "conference_snapshot": 0,
                                  "status_transition": 0, "member": 0, "member_event": 0,
                                  "poll_error": 1}


def test_seen_again_after_gone_clears_gone(recorder: Recorder, engine: Engine) -> None:
    """A conference answering again after a 404 is no longer marked gone."""
    recorder.record([telnyx_observation(at=0)])
    recorder.record([failure(at=10)])
    recorder.record([telnyx_observation(at=20)])
    assert fetch(engine, "conference")[0]["gone_at"] is None


def test_target_bookkeeping(recorder: Recorder, engine: Engine) -> None:
    """Failures count up and keep the first 404 time; a success resets them."""
    recorder.record([failure(at=0, kind="server_error", http_status=503, message="overloaded")])
    recorder.record([failure(at=10)])
    recorder.record([failure(at=20)])
    [target] = fetch(engine, "poll_target")
    assert target["consecutive_failures"] == 3
    assert target["not_found_since"] == at(10)
    assert target["last_outcome"] == "not_found"
    assert target["last_polled_at"] == at(20)
    assert target["last_success_at"] is None
    assert target["created_at"] == T0
    errors = fetch(engine, "poll_error")
    assert [(e["kind"], e["http_status"]) for e in errors] == [
        ("server_error", 503), ("not_found", 404), ("not_found", 404)]
    recorder.record([telnyx_observation(at=30)])
    recorder.record([telnyx_observation(at=40)])
    [target] = fetch(engine, "poll_target")
    assert (target["consecutive_failures"], target["last_error"], target["not_found_since"]) == (
        0, None, None)
    assert (target["last_success_at"], target["last_outcome"]) == (at(40), "unchanged")


def test_schedule_update_written_with_the_poll(recorder: Recorder, engine: Engine) -> None:
    """The daemon's schedule decision lands in the same transaction as the poll."""
    obs = telnyx_observation(at=0, status="completed", updated_at=-1)
    recorder.record([obs], schedule={obs.target: ScheduleUpdate(next_poll_at=at(60))})
    assert fetch(engine, "poll_target")[0]["next_poll_at"] == at(60)
    later = telnyx_observation(at=60, status="completed", updated_at=-1)
    retire = ScheduleUpdate(next_poll_at=at(3600), state="retired", retired_reason="completed")
    recorder.record([later], schedule={later.target: retire})
    [target] = fetch(engine, "poll_target")
    assert (target["state"], target["retired_reason"], target["retired_at"]) == (
        "retired", "completed", T0)
    assert target["next_poll_at"] == at(3600)


def test_batch_of_many_conferences(recorder: Recorder, engine: Engine) -> None:
    """One batch may hold several polls of several conferences, in any order."""
    targets = [telnyx_target(f"conf-{i}") for i in range(5)]
    batch = [telnyx_observation(at=t, target=target, status=s,
                                members=[telnyx_member("p1")] if t == 20 else [])
             for target in targets for t, s in ((20, "completed"), (0, "init"), (10, "init"))]
    stats = recorder.record(batch)
    assert stats.outcomes == {"changed": 10, "unchanged": 5}
    for conference in fetch(engine, "conference"):
        transitions = fetch(engine, "status_transition", conference_pk=conference["id"])
        assert [t["to_status"] for t in transitions] == ["init", "completed"]
    assert len(fetch(engine, "member")) == 5


def test_times_round_trip_as_aware_utc(recorder: Recorder, engine: Engine) -> None:
    """Every timestamp read back is timezone-aware UTC, on SQLite too."""
    recorder.record([telnyx_observation(at=0, updated_at=-1,
                                        members=[telnyx_member("p1", created_at=-2)])])
    [conference] = fetch(engine, "conference")
    [member] = fetch(engine, "member")
    for value in (conference["created_at"], conference["updated_at"], member["joined_at"],
                  conference["first_observed_at"]):
        assert value.tzinfo is not None
        assert value.utcoffset().total_seconds() == 0
    assert conference["created_at"] == at(-60)


def test_warnings_are_stored_with_the_state_they_were_seen_in(recorder: Recorder,
                                                               engine: Engine) -> None:
    """A parser's warnings are stored with the snapshot of that state and reported once; the
    same state polled again adds nothing, a new state has its own (or none)."""
    odd = replace(telnyx_observation(at=0), warnings=("conference.region: unknown value",))
    first = recorder.record([odd])
    again = recorder.record([replace(odd, observed_at=at(10))])
    later = recorder.record([telnyx_observation(at=20, status="completed")])
    assert first.warnings == [(odd.target, "conference.region: unknown value")]
    assert (again.warnings, later.warnings) == ([], [])
    snapshots = sorted(fetch(engine, "conference_snapshot"), key=lambda s: s["valid_from"])
    assert [s["warnings"] for s in snapshots] == [["conference.region: unknown value"], None]
