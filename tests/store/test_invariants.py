"""DESIGN §3 invariants: write on change, exactly-once effect, gaps are gaps."""

from __future__ import annotations

import threading
import time

import pytest
from databases import dump_tables, fetch, row_counts
from factories import at, failure, telnyx_member, telnyx_observation, telnyx_target
from sqlalchemy import Engine, text

from poller.model import PollResult
from poller.store.database import make_engine
from poller.store.recorder import Recorder, RecordStats

HISTORY = ("conference_snapshot", "status_transition", "member", "member_event", "poll_error")


def _timeline(conference_id: str = "conf-1") -> list[PollResult]:
    target = telnyx_target(conference_id)
    return [
        telnyx_observation(at=0, target=target, status="init"),
        telnyx_observation(at=10, target=target, members=[telnyx_member("p1")]),
        telnyx_observation(at=20, target=target, members=[telnyx_member("p1", muted=True),
                                                          telnyx_member("p2")]),
        failure(at=30, target=target, kind="timeout", http_status=None),
        telnyx_observation(at=40, target=target, members=[telnyx_member("p2")]),
        telnyx_observation(at=50, target=target, status="completed", updated_at=45,
                           members=[telnyx_member("p2")]),
        failure(at=60, target=target),
    ]


def test_unchanged_observation_writes_no_history(recorder: Recorder, engine: Engine) -> None:
    """A poll equal to the last one adds no row anywhere and updates only bookkeeping.

    Every table but ``poll_target`` is left exactly as it was, the ``conference`` row included.
    """
    recorder.record([telnyx_observation(at=0, members=[telnyx_member("p1")])])
    before = row_counts(engine)
    tables = dump_tables(engine)
    stats = recorder.record([telnyx_observation(at=10, members=[telnyx_member("p1")])])
    assert row_counts(engine) == before
    assert stats.inserted == {}
    assert stats.updated == {"poll_target": 1}
    assert stats.unchanged == 1
    after = dump_tables(engine)
    assert {t: rows for t, rows in after.items() if t != "poll_target"} == {
        t: rows for t, rows in tables.items() if t != "poll_target"}
    [target] = fetch(engine, "poll_target")
    assert (target["last_success_at"], target["last_polled_at"]) == (at(10), at(10))
    [conference] = fetch(engine, "conference")
    assert conference["last_changed_at"] == at(0)


def test_bracket_spans_unchanged_polls(recorder: Recorder, engine: Engine) -> None:
    """After unchanged polls, a change's bracket starts at the last of them, not the last change.

    The conference row was last written at 0; the polls at 10 and 20 only moved
    ``poll_target.last_success_at``, which is where the bracket of the change at 30 starts.
    """
    for seconds in (0, 10, 20):
        recorder.record([telnyx_observation(at=seconds, members=[telnyx_member("p1")])])
    recorder.record([telnyx_observation(at=30, status="completed", updated_at=25,
                                        members=[telnyx_member("p1", muted=True)])])
    [_, completed] = fetch(engine, "status_transition")
    assert (completed["previous_observed_at"], completed["observed_at"]) == (at(20), at(30))
    events = fetch(engine, "member_event")
    assert [(e["kind"], e["previous_observed_at"]) for e in events[1:]] == [
        ("muted", at(20)), ("left", at(20))]
    [conference] = fetch(engine, "conference")
    assert conference["last_changed_at"] == at(30)


def test_observation_after_a_later_failure_is_recorded_once(recorder: Recorder,
                                                            engine: Engine) -> None:
    """An observation older than a recorded failure but newer than the last success counts.

    It is history nobody recorded yet (recorded, as before), moves ``last_success_at`` (so a
    replay of it is stale and the next bracket starts there), and counts in no poll counter.
    """
    recorder.record([telnyx_observation(at=0)])
    recorder.record([failure(at=30, kind="timeout", http_status=None)])
    stats = recorder.record([telnyx_observation(at=20, status="completed", updated_at=15)])
    assert stats.outcomes == {"changed": 1}
    [target] = fetch(engine, "poll_target")
    assert (target["last_success_at"], target["last_polled_at"]) == (at(20), at(30))
    assert (target["poll_count"], target["last_outcome"]) == (2, "timeout")
    [_, completed] = fetch(engine, "status_transition")
    assert (completed["previous_observed_at"], completed["observed_at"]) == (at(0), at(20))
    before = dump_tables(engine)
    assert recorder.record([telnyx_observation(at=20, status="completed", updated_at=15)]
                           ).outcomes == {"stale": 1}
    assert dump_tables(engine) == before


def test_out_of_order_observation_keeps_a_later_404(recorder: Recorder, engine: Engine) -> None:
    """A 404 newer than an observation delivered after it still marks the conference gone."""
    recorder.record([telnyx_observation(at=0)])
    recorder.record([failure(at=30)])
    recorder.record([telnyx_observation(at=20)])
    [conference] = fetch(engine, "conference")
    assert (conference["gone_at"], conference["last_changed_at"]) == (at(30), at(30))
    recorder.record([telnyx_observation(at=40)])
    [conference] = fetch(engine, "conference")
    assert (conference["gone_at"], conference["last_changed_at"]) == (None, at(40))


def test_same_batch_twice_changes_nothing(recorder: Recorder, engine: Engine) -> None:
    """Replaying a whole batch leaves every table exactly as it was."""
    batch = _timeline()
    recorder.record(batch)
    before = dump_tables(engine)
    stats = recorder.record(batch)
    assert dump_tables(engine) == before
    assert stats.outcomes == {"stale": 5, "failure": 2}


