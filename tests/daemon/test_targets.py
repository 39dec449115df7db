"""Syncing the config into ``poll_target`` and claiming due targets with leases, on both DBs."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from databases import fetch
from factories import T0, at, bandwidth_target, failure, telnyx_observation, telnyx_target
from sqlalchemy import Engine, select, update

from poller.model import TargetKey
from poller.store.database import make_engine
from poller.store.recorder import Recorder
from poller.store.rows import ScheduleUpdate
from poller.store.schema import PollTarget
from poller.store.targets import claim_due, release, release_owned, sync_targets


def targets(n: int) -> list[TargetKey]:
    return [telnyx_target(f"conf-{i:02d}") for i in range(n)]


def rows(engine: Engine) -> dict[str, dict[str, object]]:
    return {r["conference_id"]: r for r in fetch(engine, "poll_target")}


def test_sync_adds_new_targets_due_now(engine: Engine) -> None:
    """New config conferences become active 'config' targets due at once."""
    report = sync_targets(engine, [telnyx_target("a", region="Europe"), bandwidth_target("b")],
                          T0)
    assert len(report.added) == 2
    stored = rows(engine)
    assert stored["a"]["region"] == "Europe"
    assert stored["a"]["source"] == "config"
    assert stored["b"]["state"] == "active"
    assert stored["b"]["next_poll_at"] == T0


def test_sync_is_idempotent(engine: Engine) -> None:
    """Syncing the same config twice changes nothing the second time."""
    sync_targets(engine, targets(3), T0)
    before = rows(engine)
    report = sync_targets(engine, targets(3), at(10))
    assert str(report) == "0 added, 0 removed, 0 reactivated, 0 region updates"
    assert rows(engine) == before


def test_removed_target_is_retired_and_comes_back(engine: Engine) -> None:
    """A conference dropped from the config is retired 'removed'; put back, it is due again."""
    sync_targets(engine, targets(2), T0)
    report = sync_targets(engine, targets(1), at(10))
    assert [k.conference_id for k in report.removed] == ["conf-01"]
    gone = rows(engine)["conf-01"]
    assert (gone["state"], gone["retired_reason"], gone["retired_at"]) == (
        "retired", "removed", at(10))
    report = sync_targets(engine, targets(2), at(20))
    assert [k.conference_id for k in report.reactivated] == ["conf-01"]
    back = rows(engine)["conf-01"]
    assert (back["state"], back["retired_reason"], back["next_poll_at"]) == (
        "active", None, at(20))


def test_sync_keeps_other_sources_and_other_retirements(engine: Engine) -> None:
    """Sync never retires non-config targets nor revives ones retired for other reasons."""
    sync_targets(engine, targets(2), T0)
    with engine.begin() as conn:
        conn.execute(update(PollTarget).where(PollTarget.conference_id == "conf-00")
                     .values(source="discovered"))
        conn.execute(update(PollTarget).where(PollTarget.conference_id == "conf-01")
                     .values(state="retired", retired_reason="completed"))
    report = sync_targets(engine, [], at(10))
    assert report.removed == ()
    sync_targets(engine, targets(2), at(20))
    assert rows(engine)["conf-01"]["retired_reason"] == "completed"


def test_pollers_starting_together_sync_without_conflict(database_url: str) -> None:
    """Several pollers starting at once on one database each sync the same config: no
    unique-constraint error, every target once, and each added by exactly one of them."""
    engines = [make_engine(database_url) for _ in range(4)]
    barrier = threading.Barrier(len(engines))
    reports: list[int] = []
    errors: list[BaseException] = []

    def start(engine: Engine) -> None:
        try:
            barrier.wait()
            reports.append(len(sync_targets(engine, targets(200), T0).added))
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=start, args=(e,)) for e in engines]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        assert sum(reports) == 200
        assert len(rows(engines[0])) == 200
    finally:
        for engine in engines:
            engine.dispose()


def test_sync_updates_region(engine: Engine) -> None:
    """A changed Telnyx region in the config is written to the target."""
    sync_targets(engine, [telnyx_target("a")], T0)
    report = sync_targets(engine, [telnyx_target("a", region="Australia")], at(1))
    assert len(report.region_changed) == 1
    assert rows(engine)["a"]["region"] == "Australia"


def test_claim_due_leases_due_targets_in_order(engine: Engine) -> None:
    """Only active, due, unleased targets are claimed, oldest next_poll_at first, up to limit."""
    sync_targets(engine, targets(5), T0)
    with engine.begin() as conn:
        for i, offset in enumerate([30, -20, -10, 5, 0]):
            conn.execute(update(PollTarget).where(PollTarget.conference_id == f"conf-{i:02d}")
                         .values(next_poll_at=at(offset)))
    claimed = claim_due(engine, T0, 2, "me", 60)
    assert [c.key.conference_id for c in claimed] == ["conf-01", "conf-02"]
    stored = rows(engine)
    assert stored["conf-01"]["lease_owner"] == "me"
    assert stored["conf-01"]["lease_expires_at"] == at(60)
    again = claim_due(engine, T0, 10, "other", 60)
    assert [c.key.conference_id for c in again] == ["conf-04"]


def test_expired_lease_can_be_claimed_again(engine: Engine) -> None:
    """A crashed poller's lease expires and another poller takes the target over."""
    sync_targets(engine, targets(1), T0)
    assert claim_due(engine, T0, 10, "crashed", 30)
    assert claim_due(engine, at(29), 10, "next", 30) == []
    assert [c.key.conference_id for c in claim_due(engine, at(31), 10, "next", 30)] == ["conf-00"]


