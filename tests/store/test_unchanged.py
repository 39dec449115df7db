"""The recorder's fast path for unchanged polls: one guarded UPDATE, the same rows as the full
path, and the full path whenever the guard finds the target not as this recorder left it."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from functools import partial
from typing import Any

import pytest
from databases import dump_tables, fetch, statements
from factories import T0, at, failure, telnyx_member, telnyx_observation, telnyx_target
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from poller.config.settings import PollingSettings
from poller.model import Observation, PollResult, TargetKey, body_digest
from poller.polling.schedule import next_schedule, state_after
from poller.providers.deferred import DeferredObservation, Parsed
from poller.store import unchanged
from poller.store.recorder import Recorder, RecordStats
from poller.store.rows import ScheduleUpdate, TargetState
from poller.store.unchanged import UnchangedPolls

_accounts = itertools.count()


def _schedule(results: list[PollResult], **decision: Any) -> dict[TargetKey, ScheduleUpdate]:
    return {r.target: ScheduleUpdate(next_poll_at=r.observed_at + timedelta(seconds=10),
                                     **decision) for r in results}


def _polls(seconds: float, n: int = 5, **kwargs: Any) -> list[PollResult]:
    return [telnyx_observation(at=seconds, target=telnyx_target(f"conf-{i}"),
                               members=[telnyx_member("p1")], **kwargs) for i in range(n)]


def test_an_unchanged_batch_is_one_update_and_reads_nothing(engine: Engine) -> None:
    """After a first batch, a batch of unchanged polls sends one UPDATE (an executemany) and no
    SELECT, and writes the bookkeeping and schedule the full path writes."""
    recorder = Recorder(engine, clock=lambda: T0)
    first = _polls(0)
    recorder.record(first, _schedule(first), owner="me")
    polls = _polls(10)
    with statements(engine) as sent:
        stats = recorder.record(polls, _schedule(polls), owner="me")
    assert [s.split()[0] for s in sent if s != "BEGIN IMMEDIATE"] == ["UPDATE"]  # executemany
    assert (stats.outcomes, stats.updated, stats.inserted, stats.attempts) == (
        {"unchanged": 5}, {"poll_target": 5}, {}, 1)
    for target in fetch(engine, "poll_target"):
        assert (target["last_polled_at"], target["last_success_at"], target["poll_count"],
                target["last_outcome"], target["next_poll_at"], target["lease_owner"]) == (
            at(10), at(10), 2, "unchanged", at(20), None)


def _made_of(label: str, results: list[PollResult]) -> list[PollResult]:
    """``results`` as a client makes them: each observation with the digest of its response
    bodies, here named by ``label`` (the same label, the same bodies)."""
    return [replace(r, body_digest=body_digest([r.target.conference_id.encode(), label.encode()]))
            if isinstance(r, Observation) else r for r in results]


def test_a_poll_made_of_the_remembered_bodies_is_not_hashed(
        monkeypatch: pytest.MonkeyPatch, engine: Engine) -> None:
    """A poll whose response bodies are those of the state remembered (an equal body digest)
    takes the remembered content hash: an unchanged batch computes none, whether the full
    path or the fast path wrote the state before. Other bodies are hashed (and here found
    unchanged all the same)."""
    hashed: list[str] = []
    compute = Observation._digest
    monkeypatch.setattr(Observation, "_digest",
                        lambda self: hashed.append(self.target.conference_id) or compute(self))
    recorder = Recorder(engine, clock=lambda: T0)
    for seconds in (0, 10, 20):  # the full path, then the fast path twice
        hashed.clear()
        polls = _made_of("body-1", _polls(seconds))
        stats = recorder.record(polls, _schedule(polls), owner="me")
        assert (len(hashed), stats.unchanged) == ((5, 0) if seconds == 0 else (0, 5))
    hashed.clear()
    polls = _made_of("body-2", _polls(30))
    stats = recorder.record(polls, _schedule(polls), owner="me")
    assert (len(hashed), stats.outcomes) == (5, {"unchanged": 5})
    hashed.clear()
    polls = _polls(40)  # no digest said: hashed
    recorder.record(polls, _schedule(polls), owner="me")
    assert len(hashed) == 5


def test_a_poll_of_the_remembered_bodies_is_scheduled_and_recorded_unparsed(
        engine: Engine) -> None:
    """A client's deferred observation (``poller.providers.deferred``) of the bodies the
    recorder remembers is scheduled and recorded as unchanged without being parsed; one of
    other bodies is parsed (its hash is needed) and recorded all the same."""
    recorder = Recorder(engine, clock=lambda: T0)
    polls = _made_of("body-1", _polls(0))
    recorder.record(polls, _schedule(polls), owner="me")

    def deferred(seconds: float, label: str, parse: Callable[[Observation], Parsed]
                 ) -> list[PollResult]:
        return [DeferredObservation(p.target, at(seconds), body_digest(
            [p.target.conference_id.encode(), label.encode()]), p.status, partial(parse, p))
            for p in polls if isinstance(p, Observation)]

    def never(_: Observation) -> Parsed:
        raise AssertionError("parsed")

    same = deferred(10, "body-1", never)
    settings, rng = PollingSettings(), random.Random(1)
    decisions = {r.target: next_schedule(TargetState(last_status="in_progress"), r,
                                         r.observed_at, settings, rng) for r in same}
    assert [state_after(TargetState(), r).last_status for r in same] == ["in_progress"] * 5
    stats = recorder.record(same, decisions, owner="me")
    assert (stats.outcomes, stats.attempts) == ({"unchanged": 5}, 1)
    assert not any(isinstance(r, DeferredObservation) and r.parsed for r in same)

    def as_before(p: Observation) -> Parsed:
        return p.conference, p.members, p.members_complete, p.warnings

    other = deferred(20, "body-2", as_before)
    assert recorder.record(other, _schedule(other), owner="me").outcomes == {"unchanged": 5}
    assert all(isinstance(r, DeferredObservation) and r.parsed for r in other)


def test_a_target_another_recorder_wrote_takes_the_full_path(engine: Engine) -> None:
    """A state this recorder remembers, brought back after another recorder (another daemon)
    recorded a different one, is a change: the guard misses, the batch is rolled back and
    recorded on the full path, and nothing of the first try remains."""
    ours, theirs = Recorder(engine), Recorder(engine)
    target = telnyx_target("conf-1")
    ours.record([telnyx_observation(at=0, target=target, members=[telnyx_member("p1")])])
    theirs.record([telnyx_observation(at=10, target=target, members=[telnyx_member("p2")])])
    again = [telnyx_observation(at=20, target=target, members=[telnyx_member("p1")]),
             telnyx_observation(at=20, target=telnyx_target("conf-new"))]  # first seen
    stats = ours.record(again)
    assert stats.outcomes == {"changed": 2}
    assert stats.attempts == 2
    [conference, _] = fetch(engine, "conference")
    assert conference["last_changed_at"] == at(20)
    snapshots = fetch(engine, "conference_snapshot", conference_pk=conference["id"])
    assert [s["valid_from"] for s in snapshots] == [at(0), at(10), at(20)]
    [row] = fetch(engine, "poll_target", conference_id="conf-1")
    assert (row["poll_count"], row["last_outcome"]) == (3, "ok")
    # Remembered again from the full path: the next unchanged poll is fast.
    assert ours.record([telnyx_observation(at=30, target=target, members=[
        telnyx_member("p1")])]).attempts == 1


def _after_another_recorder(engine: Engine, theirs: PollResult, seconds: float) -> RecordStats:
    """Our recorder writes ``conf-1`` at 0, another one writes ``theirs``, then ours records
    the state of 0 again at ``seconds``: what that last record did."""
    ours = Recorder(engine)
    ours.record([telnyx_observation(at=0, target=theirs.target)])
    Recorder(engine).record([theirs])
    return ours.record([telnyx_observation(at=seconds, target=theirs.target)])


def test_a_poll_older_than_another_recorders_is_stale(engine: Engine) -> None:
    """Another recorder wrote a newer poll of the same state: this older one is stale (the
    conference is as remembered, the target is not), and the newer bookkeeping stays."""
    stats = _after_another_recorder(
        engine, telnyx_observation(at=30, target=telnyx_target("conf-1")), 20)
    assert (stats.outcomes, stats.attempts) == ({"stale": 1}, 2)
    [row] = fetch(engine, "poll_target")
    assert (row["last_polled_at"], row["last_success_at"], row["poll_count"]) == (
        at(30), at(30), 2)


def test_a_conference_marked_gone_takes_the_full_path(engine: Engine) -> None:
    """Seen again after another recorder recorded its 404: the full path clears ``gone_at``."""
    stats = _after_another_recorder(engine, failure(at=10, target=telnyx_target("conf-1")), 20)
    assert (stats.outcomes, stats.attempts) == ({"unchanged": 1}, 2)
    [conference] = fetch(engine, "conference")
    assert (conference["gone_at"], conference["last_changed_at"]) == (None, at(20))


def test_a_target_leased_to_another_owner_keeps_its_schedule(engine: Engine) -> None:
    """When another daemon has taken the target over, the guard misses and the full path writes
    the poll's bookkeeping but leaves the other daemon's lease and schedule alone."""
    recorder = Recorder(engine, clock=lambda: T0)
    first = _polls(0, n=1)
    recorder.record(first, _schedule(first), owner="me")
    with engine.begin() as conn:
        conn.execute(text("UPDATE poll_target SET lease_owner = 'other'"))
    polls = _polls(10, n=1)
    stats = recorder.record(polls, _schedule(polls), owner="me")
    assert (stats.outcomes, stats.attempts) == ({"unchanged": 1}, 2)
    [target] = fetch(engine, "poll_target")
    assert (target["poll_count"], target["lease_owner"], target["next_poll_at"]) == (
        2, "other", at(10))


def test_a_retiring_poll_takes_the_full_path(engine: Engine) -> None:
    """An unchanged poll whose decision retires its target is not the fast path's to write."""
    recorder = Recorder(engine, clock=lambda: T0)
    first = _polls(0, n=1)
    recorder.record(first, _schedule(first), owner="me")
    polls = _polls(10, n=1)
    with statements(engine) as sent:
        recorder.record(polls, _schedule(polls, state="retired", retired_reason="completed"),
                        owner="me")
    assert any(s.startswith("SELECT") for s in sent)
    [target] = fetch(engine, "poll_target")
    assert (target["state"], target["retired_reason"]) == ("retired", "completed")
    assert recorder.unchanged.split(_polls(20, n=1), {})[0] == []  # forgotten


