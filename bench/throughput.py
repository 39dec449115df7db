"""Throughput and cost of ``poller run`` against the simulator, next to two baselines.

    ./dev bench                      # the default table (about ten minutes)
    ./dev bench --quick              # small and short: a smoke run (about a minute)
    ./dev bench --all                # every combination the issue names (long)
    ./dev bench --postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/test

Every process is separate: the simulator (``poller simulate --steady``, uvicorn), the poller
(the real ``poller run`` CLI with its APScheduler tick, polling at ``interval_seconds``), and
each baseline. For PostgreSQL a scratch database is created next to the one named and dropped
afterwards; SQLite uses a temp file. PostgreSQL rows are left out (and say so) when the server
does not answer.

**Scheduled runs** (``N targets @ interval``): the poller polls N conferences every interval
(10 s; 2 s with ``--quick``). After a warm-up (every target polled once, then one more interval) a
window of whole intervals is measured: polls per second, CPU seconds of the poller process per
1,000 polls (``/proc/<pid>/stat``), its peak RSS (``VmHWM``), history rows written per poll
(rows of ``conference_snapshot``, ``status_transition``, ``member_event`` and ``poll_error``
counted before and after), and how late polls started against their due time (p50 / p99
interpolated from ``poller_poll_lateness_seconds``, scraped from the poller's ``/metrics`` at
both ends of the window). *steady*: nothing changes; *churn*: ``POST /_sim/churn`` changes 10 %
of the conferences once per interval.

**Saturated runs** (``max``): 2,000 targets (200 with ``--quick``) due every 0.1 s, far more
than can be polled, so polls per second is the most the poller does. In the same run, against
the same simulator and targets:

* **floor**: a bare aiohttp loop at the same concurrency that only GETs and decodes JSON (the
  same requests per poll: Telnyx conference + participants, Bandwidth conference);
* **naive**: what a quick script does: sequential ``httpx.Client`` GETs, one ORM session and
  commit per poll, a snapshot row on every poll (same database kind).

Ratios: ``CPU x floor`` is CPU per poll over the floor's; ``x naive`` is polls per second over
the naive poller's on the same database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import BIN, CREDENTIALS, SimulatorProcess, cpu_seconds, memory_mb, simulator
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import JSON, DateTime, Integer, String, create_engine, func, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from write_costs import scratch_database

HISTORY_TABLES = ("conference_snapshot", "status_transition", "member_event", "poll_error")
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
CONCURRENCY = 32
INTERVAL = 10.0
"""Seconds between polls of a target in the scheduled runs (``--quick``: 2)."""
SATURATED_INTERVAL = 0.1
"""The saturated runs' interval: far more due than the poller can poll."""
CHURN_FRACTION = 0.1
PROVIDERS = ("mixed", "telnyx", "bandwidth")


@dataclass(frozen=True)
class Case:
    """One run of the poller: N targets of ``providers``, ``scenario``, on ``database``."""

    targets: int
    providers: str
    scenario: str  # steady | churn | max
    database: str  # sqlite | postgresql

    interval: float = INTERVAL

    @property
    def label(self) -> str:
        rate = "max" if self.scenario == "max" else f"@{self.interval:g}s {self.scenario}"
        return f"ours {self.targets:>6,} {self.providers:<9} {rate:<12} {self.database}"


@dataclass
class Result:
    label: str
    polls: int
    seconds: float
    cpu: float
    peak_rss_mb: float | None = None
    history_rows: int | None = None
    late: tuple[float, float] | None = None
    failures: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.polls / self.seconds if self.seconds else 0.0

    @property
    def cpu_per_1k(self) -> float:
        return 1000 * self.cpu / self.polls if self.polls else float("nan")


# -- the targets -------------------------------------------------------------------------------

def world_size(case: Case) -> int:
    """Conferences per provider the simulator serves for ``case``."""
    return case.targets // 2 if case.providers == "mixed" else case.targets