def test_claim_skips_excluded_accounts_and_retired(engine: Engine) -> None:
    """Paused accounts' targets and retired targets are not claimed."""
    sync_targets(engine, [telnyx_target("t"), bandwidth_target("b"),
                          telnyx_target("gone")], T0)
    sync_targets(engine, [telnyx_target("t"), bandwidth_target("b")], T0)
    claimed = claim_due(engine, T0, 10, "me", 60, exclude_accounts={"telnyx-main"})
    assert [c.key.conference_id for c in claimed] == ["b"]


def test_claim_due_by_cutoff(engine: Engine) -> None:
    """``due_by`` bounds next_poll_at independently of the lease clock."""
    sync_targets(engine, targets(1), at(10))
    assert claim_due(engine, at(20), 10, "me", 60, due_by=at(5)) == []
    assert len(claim_due(engine, at(20), 10, "me", 60, due_by=at(10))) == 1


def test_claim_carries_scheduler_state(engine: Engine, recorder: Recorder) -> None:
    """A claimed target knows its conference's last status and its current run of 404s."""
    key = telnyx_target("conf-00")
    sync_targets(engine, [key], T0)
    recorder.record([telnyx_observation(at=1, target=key, status="in_progress")])
    recorder.record([failure(at=2, target=key)])
    recorder.record([failure(at=3, target=key, kind="timeout", http_status=None)])
    recorder.record([failure(at=4, target=key)])
    [claimed] = claim_due(engine, at(100), 10, "me", 60)
    assert claimed.state.last_status == "in_progress"
    assert claimed.state.consecutive_failures == 3
    assert claimed.state.not_found_since == at(2)
    assert claimed.state.not_found_count == 2


def test_claim_gives_each_target_its_own_conferences_status(engine: Engine,
                                                             recorder: Recorder) -> None:
    """Each claimed target carries its own conference's status, and none when it was never
    seen (the status is looked up per row: a lookup that lost its correlation gave every
    target the first conference's)."""
    keys = [telnyx_target(f"conf-{i}") for i in range(3)]
    sync_targets(engine, keys, T0)
    recorder.record([telnyx_observation(at=1, target=keys[0], status="completed"),
                     telnyx_observation(at=1, target=keys[2], status="in_progress")])
    claimed = claim_due(engine, at(100), 10, "me", 60)
    assert {c.key.conference_id: c.state.last_status for c in claimed} == {
        "conf-0": "completed", "conf-1": None, "conf-2": "in_progress"}


def test_recording_with_a_schedule_releases_the_lease(engine: Engine, recorder: Recorder
                                                      ) -> None:
    """The recorder's schedule update clears the lease in the same row update."""
    key = telnyx_target("conf-00")
    sync_targets(engine, [key], T0)
    claim_due(engine, T0, 10, "me", 60)
    recorder.record([telnyx_observation(at=1, target=key)],
                    {key: ScheduleUpdate(next_poll_at=at(11))})
    row = rows(engine)["conf-00"]
    assert (row["lease_owner"], row["lease_expires_at"], row["next_poll_at"]) == (
        None, None, at(11))