def test_one_batch_equals_poll_by_poll(engine: Engine, database_url: str) -> None:
    """Recording a timeline in one batch or one poll at a time gives the same history."""
    Recorder(engine).record(_timeline("conf-a"))
    recorder = Recorder(engine)
    for result in _timeline("conf-b"):
        recorder.record([result])
    rows = dump_tables(engine)
    for table in HISTORY:
        by_conf = [{k: v for k, v in r.items()
                    if not k.endswith(("id", "_pk")) and k not in ("content_hash", "state", "raw")}
                   for r in rows[table]]
        half = len(by_conf) // 2
        assert by_conf[:half] == by_conf[half:], table


def test_out_of_order_results_are_ignored(recorder: Recorder, engine: Engine) -> None:
    """An observation older than the stored state is ignored, however it differs."""
    recorder.record([telnyx_observation(at=20, status="completed", updated_at=15)])
    before = dump_tables(engine)
    stats = recorder.record([telnyx_observation(at=10, status="in_progress"),
                             failure(at=5)])
    assert stats.outcomes == {"stale": 1, "failure": 1}
    assert dump_tables(engine) == before


def _counters(engine: Engine) -> tuple[int, int]:
    [target] = fetch(engine, "poll_target")
    return target["poll_count"], target["failure_count"]


def test_poll_counters_count_each_poll_once(recorder: Recorder, engine: Engine) -> None:
    """Every new result counts once; replays and results older than the last poll never do."""
    recorder.record(_timeline())
    assert _counters(engine) == (7, 2)
    recorder.record(_timeline())
    assert _counters(engine) == (7, 2)
    recorder.record([telnyx_observation(at=45, members=[telnyx_member("p2")]),
                     failure(at=55, kind="timeout", http_status=None)])
    assert _counters(engine) == (7, 2)
    recorder.record([failure(at=70, kind="timeout", http_status=None),
                     telnyx_observation(at=80, status="completed", updated_at=45,
                                        members=[telnyx_member("p2")])])
    assert _counters(engine) == (9, 3)


def test_stale_failure_is_ignored_entirely(recorder: Recorder, engine: Engine) -> None:
    """A failure not newer than the target's last poll leaves no trace, not even ``gone_at``.

    The 404 at 20 is newer than the conference's last observation (0) but older than the
    timeout at 30 already recorded: it arrived out of order.
    """
    recorder.record([telnyx_observation(at=0)])
    recorder.record([failure(at=30, kind="timeout", http_status=None)])
    before = dump_tables(engine)
    stats = recorder.record([failure(at=20)])
    assert stats.inserted == {}
    assert dump_tables(engine) == before
    assert fetch(engine, "conference")[0]["gone_at"] is None


@pytest.mark.postgres
def test_two_recorders_race_on_postgresql(postgres_url: str) -> None:
    """Two recorders applying overlapping batches at once never duplicate or misnumber rows."""
    database_url = postgres_url
    targets = [telnyx_target(f"conf-{i}") for i in range(6)]
    timelines = {t: _timeline(t.conference_id) for t in targets}
    batches = [[r for t in targets for r in timelines[t][:n]] for n in range(1, 8)]
    engines = [make_engine(database_url) for _ in range(2)]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []
    attempts: list[int] = []

    def run(engine: Engine, order: list[list[PollResult]]) -> None:
        recorder = Recorder(engine)
        try:
            barrier.wait()
            for batch in order:
                attempts.append(recorder.record(batch).attempts)
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(engines[0], batches)),
               threading.Thread(target=run, args=(engines[1], batches[::2] + batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    concurrent = dump_tables(engines[0])
    for engine in engines:
        engine.dispose()
    _assert_one_clean_history(concurrent, len(targets))


def _assert_one_clean_history(rows: dict[str, list[dict[str, object]]], conferences: int) -> None:
    assert len(rows["conference"]) == conferences
    for conference in rows["conference"]:
        pk = conference["id"]
        transitions = [t for t in rows["status_transition"] if t["conference_pk"] == pk]
        assert [t["seq"] for t in transitions] == [1, 2, 3]
        assert [t["to_status"] for t in transitions] == ["init", "in_progress", "completed"]
        snapshots = [s for s in rows["conference_snapshot"] if s["conference_pk"] == pk]
        assert len(snapshots) == 5
        assert sum(1 for s in snapshots if s["valid_to"] is None) == 1
    per_member: dict[object, list[object]] = {}
    for event in rows["member_event"]:
        per_member.setdefault(event["member_pk"], []).append(event["seq"])
    assert all(seqs == list(range(1, len(seqs) + 1)) for seqs in per_member.values())
    assert len(rows["member"]) == 2 * conferences
    assert len(rows["poll_error"]) == 2 * conferences


@pytest.mark.postgres
def test_lost_insert_race_is_retried(postgres_url: str) -> None:
    """A conference first inserted by another transaction makes the recorder retry, not fail."""
    engine = make_engine(postgres_url)
    observation = telnyx_observation(at=10)
    outcome: list[object] = []
    with engine.connect() as rival, engine.connect() as monitor:
        rival.execute(text(
            "INSERT INTO conference (provider, account, conference_id, status, first_observed_at,"
            " last_changed_at) VALUES ('telnyx', :account, :conference_id, 'init', :t, :t)"),
            {"account": observation.target.account,
             "conference_id": observation.target.conference_id, "t": at(0)})
        worker = threading.Thread(
            target=lambda: outcome.append(Recorder(engine).record([observation])))
        worker.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not monitor.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database()")).scalar_one():
            monitor.rollback()  # a fresh snapshot for the next look
        rival.commit()
        worker.join()
    engine.dispose()
    [stats] = outcome
    assert isinstance(stats, RecordStats)
    assert stats.attempts == 2
    assert stats.outcomes == {"changed": 1}
