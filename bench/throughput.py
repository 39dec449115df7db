"""Throughput and cost of ``poller run`` against the simulator, each figure next to a baseline.

    ./dev bench                      # the default runs (about 20 minutes)
    ./dev bench --quick              # small and short (under two minutes)
    ./dev bench --all                # every combination at 0 ms, and the 80 ms ones (long)
    ./dev bench --only 10000:mixed:steady:postgresql:10:80
    ./dev bench --postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/test

Every process is separate: the simulator (``poller simulate --steady --latency-ms L``, uvicorn),
the poller (the real ``poller run`` CLI, ``bench/poller_run.py``) and each baseline
(``bench/baselines.py``). For PostgreSQL a scratch database is created next to the one named
and dropped afterwards; SQLite uses a temp file. PostgreSQL rows are left out (and say so)
when the server does not answer. Every figure is a ratio against a baseline measured in the
same run, on the same simulator: the machine is shared, so absolute figures move.

**Latency**: the simulator holds every provider answer back ``L`` ms (0: it answers in about a
millisecond, as on the same machine; 80: a real provider's round trip).

**Saturated runs** (``max``): 2,000 targets (200 with ``--quick``) due every 0.1 s, far more
than can be polled, at 0 ms and at 80 ms: polls per second is the most the poller does there.
``x naive`` divides it by the **naive** poller's (sequential ``httpx.Client`` GETs, an ORM
session, commit and snapshot row per poll) on the same simulator, latency and database kind.

**Scheduled runs** (``N targets @ interval``): N conferences due every interval (10 s; 2 s with
``--quick``); *steady*: nothing changes; *churn*: ``POST /_sim/churn`` changes 10 % of them
once per interval. After a warm-up (every target polled once, then one more interval) a window
of whole intervals is measured: polls per second, CPU seconds per 1,000 polls, peak RSS,
history rows written per poll and how late polls started (p50 / p99 of
``poller_poll_lateness_seconds``).

**CPU x floor**: after each run of the poller, the **floor** (a paced aiohttp loop that only
GETs and decodes JSON) polls the same targets, hence the same provider mix, on the same
simulator at the rate the poller achieved; the poller's CPU per poll over the floor's.

**In flight against the limits**: for each run, the polls in flight its schedule needs
(due per second x requests per poll x latency), the poll slots (``polling.concurrency =
"auto"``: their limit at the end of the window), the
polls in flight measured (poll durations summed / window: Little's law), each account's
requests in flight needed against its connection pool (``polling.max_connections_per_account``), and
the polls per second those limits allow at that mix and latency.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime

from baselines import REQUESTS_PER_POLL, run_baseline
from harness import SimulatorProcess, simulator
from poller_run import (
    INTERVAL,
    Case,
    Result,
    run_ours,
    targets,
    world_size,
)
from report import print_goals, print_in_flight, print_table
from sqlalchemy import create_engine
from write_costs import scratch_database

from poller.config.settings import AUTO_MAX_SLOTS
from poller.polling.slots import AUTO_MIN

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PROVIDERS = ("mixed", "telnyx", "bandwidth")
REAL_LATENCY_MS = 80.0
"""A real provider's round trip, as the issue measures it."""
CONNECTIONS = AUTO_MAX_SLOTS
"""Each account's connection pool: ``max_connections_per_account = "auto"`` with
``concurrency = "auto"`` is the most slots there can be."""


STARTED = time.monotonic()


def progress(what: str) -> None:
    """A line on stderr as each run ends (the report, on stdout, comes at the end)."""
    print(f"[{time.monotonic() - STARTED:6.0f} s] {what}", file=sys.stderr, flush=True)


def load() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(f"{n:.1f}" for n in os.getloadavg())


def postgres_available(url: str) -> bool:
    engine = create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            return True
    except Exception:
        return False
    finally:
        engine.dispose()


def plan(args: argparse.Namespace) -> tuple[int, tuple[float, ...], list[Case]]:
    """The saturated runs' target count and latencies, and the scheduled cases."""
    dbs = ["sqlite"] + (["postgresql"] if args.postgres else [])
    real = REAL_LATENCY_MS
    if args.only:
        return 2000, (0.0, real), [
            Case(int(n), p, scenario, db, float(rest[0]) if rest else INTERVAL,
                 float(rest[1]) if len(rest) > 1 else 0.0)
            for n, p, scenario, db, *rest in (spec.split(":") for spec in args.only)]
    if args.smoke:
        return 20, (0.0,), [Case(20, "mixed", "steady", dbs[-1], 1.0, real)]
    if args.quick:  # saturated runs on SQLite only, PostgreSQL in one churn run
        args.saturated_databases = ["sqlite"]
        return 200, (0.0, real), [
            *(Case(200, p, "steady", "sqlite", 1.5) for p in PROVIDERS),
            Case(200, "mixed", "churn", dbs[-1], 1.5),
            Case(300, "mixed", "steady", "sqlite", 1.5, real)]
    if args.all:
        return 2000, (0.0, real), [
            *(Case(n, p, s, db) for db in dbs for n in (1000, 5000, 10000) for p in PROVIDERS
              for s in ("steady", "churn")),
            *(Case(n, "mixed", "steady", db, INTERVAL, real) for db in dbs
              for n in (1000, 5000, 10000))]
    cases = [Case(n, "mixed", "steady", "sqlite") for n in (1000, 5000, 10000)]
    cases += [Case(5000, p, "steady", "sqlite") for p in ("telnyx", "bandwidth")]
    cases += [Case(5000, "mixed", "churn", "sqlite")]
    if args.postgres:
        cases += [Case(5000, "mixed", s, "postgresql") for s in ("steady", "churn")]
        cases += [Case(10000, "mixed", "steady", "postgresql")]
    cases += [Case(5000, "mixed", "steady", "sqlite", INTERVAL, real)]
    cases += [Case(10000, "mixed", "steady", db, INTERVAL, real) for db in dbs]
    return 2000, (0.0, real), cases