def test_memory_is_bounded(monkeypatch: pytest.MonkeyPatch, engine: Engine) -> None:
    """Past ``MAX_REMEMBERED`` targets, the least recently written are forgotten."""
    monkeypatch.setattr(unchanged, "MAX_REMEMBERED", 3)
    recorder = Recorder(engine)
    for seconds in (0, 10):
        recorder.record(_polls(seconds, n=5))
    assert len(recorder.unchanged) == 3
    fast, rest = recorder.unchanged.split(_polls(20, n=5), {})
    assert (len(fast), len(rest)) == (3, 2)


def test_off_sends_every_poll_the_full_path() -> None:
    """``enabled=False`` (the comparison tests' recorder) tries nothing."""
    polls = _polls(0)
    assert UnchangedPolls(enabled=False).split(polls, {}) == ([], polls)


@st.composite
def timelines(draw: st.DrawFn) -> list[PollResult]:
    """Polls of three conferences with few states (so that most polls repeat the last), 404s
    and timeouts, at increasing times, some of them in one batch; some observations say a
    body digest (their content's), some do not."""
    results: list[PollResult] = []
    for i in range(3):
        target = telnyx_target(f"conf-{i}")
        seconds = 0
        for _ in range(draw(st.integers(1, 8))):
            seconds += draw(st.integers(1, 30))
            kind = draw(st.sampled_from(["same", "same", "same", "other", "404", "timeout"]))
            if kind in ("404", "timeout"):
                results.append(failure(at=seconds, target=target,
                                       kind="not_found" if kind == "404" else "timeout"))
            else:
                members = [telnyx_member("p1", muted=kind == "other")]
                observation = telnyx_observation(at=seconds, target=target, members=members)
                if draw(st.booleans()):  # made of bodies named by their content
                    observation = replace(observation, body_digest=body_digest(
                        [target.conference_id.encode(), kind.encode()]))
                results.append(observation)
    return results


