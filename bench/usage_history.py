"""A months-long history for timing the usage views (``docs/benchmarks.md``, ``docs/reports.md``).

Writes a realistic history straight into a migrated database (not through the recorder: that
would take hours): DAYS days of conferences over three accounts, busiest in office hours,
mostly under an hour, a few spanning midnight, the last ones still open; each with a few member
stays, some of them rejoins. Then it times ``SELECT * FROM usage_daily`` (and ``usage_hourly``)
for the last week and for everything, and ``poller report usage``::

    .venv/bin/python bench/usage_history.py --database sqlite:////tmp/usage.db
    .venv/bin/python bench/usage_history.py --database postgresql+psycopg://postgres@127.0.0.1/x

The database must be new (or empty): it is migrated to head first.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text

from poller.store import migrate
from poller.store.database import make_engine
from poller.store.schema import Conference, Member, MemberEvent, PollTarget

START = datetime(2025, 3, 1, tzinfo=UTC)
ACCOUNTS = [("telnyx", "telnyx-main"), ("telnyx", "telnyx-eu"), ("bandwidth", "bandwidth-main")]


def conference_start(rng: random.Random, days: int) -> datetime:
    """Mostly office hours (08:00-18:00 UTC), some at any time of day."""
    day = rng.randrange(days)
    hour = rng.uniform(8, 18) if rng.random() < 0.8 else rng.uniform(0, 24)
    return START + timedelta(days=day, hours=hour)


def duration(rng: random.Random) -> float:
    """Seconds: mostly under an hour, a few up to four hours."""
    if rng.random() < 0.03:
        return rng.uniform(3_600, 4 * 3_600)
    return min(rng.expovariate(1 / 1_200), 3_500) + 30


def generate(url: str, days: int, conferences: int, seed: int) -> tuple[int, int]:
    """Write the history; returns (conferences, stays)."""
    rng = random.Random(seed)  # noqa: S311 (test data, not secrets)
    end_of_history = START + timedelta(days=days)
    targets: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    members: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    stays = 0
    for pk in range(1, conferences + 1):
        provider, account = ACCOUNTS[pk % len(ACCOUNTS)]
        created = conference_start(rng, days)
        completed: datetime | None = created + timedelta(seconds=duration(rng))
        assert completed is not None
        last_seen = completed
        if completed > end_of_history:  # still open at the end of the history
            completed, last_seen = None, end_of_history
        conference_id = f"conf-{pk}"
        targets.append({"id": pk, "provider": provider, "account": account,
                        "conference_id": conference_id, "next_poll_at": last_seen,
                        "last_success_at": last_seen, "created_at": created,
                        "state": "active" if completed is None else "retired"})
        rows.append({
            "id": pk, "provider": provider, "account": account, "conference_id": conference_id,
            "status": "in_progress" if completed is None else "completed",
            "created_at": created, "completed_at": completed,
            "completed_at_source": None if completed is None else "provider",
            "duration_seconds": None if completed is None else (completed - created)
            .total_seconds(), "first_observed_at": created + timedelta(seconds=5),
            "last_changed_at": last_seen})
        for number in range(rng.choice([2, 3, 4, 5, 6, 7, 8, 9, 10])):
            member_pk = len(members) + 1
            joined = created + timedelta(seconds=rng.uniform(0, 120))
            left: datetime | None = min(last_seen, joined + timedelta(
                seconds=rng.uniform(60, (last_seen - joined).total_seconds() + 60)))
            if completed is None and rng.random() < 0.5:
                left = None
            kinds = [("joined", joined), ("left", left)]
            if left is not None and completed is not None and rng.random() < 0.05:
                back = left + timedelta(seconds=rng.uniform(10, 60))
                if back < completed:
                    left = min(completed, back + timedelta(seconds=rng.uniform(30, 600)))
                    kinds += [("rejoined", back), ("left", left)]
            members.append({"id": member_pk, "conference_pk": pk,
                            "member_id": f"m{number}", "joined_at": joined,
                            "joined_at_source": "provider", "left_at": left,
                            "left_at_source": None if left is None else "provider",
                            "first_observed_at": joined, "last_observed_at": left or joined})
            for seq, (kind, moment) in enumerate(kinds, start=1):
                if moment is not None:
                    events.append({"member_pk": member_pk, "conference_pk": pk, "seq": seq,
                                   "kind": kind, "observed_at": moment,
                                   "provider_changed_at": moment})
            stays += sum(1 for kind, _ in kinds if kind != "left")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            for table, values in ((PollTarget, targets), (Conference, rows),
                                  (Member, members), (MemberEvent, events)):
                for chunk in range(0, len(values), 20_000):
                    conn.execute(insert(table), values[chunk:chunk + 20_000])
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                conn.execute(text("ANALYZE"))
                conn.commit()
    finally:
        engine.dispose()
    return conferences, stays


def timed(url: str, sql: str, **params: str) -> tuple[float, int]:
    """Seconds and rows of ``sql``."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            started = time.perf_counter()
            rows = conn.execute(text(sql), params).all()
            return time.perf_counter() - started, len(rows)
    finally:
        engine.dispose()


def main() -> None:
    """Generate, then time the views and the CLI."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--database", required=True, help="SQLAlchemy URL of a new database")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--conferences", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    migrate.upgrade(args.database)
    engine = make_engine(args.database)
    with engine.connect() as conn:
        existing = conn.execute(select(func.count()).select_from(Conference)).scalar_one()
    engine.dispose()
    if existing:
        print(f"reusing the {existing} conferences already there")
    else:
        started = time.perf_counter()
        count, stays = generate(args.database, args.days, args.conferences, args.seed)
        print(f"wrote {count} conferences, {stays} stays in {time.perf_counter() - started:.1f} s")
    week = (START + timedelta(days=args.days - 7)).strftime("%Y-%m-%d")
    for sql in ("SELECT * FROM usage_daily WHERE day >= :since",
                "SELECT * FROM usage_daily",
                "SELECT * FROM usage_hourly WHERE hour >= :since",
                "SELECT * FROM usage_hourly"):
        seconds, rows = timed(args.database, sql, since=week)
        print(f"{seconds:6.2f} s  {rows:5d} rows  {sql.replace(':since', repr(week))}")
    poller = str(Path(sys.executable).with_name("poller"))
    for argv in (["--since", week], ["--by", "hour", "--since", week, "--limit", "0"]):
        command = [poller, "report", "usage", *argv, "--database-url", args.database]
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)  # noqa: S603 (our CLI)
        print(f"{time.perf_counter() - started:6.2f} s  poller report usage {' '.join(argv)}")


if __name__ == "__main__":
    main()
