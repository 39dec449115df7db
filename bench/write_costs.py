"""Rows written per poll by the recorder, and what an unchanged batch costs.

    .venv/bin/python bench/write_costs.py                       # SQLite in a temp dir
    .venv/bin/python bench/write_costs.py postgresql+psycopg://postgres@127.0.0.1:5432/test

For PostgreSQL it creates a scratch database next to the one named and drops it afterwards.
It prints rows inserted and updated per table for an unchanged poll, a changed poll and a
first sighting (exact counts, machine-independent), then the time to record batches of 1,000
unchanged polls next to a baseline measured in the same run on the same database: a naive
recorder that commits one snapshot row per poll (what a quick script does).

Last, the daemon's writer thread per poll, in CPU time (``time.process_time``): recording an
unchanged batch of 256 polls with their schedule (the daemon's batch) on the fast path
(``poller.store.unchanged``; observations made of the bodies remembered, so their content
hash is taken, and without body digests, so it is computed) against the full path
(``Recorder(fast_unchanged=False)``, which locks and loads every row first), and claiming
due targets 256 at a time (``claim_due``).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    insert,
)
from sqlalchemy.engine import make_url

from poller.model import (
    ConferenceState,
    MemberState,
    Observation,
    Provider,
    TargetKey,
    body_digest,
)
from poller.store import migrate
from poller.store.database import make_engine
from poller.store.recorder import Recorder, RecordStats
from poller.store.rows import ScheduleUpdate
from poller.store.targets import claim_due, sync_targets

NAIVE = Table(
    "naive_snapshot", MetaData(),
    Column("id", Integer, primary_key=True),
    Column("conference_id", String), Column("observed_at", DateTime(timezone=True)),
    Column("status", String), Column("raw", JSON),
)
"""The baseline's one table: a row per poll, nothing else."""

BATCH = 1000
ROUNDS = 15
T0 = datetime(2030, 1, 1, tzinfo=UTC)


def observation(target: TargetKey, at: float, *, status: str = "in_progress",
                muted: tuple[str, ...] = (), members: tuple[str, ...] = ("p1", "p2")
                ) -> Observation:
    """A Telnyx observation ``at`` seconds after T0."""
    created = T0 - timedelta(minutes=5)
    return Observation(
        target=target,
        observed_at=T0 + timedelta(seconds=at),
        conference=ConferenceState(
            conference_id=target.conference_id, status=status, provider_status=status,
            name="bench", created_at=created,
            updated_at=T0 + timedelta(seconds=at - 1) if status == "completed" else created,
            raw={"id": target.conference_id, "status": status}),
        members=tuple(
            MemberState(member_id=m, call_control_id=f"v3:{m}", status="joined",
                        muted=m in muted, on_hold=False, created_at=created,
                        raw={"id": m, "muted": m in muted})
            for m in members),
    )


@contextmanager
def scratch_database(url: str | None) -> Iterator[str]:
    """A fresh, migrated database: a temp SQLite file, or a new PostgreSQL database."""
    if url is None:
        with tempfile.TemporaryDirectory() as directory:
            scratch = f"sqlite:///{Path(directory) / 'bench.db'}"
            migrate.upgrade(scratch)
            yield scratch
        return
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    name = f"poller_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        scratch = make_url(url).set(database=name).render_as_string(hide_password=False)
        migrate.upgrade(scratch)
        yield scratch
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.dispose()


def counts(label: str, stats: RecordStats) -> None:
    inserted = {k: v for k, v in stats.inserted.items() if v}
    updated = {k: v for k, v in stats.updated.items() if v}
    print(f"  {label:<34} inserted {inserted or '{}'}; updated {updated or '{}'}")


