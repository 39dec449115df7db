"""Soak: ``poller run`` on 10,000 targets for 10 minutes; RSS, open files and DB connections.

    .venv/bin/python bench/soak.py                       # 10,000 targets, 10 minutes
    .venv/bin/python bench/soak.py --minutes 1 --targets 2000
    .venv/bin/python bench/soak.py --database sqlite

The simulator (``poller simulate --steady``) and the poller (the ``poller run`` CLI) run in
their own processes; half the targets are Telnyx conferences, half Bandwidth ones, polled every
10 s, and ``POST /_sim/churn`` changes 10 % of them once per interval (``--steady``: nothing
changes). The database is a scratch PostgreSQL database (created next to ``--postgres-url`` and
dropped afterwards) when the server answers, else a temp SQLite file.

Once every target has been polled (the start) and then once a minute until the end it prints
the poller process's RSS, its open file descriptors and its database connections
(PostgreSQL: sessions of the scratch database in ``pg_stat_activity``; SQLite: descriptors open
on the database files), then the growth from start to end.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path

from harness import memory_mb, open_fds, simulator
from poller_run import (
    Case,
    Churner,
    Scrape,
    config_toml,
    free_port,
    poller_process,
    targets,
    wait_for,
)
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from throughput import DEFAULT_POSTGRES, load, postgres_available
from write_costs import scratch_database

INTERVAL = 10.0


def connections(database_url: str, pid: int) -> int:
    """The poller's connections to its database (see the module docstring)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        name = Path(url.database or "").name
        fd_dir = Path(f"/proc/{pid}/fd")
        count = 0
        for fd in os.listdir(fd_dir):
            with suppress(OSError):  # closed meanwhile
                count += Path(os.readlink(fd_dir / fd)).name == name
        return count
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()")).scalar_one())
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=INTERVAL,
                        help="seconds between polls of a target (default %(default)s)")
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default=None,
                        help="default: postgresql when --postgres-url answers, else sqlite")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    parser.add_argument("--steady", action="store_true", help="no churn")
    args = parser.parse_args()
    database = args.database or (
        "postgresql" if postgres_available(args.postgres_url) else "sqlite")
    case = Case(args.targets, "mixed", "steady" if args.steady else "churn", database,
                args.interval)
    print(f"soak — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {args.targets:,} targets (mixed), "
          f"every {args.interval:g} s, {case.scenario}, {database}, {args.minutes:g} min; "
          f"load average {load()}")
    with simulator(args.targets // 2) as sim, scratch_database(
            None if database == "sqlite" else args.postgres_url) as url, \
            tempfile.TemporaryDirectory() as directory:
        port = free_port()
        config = config_toml(sim, targets(sim, "mixed", args.targets), url, args.interval, port)
        workdir = Path(directory)
        with poller_process(config, workdir) as process:
            wait_for(lambda: Scrape(port).total >= args.targets, 600,
                     "every target polled once", process, workdir)
            churner = Churner(sim, case) if case.scenario == "churn" else None
            started = time.monotonic()
            end = started + 60 * args.minutes
            print(f"  {'elapsed':>8} {'polls':>9} {'failed':>7} {'RSS MB':>7} {'peak MB':>8} "
                  f"{'FDs':>5} {'DB conns':>8}")
            samples = []
            while True:
                scrape = Scrape(port)
                rss, peak = memory_mb(process.pid)
                sample = (rss, open_fds(process.pid), connections(url, process.pid))
                samples.append(sample)
                print(f"  {time.monotonic() - started:7.0f}s {scrape.total:9,} "
                      f"{scrape.failures:7,} {rss:7.1f} {peak:8.1f} {sample[1]:5} "
                      f"{sample[2]:8}", flush=True)
                if time.monotonic() >= end:
                    break
                time.sleep(max(0.0, min(60.0, end - time.monotonic())))
            if churner is not None:
                churner.stop()
                print(f"  churn changed {churner.changed:,} conferences")
            if process.poll() is not None:
                raise RuntimeError(f"the poller exited ({process.returncode})")
    (rss0, fds0, conns0), (rss1, fds1, conns1) = samples[0], samples[-1]
    print(f"load average at the end: {load()}")
    print(f"start -> end: RSS {rss0:.1f} -> {rss1:.1f} MB ({rss1 - rss0:+.1f}), "
          f"FDs {fds0} -> {fds1}, DB connections {conns0} -> {conns1}")


if __name__ == "__main__":
    main()