def targets(sim: SimulatorProcess, providers: str, n: int) -> dict[str, list[str]]:
    """The conference IDs to poll, by provider."""
    if providers == "mixed":
        return {"telnyx": sim.ids("telnyx")[: n // 2],
                "bandwidth": sim.ids("bandwidth")[: n - n // 2]}
    return {providers: sim.ids(providers)[:n]}


# -- the poller under test ---------------------------------------------------------------------

ENV = {"BENCH_TELNYX_KEY": CREDENTIALS.telnyx_api_key,
       "BENCH_BW_USER": CREDENTIALS.bandwidth_username,
       "BENCH_BW_PASSWORD": CREDENTIALS.bandwidth_password}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def config_toml(sim: SimulatorProcess, ids: dict[str, list[str]], database_url: str,
                interval: float, metrics_port: int) -> str:
    lines = ["[database]", f"url = {json.dumps(database_url)}", "auto_migrate = true", "",
             "[polling]", f"interval_seconds = {interval}", f"concurrency = {CONCURRENCY}", "",
             "[retention]", "prune_interval_seconds = 0", "",
             "[metrics]", f'listen = "127.0.0.1:{metrics_port}"', ""]
    if "telnyx" in ids:
        lines += ["[[accounts]]", 'name = "telnyx-bench"', 'provider = "telnyx"',
                  'api_key_env = "BENCH_TELNYX_KEY"', f'base_url = "{sim.url}/v2"',
                  "requests_per_second = 100000",
                  f"conferences = {json.dumps(ids['telnyx'])}", ""]
    if "bandwidth" in ids:
        lines += ["[[accounts]]", 'name = "bandwidth-bench"', 'provider = "bandwidth"',
                  f'account_id = "{CREDENTIALS.bandwidth_account_id}"',
                  'username_env = "BENCH_BW_USER"', 'password_env = "BENCH_BW_PASSWORD"',
                  f'base_url = "{sim.url}/api/v2"', "requests_per_second = 100000",
                  f"conferences = {json.dumps(ids['bandwidth'])}", ""]
    return "\n".join(lines)


class Scrape:
    """What one scrape of ``/metrics`` says: polls by outcome, lateness buckets."""

    def __init__(self, port: int) -> None:
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                    timeout=30) as answer:
            body = answer.read().decode()
        self.polls: dict[str, float] = {}
        self.buckets: dict[float, float] = {}
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                if sample.name == "poller_polls_total":
                    outcome = sample.labels["outcome"]
                    self.polls[outcome] = self.polls.get(outcome, 0) + sample.value
                elif sample.name == "poller_poll_lateness_seconds_bucket":
                    bound = float(sample.labels["le"])
                    self.buckets[bound] = self.buckets.get(bound, 0) + sample.value

    @property
    def total(self) -> int:
        return int(sum(self.polls.values()))

    @property
    def failures(self) -> int:
        return int(sum(n for k, n in self.polls.items() if k not in ("ok", "unchanged")))


def quantile(q: float, before: Scrape, after: Scrape) -> float:
    """The ``q`` quantile of the lateness observed between two scrapes, interpolated linearly
    inside its histogram bucket (as PromQL's ``histogram_quantile``)."""
    bounds = sorted(after.buckets)
    counts = [after.buckets[b] - before.buckets.get(b, 0) for b in bounds]
    total = counts[-1]
    if not total:
        return float("nan")
    rank, lower, below = q * total, 0.0, 0.0
    for bound, cumulative in zip(bounds, counts, strict=True):
        if cumulative >= rank:
            if bound == float("inf"):
                return lower
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, cumulative
    return lower


def history_rows(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return sum(conn.execute(select(func.count()).select_from(text(table))).scalar_one()
                       for table in HISTORY_TABLES)
    finally:
        engine.dispose()


@contextmanager
def poller_process(config: str, workdir: Path) -> Iterator[subprocess.Popen[bytes]]:
    path = workdir / "config.toml"
    path.write_text(config)
    log = (workdir / "poller.log").open("wb")
    process = subprocess.Popen(  # noqa: S603 (our own CLI)
        [str(BIN / "poller"), "--config", str(path), "--log-level", "warning", "run"],
        env={**os.environ, **ENV}, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def wait_for(condition: Any, timeout: float, what: str, process: subprocess.Popen[bytes],
             workdir: Path) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the poller exited ({process.returncode}) while waiting for "
                               f"{what}:\n{(workdir / 'poller.log').read_text()[-2000:]}")
        with suppress(OSError):
            value = condition()
            if value:
                return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.2)


def run_ours(case: Case, database_url: str, sim: SimulatorProcess, window: float) -> Result:
    """Run ``poller run`` on ``case`` and measure a window after the warm-up."""
    ids = targets(sim, case.providers, case.targets)
    interval = SATURATED_INTERVAL if case.scenario == "max" else case.interval
    port = free_port()
    with tempfile.TemporaryDirectory() as directory, poller_process(
            config_toml(sim, ids, database_url, interval, port), Path(directory)) as process:
        workdir = Path(directory)
        wait_for(lambda: Scrape(port).total >= case.targets, 300,
                 "every target polled once", process, workdir)
        time.sleep(min(2.0, window) if case.scenario == "max" else interval)
        rows0, before, cpu0 = history_rows(database_url), Scrape(port), cpu_seconds(process.pid)
        started = time.monotonic()
        churner = Churner(sim, case) if case.scenario == "churn" else None
        time.sleep(window)
        after, cpu1 = Scrape(port), cpu_seconds(process.pid)
        elapsed = time.monotonic() - started
        if churner is not None:
            churner.stop()
        rows1 = history_rows(database_url)
        _, peak = memory_mb(process.pid)
        polls = after.total - before.total
        result = Result(case.label, polls, elapsed, cpu1 - cpu0, peak, rows1 - rows0,
                        (quantile(0.5, before, after), quantile(0.99, before, after)),
                        after.failures - before.failures)
        if churner is not None:
            result.notes.append(f"{churner.changed} conferences changed by churn")
        process.send_signal(signal.SIGTERM)
        if process.wait(30) != 0:
            raise RuntimeError(f"the poller exited {process.returncode}:\n"
                               f"{(workdir / 'poller.log').read_text()[-2000:]}")
    return result


class Churner:
    """Changes ``CHURN_FRACTION`` of the conferences polled once per interval, in a thread."""

    def __init__(self, sim: SimulatorProcess, case: Case) -> None:
        self.sim, self.case, self.changed = sim, case, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        provider = None if self.case.providers == "mixed" else self.case.providers
        body: dict[str, Any] = {"fraction": CHURN_FRACTION}
        if provider:
            body["provider"] = provider
        while not self._stop.is_set():
            self.changed += int(self.sim.post("/_sim/churn", body)["changed"])
            self._stop.wait(self.case.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


# -- the baselines (each in its own process: this script with --baseline) ----------------------

def run_baseline(kind: str, sim: SimulatorProcess, ids: dict[str, list[str]], seconds: float,
                 database_url: str | None = None) -> Result:
    spec = {"kind": kind, "url": sim.url, "ids": ids, "seconds": seconds,
            "database_url": database_url}
    with tempfile.NamedTemporaryFile("w", suffix=".json") as file:
        json.dump(spec, file)
        file.flush()
        done = subprocess.run(  # noqa: S603 (this script)
            [sys.executable, __file__, "--baseline", file.name], check=False,
            capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the {kind} baseline failed:\n{done.stderr[-3000:]}")
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    label = "floor (aiohttp GET+JSON)" if kind == "floor" else f"naive {_db_kind(database_url)}"
    return Result(label, measured["polls"], measured["seconds"], measured["cpu"],
                  measured["peak_rss_mb"], failures=measured["failures"])


def _db_kind(url: str | None) -> str:
    return "sqlite" if url and url.startswith("sqlite") else "postgresql"


def _requests(base: str, ids: dict[str, list[str]]) -> list[tuple[str, list[str]]]:
    """Per poll, the URLs one poll GETs (Telnyx: conference and participants)."""
    polls = []
    for cid in ids.get("telnyx", []):
        polls.append(("telnyx", [f"{base}/v2/conferences/{cid}",
                                 f"{base}/v2/conferences/{cid}/participants"
                                 "?page[size]=250&page[number]=1"]))
    account = CREDENTIALS.bandwidth_account_id
    for cid in ids.get("bandwidth", []):
        polls.append(("bandwidth", [f"{base}/api/v2/accounts/{account}/conferences/{cid}"]))
    return polls


def floor(spec: dict[str, Any]) -> dict[str, Any]:
    """The cheapest poll loop: aiohttp GETs at the same concurrency, JSON decoded, no more."""
    import aiohttp

    polls = _requests(spec["url"], spec["ids"])
    headers = {"telnyx": {"Authorization": f"Bearer {CREDENTIALS.telnyx_api_key}"},
               "bandwidth": {"Authorization": aiohttp.BasicAuth(
                   CREDENTIALS.bandwidth_username, CREDENTIALS.bandwidth_password).encode()}}

    async def main() -> dict[str, Any]:
        done = failures = 0
        async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as session:
            async def worker(offset: int, deadline: float) -> None:
                nonlocal done, failures
                position = offset
                while time.monotonic() < deadline:
                    provider, urls = polls[position % len(polls)]
                    position += CONCURRENCY
                    for url in urls:
                        async with session.get(url, headers=headers[provider]) as answer:
                            await answer.json()
                            failures += answer.status != 200
                    done += 1

            await asyncio.gather(*(worker(i, time.monotonic() + 1.0)
                                   for i in range(CONCURRENCY)))  # warm-up
            done = failures = 0
            wall, cpu = time.monotonic(), time.process_time()
            deadline = wall + spec["seconds"]
            await asyncio.gather(*(worker(i, deadline) for i in range(CONCURRENCY)))
            return {"polls": done, "seconds": time.monotonic() - wall,
                    "cpu": time.process_time() - cpu, "failures": failures}

    return asyncio.run(main())


class NaiveBase(DeclarativeBase):
    pass


class Snapshot(NaiveBase):
    """The naive poller's one table: a row per poll, whatever changed."""

    __tablename__ = "naive_snapshot"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conference_id: Mapped[str] = mapped_column(String)
    observed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str | None] = mapped_column(String, nullable=True)
    raw: Mapped[Any] = mapped_column(JSON)


def naive(spec: dict[str, Any]) -> dict[str, Any]:
    """A quick script: sequential httpx.Client GETs, an ORM session, commit and snapshot row
    per poll."""
    import httpx

    engine = create_engine(spec["database_url"])
    NaiveBase.metadata.create_all(engine)
    polls = _requests(spec["url"], spec["ids"])
    auth = {"telnyx": None,
            "bandwidth": httpx.BasicAuth(CREDENTIALS.bandwidth_username,
                                         CREDENTIALS.bandwidth_password)}
    headers = {"Authorization": f"Bearer {CREDENTIALS.telnyx_api_key}"}
    done = failures = 0
    with httpx.Client(headers=headers) as client:
        def poll(position: int) -> None:
            nonlocal failures
            provider, urls = polls[position % len(polls)]
            documents = []
            for url in urls:
                answer = client.get(url, auth=auth[provider] or httpx.USE_CLIENT_DEFAULT)
                failures += answer.status_code != 200
                documents.append(answer.json())
            first = documents[0].get("data", documents[0])
            with Session(engine) as session:
                session.add(Snapshot(conference_id=first.get("id"),
                                     observed_at=datetime.now(UTC),
                                     status=first.get("status") or (
                                         "completed" if first.get("completedTime") else
                                         "in_progress"),
                                     raw=documents))
                session.commit()

        warm_until = time.monotonic() + 1.0
        while time.monotonic() < warm_until:
            poll(done)
            done += 1
        done = failures = 0
        wall, cpu = time.monotonic(), time.process_time()
        deadline = wall + spec["seconds"]
        while time.monotonic() < deadline:
            poll(done)
            done += 1
    engine.dispose()
    return {"polls": done, "seconds": time.monotonic() - wall,
            "cpu": time.process_time() - cpu, "failures": failures}


def baseline_main(path: str) -> None:
    spec = json.loads(Path(path).read_text())
    measured = floor(spec) if spec["kind"] == "floor" else naive(spec)
    measured["peak_rss_mb"] = memory_mb(os.getpid())[1]
    print(json.dumps(measured))


# -- the table ---------------------------------------------------------------------------------

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


def plan(args: argparse.Namespace) -> tuple[int, list[Case]]:
    """The saturated runs' target count and the scheduled cases."""
    databases = ["sqlite"] + (["postgresql"] if args.postgres else [])
    if args.only:
        return 2000, [Case(int(n), p, scenario, db, float(rest[0]) if rest else INTERVAL)
                      for n, p, scenario, db, *rest in (spec.split(":") for spec in args.only)]
    if args.smoke:
        return 20, [Case(20, "mixed", "steady", databases[-1], 1.0)]
    if args.quick:
        return 200, [Case(200, "mixed", "steady", db, 2.0) for db in databases] + [
            Case(200, "mixed", "churn", databases[-1], 2.0)]
    if args.all:
        return 2000, [Case(n, p, s, db) for db in databases for n in (1000, 5000, 10000)
                      for p in PROVIDERS for s in ("steady", "churn")]
    cases = [Case(n, "mixed", "steady", "sqlite") for n in (1000, 5000, 10000)]
    cases += [Case(5000, p, "steady", "sqlite") for p in ("telnyx", "bandwidth")]
    cases += [Case(5000, "mixed", "churn", "sqlite")]
    if args.postgres:
        cases += [Case(5000, "mixed", s, "postgresql") for s in ("steady", "churn")]
        cases += [Case(10000, "mixed", "steady", "postgresql", 30.0)]
    return 2000, cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 targets, short windows")
    parser.add_argument("--smoke", action="store_true",
                        help="20 targets, one-second windows: only checks that it runs")
    parser.add_argument("--all", action="store_true",
                        help="every N x providers x steady/churn x database combination")
    parser.add_argument("--only", action="append", metavar="N:PROVIDERS:SCENARIO:DB[:INTERVAL]",
                        help="run this scheduled case instead of the default ones (repeatable),"
                             " e.g. 5000:mixed:churn:postgresql or 10000:telnyx:steady:sqlite:30")
    parser.add_argument("--window", type=float, default=None,
                        help="seconds measured per run (default 20; --quick 4)")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES,
                        help="a PostgreSQL server to create a scratch database on "
                             "(default: %(default)s)")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--baseline", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline:
        baseline_main(args.baseline)
        return
    args.postgres = not args.no_postgres and postgres_available(args.postgres_url)
    window = args.window or (1.0 if args.smoke else 4.0 if args.quick else 20.0)
    saturated, cases = plan(args)
    databases = ["sqlite"] + (["postgresql"] if args.postgres else [])

    print(f"poller throughput benchmark — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
          f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, concurrency {CONCURRENCY}, "
          f"load average {load()}")
    if not args.postgres:
        print("(PostgreSQL not reachable or --no-postgres: SQLite rows only)")
    results: list[Result] = []
    naive_rates: dict[str, float] = {}

    # Saturated: floor, naive and ours on the same targets.
    with ExitStack() as stack:
        sim = stack.enter_context(simulator(saturated // 2))
        ids = targets(sim, "mixed", saturated)
        floor_result = run_baseline("floor", sim, ids, window)
        results.append(floor_result)
        for db in databases:
            with scratch_database(None if db == "sqlite" else args.postgres_url) as url:
                naive_result = run_baseline("naive", sim, ids, window, url)
            naive_rates[db] = naive_result.rate
            results.append(naive_result)
            with scratch_database(None if db == "sqlite" else args.postgres_url) as url:
                results.append(run_ours(Case(saturated, "mixed", "max", db), url, sim, window))

        # Scheduled: N targets every INTERVAL seconds (a new world unless the size matches).
        size = saturated // 2
        for case in cases:
            if world_size(case) != size:
                stack.close()
                size = world_size(case)
                sim = stack.enter_context(simulator(size))
            with scratch_database(None if case.database == "sqlite" else args.postgres_url
                                  ) as url:
                results.append(run_ours(case, url, sim, max(window, 2 * case.interval)))

    print(f"\nload average at the end: {load()} (other processes share the CPUs)")
    print_table(results, floor_result, naive_rates)
    print_goals(results, floor_result, naive_rates)


def print_table(results: list[Result], floor_result: Result,
                naive_rates: dict[str, float]) -> None:
    print()
    print(f"{'run':<45} {'polls/s':>8} {'x naive':>8} {'CPU s/1k':>9} {'CPU x floor':>11} "
          f"{'peak RSS':>9} {'hist rows':>10} {'late p50':>9} {'late p99':>9} {'failed':>6}")
    print(f"{'':<45} {'':>8} {'':>8} {'polls':>9} {'':>11} {'MB':>9} {'/poll':>10} "
          f"{'s':>9} {'s':>9} {'':>6}")
    for r in results:
        db = r.label.rsplit(" ", 1)[-1]
        x_naive = (f"{r.rate / naive_rates[db]:.1f}x" if r.label.startswith("ours")
                   and "max" in r.label and db in naive_rates else "")
        rows = f"{r.history_rows / r.polls:.3f}" if r.history_rows is not None and r.polls \
            else ""
        late = [f"{v:.2f}" for v in r.late] if r.late else ["", ""]
        print(f"{r.label:<45} {r.rate:8.0f} {x_naive:>8} {r.cpu_per_1k:9.2f} "
              f"{r.cpu_per_1k / floor_result.cpu_per_1k:10.2f}x "
              f"{r.peak_rss_mb or 0:9.0f} {rows:>10} {late[0]:>9} {late[1]:>9} "
              f"{r.failures:>6}")
        for note in r.notes:
            print(f"    {note}")


def print_goals(results: list[Result], floor_result: Result,
                naive_rates: dict[str, float]) -> None:
    ours = [r for r in results if r.label.startswith("ours")]
    steady = [r for r in ours if "steady" in r.label]
    saturated = [r for r in ours if "max" in r.label]
    print("\ngoals")

    def goal(text: str, met: bool | None, value: str) -> None:
        mark = "n/a" if met is None else ("met" if met else "NOT met")
        print(f"  {text:<52} {mark:<8} {value}")

    cpu = [r.cpu_per_1k / floor_result.cpu_per_1k for r in steady]
    goal("CPU per poll <= 3x the floor (steady)", max(cpu) <= 3 if cpu else None,
         ", ".join(f"{c:.2f}x" for c in cpu))
    speed = [r.rate / naive_rates[r.label.rsplit(' ', 1)[-1]] for r in saturated]
    goal(">= 10x the naive poller's throughput", min(speed) >= 10 if speed else None,
         ", ".join(f"{s:.1f}x" for s in speed))
    five = [r for r in ours if " 5,000 " in r.label and "@10s" in r.label and r.late]
    goal("5,000 targets @10 s: p99 lateness < 1 s", max(r.late[1] for r in five) < 1  # type: ignore[index]
         if five else None, ", ".join(f"{r.late[1]:.2f} s" for r in five))  # type: ignore[index]
    big = [r for r in ours if "10,000" in r.label]
    goal("10,000 targets: RSS < 150 MB", max(r.peak_rss_mb or 0 for r in big) < 150
         if big else None, ", ".join(f"{r.peak_rss_mb:.0f} MB" for r in big))
    zero = [r.history_rows for r in steady if r.history_rows is not None]
    goal("0 history rows for unchanged polls", all(n == 0 for n in zero) if zero else None,
         f"{sum(zero)} rows over {sum(r.polls for r in steady):,} steady polls")


if __name__ == "__main__":
    main()