def timed(rounds: int, step: Callable[[int], None]) -> float:
    times = []
    for r in range(rounds):
        started = time.perf_counter()
        step(r)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(url: str | None) -> None:
    with scratch_database(url) as scratch:
        engine = make_engine(scratch)
        dialect = engine.dialect.name
        recorder = Recorder(engine)
        targets = [TargetKey(Provider.TELNYX, "bench", f"conf-{i}") for i in range(BATCH)]
        recorder.record([observation(t, 0) for t in targets])

        print(f"rows per poll ({dialect})")
        counts("unchanged poll", recorder.record([observation(targets[0], 10)]))
        counts("changed poll: one member muted", recorder.record(
            [observation(targets[1], 10, muted=("p1",))]))
        counts("changed poll: one member joined", recorder.record(
            [observation(targets[2], 10, members=("p1", "p2", "p3"))]))
        counts("changed poll: completed + muted", recorder.record(
            [observation(targets[3], 10, status="completed", muted=("p1",))]))
        counts("first sighting (2 members)", recorder.record(
            [observation(TargetKey(Provider.TELNYX, "bench", "new"), 10)]))

        ours = timed(ROUNDS, lambda r: recorder.record(
            [observation(t, 20 + 10 * r) for t in targets]))

        NAIVE.create(engine)

        def naive(r: int) -> None:
            # One transaction and one snapshot row per poll, whether anything changed or not.
            for t in targets:
                obs = observation(t, 20 + 10 * r)
                with engine.begin() as conn:
                    conn.execute(insert(NAIVE), {
                        "conference_id": t.conference_id, "observed_at": obs.observed_at,
                        "status": obs.conference.status, "raw": obs.raw_payload()})

        baseline = timed(3, naive)
        engine.dispose()
    print(f"\nunchanged batch of {BATCH} polls ({dialect}, median of rounds)")
    print(f"  recorder           {ours * 1000:8.1f} ms  {BATCH / ours:10,.0f} polls/s")
    print(f"  naive per-poll     {baseline * 1000:8.1f} ms  {BATCH / baseline:10,.0f} polls/s")
    print(f"  speed-up           {baseline / ours:8.1f}x")
    writer_cpu(url, dialect)


DAEMON_BATCH = 256


def writer_cpu(url: str | None, dialect: str) -> None:
    """CPU per poll of an unchanged daemon batch, fast path against full path, and of
    claiming (each on its own fresh database)."""
    per_poll = {}
    for fast, bodies in ((True, True), (True, False), (False, False)):
        with scratch_database(url) as scratch:
            engine = make_engine(scratch)
            recorder = Recorder(engine, fast_unchanged=fast)
            targets = [TargetKey(Provider.TELNYX, "bench", f"conf-{i}")
                       for i in range(DAEMON_BATCH)]
            times = []
            for r in range(ROUNDS * 3):
                batch = [observation(t, 10 * r) for t in targets]
                if bodies:  # as the clients make them: the digest of the same bodies
                    batch = [replace(o, body_digest=body_digest([o.target.conference_id.encode()]))
                             for o in batch]
                schedule = {o.target: ScheduleUpdate(o.observed_at + timedelta(seconds=10))
                            for o in batch}
                started = time.process_time()
                stats = recorder.record(batch, schedule, owner="bench")
                if r:  # the first round is every target's first sighting
                    times.append(time.process_time() - started)
                    assert stats.unchanged == DAEMON_BATCH
            per_poll[fast, bodies] = statistics.median(times) / DAEMON_BATCH
            if fast and bodies:
                sync_targets(engine, [TargetKey(Provider.BANDWIDTH, "claim", f"c-{i}")
                                      for i in range(10 * DAEMON_BATCH)], T0)
                started, claimed = time.process_time(), 0
                while got := claim_due(engine, T0, DAEMON_BATCH, "bench", 60):
                    claimed += len(got)
                claim = (time.process_time() - started) / claimed
            engine.dispose()
    print(f"\nthe daemon's writer, CPU per poll ({dialect}, batches of {DAEMON_BATCH})")
    fast, hashed, full = (per_poll[True, True], per_poll[True, False], per_poll[False, False])
    print(f"  unchanged, fast path   {fast * 1e6:8.1f} us  (the same bodies: hash taken)")
    print(f"  fast path, hashing     {hashed * 1e6:8.1f} us  (no body digest: hash computed)")
    print(f"  unchanged, full path   {full * 1e6:8.1f} us")
    print(f"  fast path saves        {full / fast:8.1f}x")
    print(f"  claim_due, per target  {claim * 1e6:8.1f} us")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