def _renamed(results: list[PollResult], account: str) -> list[PollResult]:
    return [replace(r, target=replace(r.target, account=account)) for r in results]


def _comparable(engine: Engine, account: str) -> dict[str, list[dict[str, object]]]:
    """Every row of ``account``'s conferences, without surrogate keys."""
    tables = dump_tables(engine)
    targets = {r["id"] for r in tables["poll_target"] if r["account"] == account}
    conferences = {r["id"] for r in tables["conference"] if r["account"] == account}
    keep = {"poll_target": lambda r: r["id"] in targets,
            "conference": lambda r: r["id"] in conferences,
            "poll_error": lambda r: r["target_pk"] in targets}
    return {table: [{k: v for k, v in row.items()
                     if k not in ("id", "account") and not k.endswith("_pk")}
                    for row in rows
                    if keep.get(table, lambda r: r.get("conference_pk") in conferences)(row)]
            for table, rows in tables.items()}


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(results=timelines(), cuts=st.lists(st.integers(0, 30), max_size=6),
       replay=st.integers(0, 30))
def test_the_fast_path_writes_what_the_full_path_writes(
        engine: Engine, results: list[PollResult], cuts: list[int], replay: int) -> None:
    """Any timeline, cut into any batches (with a replayed batch among them), leaves the same
    rows and counts the same outcomes whether unchanged polls take the fast path or not."""
    results.sort(key=lambda r: r.observed_at)
    points = sorted({c % (len(results) + 1) for c in cuts} | {0, len(results)})
    batches = [results[a:b] for a, b in itertools.pairwise(points) if b > a]
    batches.insert(replay % (len(batches) + 1), results[: replay % (len(results) + 1)])
    outcomes = []
    accounts = []
    for fast in (True, False):
        account = f"acct-{next(_accounts)}"
        recorder = Recorder(engine, clock=lambda: T0, fast_unchanged=fast)
        counted: dict[str, int] = {}
        for batch in batches:
            renamed = _renamed(batch, account)
            stats = recorder.record(renamed, _schedule(renamed), owner="me")
            for outcome, n in stats.outcomes.items():
                counted[outcome] = counted.get(outcome, 0) + n
        outcomes.append(counted)
        accounts.append(account)
    assert outcomes[0] == outcomes[1]
    assert _comparable(engine, accounts[0]) == _comparable(engine, accounts[1])