def with_floor(result: Result, sim: SimulatorProcess, ids: dict[str, list[str]],
               window: float) -> Result:
    """``result`` with the floor's CPU per poll at its mix, rate and latency (same ``sim``)."""
    progress(f"{result.label}: {result.polls} polls")
    floor = run_baseline("floor", sim, ids, window, rate=result.rate)
    progress(f"  its floor: {floor['polls']} polls")
    result.floor_cpu_per_1k = 1000 * floor["cpu"] / floor["polls"]
    result.floor_rate = floor["polls"] / floor["seconds"]
    result.floor_poll_ms = 1000 * floor["poll_seconds"] / floor["polls"]
    if floor["failures"]:
        result.notes.append(f"the floor saw {floor['failures']} failed requests")
    return result


def naive_result(sim: SimulatorProcess, ids: dict[str, list[str]], window: float, db: str,
                 url: str) -> Result:
    measured = run_baseline("naive", sim, ids, window, database_url=url)
    progress(f"naive {sim.latency_ms:g} ms {db}: {measured['polls']} polls")
    return Result(f"naive {sim.latency_ms:>3g}ms {db}", measured["polls"], measured["seconds"],
                  measured["cpu"], measured["peak_rss_mb"], failures=measured["failures"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 targets, short windows")
    parser.add_argument("--smoke", action="store_true",
                        help="20 targets, one-second windows: only checks that it runs")
    parser.add_argument("--all", action="store_true",
                        help="every N x providers x steady/churn x database combination")
    parser.add_argument("--only", action="append",
                        metavar="N:PROVIDERS:SCENARIO:DB[:INTERVAL[:LATENCY_MS]]",
                        help="run this scheduled case instead of the default ones (repeatable),"
                             " e.g. 5000:mixed:churn:postgresql or 10000:mixed:steady:sqlite:10:80")
    parser.add_argument("--window", type=float, default=None,
                        help="seconds measured per run (default 20; --quick 3)")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES,
                        help="a PostgreSQL server to create a scratch database on "
                             "(default: %(default)s)")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args()
    args.postgres = not args.no_postgres and postgres_available(args.postgres_url)
    window = args.window or (1.0 if args.smoke else 3.0 if args.quick else 20.0)
    args.saturated_databases = ["sqlite"] + (["postgresql"] if args.postgres else [])
    saturated, latencies, cases = plan(args)

    print(f"poller throughput benchmark — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
          f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load average {load()}")
    print(f"limits: poll slots 'auto' (polling.concurrency: {AUTO_MIN} to {AUTO_MAX_SLOTS}, "
          f"following rate x poll duration), {CONNECTIONS} connections per account "
          f"(max_connections_per_account = 'auto'); requests per poll: Telnyx "
          f"{REQUESTS_PER_POLL['telnyx']}, Bandwidth {REQUESTS_PER_POLL['bandwidth']}")
    if not args.postgres:
        print("(PostgreSQL not reachable or --no-postgres: SQLite rows only)")
    results: list[Result] = []

    def scratch(db: str) -> str | None:
        return None if db == "sqlite" else str(args.postgres_url)

    # Saturated, at each latency: naive and ours on the same targets; ours' floor at its rate.
    for latency in latencies:
        with simulator(saturated // 2, latency_ms=latency) as sim:
            ids = targets(sim, "mixed", saturated)
            for db in args.saturated_databases:
                with scratch_database(scratch(db)) as url:
                    results.append(naive_result(sim, ids, window, db, url))
                with scratch_database(scratch(db)) as url:
                    ours = run_ours(Case(saturated, "mixed", "max", db, latency_ms=latency),
                                    url, sim, window)
                results.append(with_floor(ours, sim, ids, window))

    # Scheduled: a new simulator when the world's size or latency changes.
    with ExitStack() as stack:
        world: tuple[int, float] | None = None
        for case in cases:
            if world != (world_size(case), case.latency_ms):
                stack.close()
                world = (world_size(case), case.latency_ms)
                sim = stack.enter_context(simulator(world[0], latency_ms=case.latency_ms))
            with scratch_database(scratch(case.database)) as url:
                ours = run_ours(case, url, sim, max(window, 2 * case.interval))
            results.append(with_floor(ours, sim, targets(sim, case.providers, case.targets),
                                      window))

    print(f"\nload average at the end: {load()} (other processes share the CPUs)")
    print_table(results)
    print_in_flight(results, CONNECTIONS)
    print_goals(results)


if __name__ == "__main__":
    main()