def test_a_stalled_owner_never_frees_a_lease_taken_over(engine: Engine, recorder: Recorder
                                                         ) -> None:
    """A daemon that stalled past its lease records its result (history is exactly-once), but
    leaves the target's lease and schedule to the daemon that took it over; its own lease it
    frees as usual."""
    key, other = telnyx_target("conf-00"), telnyx_target("conf-01")
    sync_targets(engine, [key, other], T0)
    claim_due(engine, T0, 10, "stalled", 60)
    claim_due(engine, at(61), 1, "taker", 60)  # conf-00's lease expired: taken over
    recorder.record([telnyx_observation(at=70, target=key),
                     telnyx_observation(at=70, target=other)],
                    {key: ScheduleUpdate(next_poll_at=at(80)),
                     other: ScheduleUpdate(next_poll_at=at(80))}, owner="stalled")
    taken, mine = rows(engine)["conf-00"], rows(engine)["conf-01"]
    assert (taken["lease_owner"], taken["lease_expires_at"]) == ("taker", at(121))
    assert taken["next_poll_at"] == T0
    assert taken["last_success_at"] == at(70)
    assert (mine["lease_owner"], mine["next_poll_at"]) == (None, at(80))


def test_release_hands_targets_back(engine: Engine) -> None:
    """Claimed targets released unpolled are due again at the given time, unleased."""
    sync_targets(engine, targets(1), T0)
    [claimed] = claim_due(engine, T0, 10, "me", 60)
    release(engine, {claimed.pk: at(5)})
    assert claim_due(engine, at(4), 10, "me", 60) == []
    assert len(claim_due(engine, at(5), 10, "me", 60)) == 1


def test_release_owned_drops_only_that_owners_leases(engine: Engine) -> None:
    """A stopping poller's leases are dropped, its targets still due; others' leases stay."""
    sync_targets(engine, targets(3), T0)
    mine = claim_due(engine, T0, 2, "me", 60)
    [theirs] = claim_due(engine, T0, 10, "them", 60)
    assert release_owned(engine, "me") == 2
    assert release_owned(engine, "me") == 0
    again = claim_due(engine, at(1), 10, "next", 60)
    assert {t.pk for t in again} == {t.pk for t in mine}
    assert all(t.next_poll_at == T0 for t in again)
    assert theirs.pk not in {t.pk for t in again}


@pytest.fixture
def pg_engine(postgres_url: str) -> Iterator[Engine]:
    engine = make_engine(postgres_url, pool_size=10)
    yield engine
    engine.dispose()


@pytest.mark.postgres
def test_skip_locked_does_not_wait_for_locked_rows(pg_engine: Engine) -> None:
    """On PostgreSQL a row locked by another transaction is skipped, not waited for."""
    sync_targets(pg_engine, targets(4), T0)
    with pg_engine.connect() as other:
        other.execute(select(PollTarget.id).where(PollTarget.conference_id.in_(
            ["conf-00", "conf-01"])).with_for_update())
        other.exec_driver_sql("SET lock_timeout = '2s'")
        claimed = claim_due(pg_engine, T0, 10, "me", 60)
        other.rollback()
    assert [c.key.conference_id for c in claimed] == ["conf-02", "conf-03"]


@pytest.mark.postgres
def test_concurrent_claimers_get_disjoint_sets(pg_engine: Engine) -> None:
    """Several pollers claiming at once on PostgreSQL never share a target."""
    sync_targets(pg_engine, targets(40), T0)
    start = threading.Barrier(4)
    found: dict[str, list[str]] = {}

    def claimer(name: str) -> None:
        start.wait()
        mine: list[str] = []
        while batch := claim_due(pg_engine, T0, 3, name, 60):
            mine.extend(c.key.conference_id for c in batch)
        found[name] = mine

    threads = [threading.Thread(target=claimer, args=(f"p{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    claimed = [cid for mine in found.values() for cid in mine]
    assert sorted(claimed) == sorted(t.conference_id for t in targets(40))
    owners = {r["conference_id"]: r["lease_owner"] for r in fetch(pg_engine, "poll_target")}
    assert all(owners[cid] == name for name, mine in found.items() for cid in mine)
