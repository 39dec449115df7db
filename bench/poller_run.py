"""The poller under test: ``poller run`` in its own process, measured over a window.

``run_ours(case, database_url, sim, window)`` writes a ``config.toml`` for ``case`` (one Telnyx
account with an API key, one Bandwidth account with Basic auth, ``requests_per_second`` high
enough never to throttle, poll slots and connections on their default ``"auto"``, ``[metrics]
listen`` on a free port), starts
the real ``poller run`` CLI on it, waits until every target was polled once and one more
interval passed (saturated: 2 s), then measures a window: ``/metrics`` scraped at both ends
(polls by provider and outcome, lateness histogram, poll durations, HTTP responses, the poll
slots' limit), the
process's CPU (``/proc/<pid>/stat``) and peak RSS (``VmHWM``), and the history rows written.
``bench/soak.py`` uses the same pieces.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import BIN, CREDENTIALS, SimulatorProcess, cpu_seconds, memory_mb
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, func, select, text

HISTORY_TABLES = ("conference_snapshot", "status_transition", "member_event", "poll_error")
INTERVAL = 10.0
"""Seconds between polls of a target in the scheduled runs (``--quick``: 2)."""
SATURATED_INTERVAL = 0.1
"""The saturated runs' interval: far more due than the poller can poll."""
CHURN_FRACTION = 0.1


@dataclass(frozen=True)
class Case:
    """One run of the poller: N targets of ``providers``, ``scenario``, on ``database``,
    against a simulator answering ``latency_ms`` late."""

    targets: int
    providers: str  # mixed | telnyx | bandwidth
    scenario: str  # steady | churn | max
    database: str  # sqlite | postgresql

    interval: float = INTERVAL
    latency_ms: float = 0.0

    @property
    def label(self) -> str:
        rate = "max" if self.scenario == "max" else f"@{self.interval:g}s {self.scenario}"
        return (f"ours {self.targets:>6,} {self.providers:<9} {rate:<12} "
                f"{self.latency_ms:>3g}ms {self.database}")

    def counts(self) -> dict[str, int]:
        """Targets by provider."""
        if self.providers == "mixed":
            return {"telnyx": self.targets // 2, "bandwidth": self.targets - self.targets // 2}
        return {self.providers: self.targets}


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
    case: Case | None = None
    by_provider: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per provider over the window: ``polls``, ``poll_seconds`` (their durations summed) and
    ``requests`` (HTTP responses)."""
    floor_cpu_per_1k: float | None = None
    """CPU s / 1,000 polls of the floor at this run's mix, rate and latency."""
    floor_rate: float | None = None
    floor_poll_ms: float | None = None
    """The floor's mean poll duration (its requests' round trips, nothing else)."""
    slots: int | None = None
    """The poll slots' limit at the end of the window (``poller_poll_slots{state="limit"}``)."""

    @property
    def rate(self) -> float:
        return self.polls / self.seconds if self.seconds else 0.0

    @property
    def cpu_per_1k(self) -> float:
        return 1000 * self.cpu / self.polls if self.polls else float("nan")


def world_size(case: Case) -> int:
    """Conferences per provider the simulator serves for ``case``."""
    return case.targets // 2 if case.providers == "mixed" else case.targets


def targets(sim: SimulatorProcess, providers: str, n: int) -> dict[str, list[str]]:
    """The conference IDs to poll, by provider."""
    if providers == "mixed":
        return {"telnyx": sim.ids("telnyx")[: n // 2],
                "bandwidth": sim.ids("bandwidth")[: n - n // 2]}
    return {providers: sim.ids(providers)[:n]}


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
             "[polling]", f"interval_seconds = {interval}", "concurrency = 'auto'", "",
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
    """What one scrape of ``/metrics`` says: polls by provider and outcome, lateness buckets,
    poll durations and HTTP responses by provider."""

    def __init__(self, port: int) -> None:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                    timeout=30) as answer:
            body = answer.read().decode()
        self.polls: dict[tuple[str, str], float] = {}
        self.buckets: dict[float, float] = {}
        self.poll_seconds: dict[str, float] = {}
        self.requests: dict[str, float] = {}
        self.slots: int | None = None
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                labels = sample.labels
                if sample.name == "poller_polls_total":
                    key = (labels["provider"], labels["outcome"])
                    self.polls[key] = self.polls.get(key, 0) + sample.value
                elif sample.name == "poller_poll_lateness_seconds_bucket":
                    bound = float(labels["le"])
                    self.buckets[bound] = self.buckets.get(bound, 0) + sample.value
                elif sample.name == "poller_poll_duration_seconds_sum":
                    self.poll_seconds[labels["provider"]] = sample.value
                elif sample.name == "poller_poll_slots" and labels["state"] == "limit":
                    self.slots = int(sample.value)
                elif sample.name == "poller_http_responses_total":
                    provider = labels["provider"]
                    self.requests[provider] = self.requests.get(provider, 0) + sample.value

    @property
    def total(self) -> int:
        return int(sum(self.polls.values()))

    @property
    def failures(self) -> int:
        return int(sum(n for (_, outcome), n in self.polls.items()
                       if outcome not in ("ok", "unchanged")))

    def by_provider(self, before: Scrape) -> dict[str, dict[str, float]]:
        """Per provider, what happened since ``before``: polls, poll seconds, requests."""
        out: dict[str, dict[str, float]] = {}
        for (provider, _), n in self.polls.items():
            entry = out.setdefault(provider, {"polls": 0.0, "poll_seconds": 0.0,
                                              "requests": 0.0})
            entry["polls"] += n - before.polls.get((provider, _), 0)
        for provider, entry in out.items():
            entry["poll_seconds"] = (self.poll_seconds.get(provider, 0)
                                     - before.poll_seconds.get(provider, 0))
            entry["requests"] = self.requests.get(provider, 0) - before.requests.get(provider, 0)
        return out


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
        wait_for(lambda: Scrape(port).total >= case.targets, 600,
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
                        after.failures - before.failures, case=case,
                        by_provider=after.by_provider(before), slots=after.slots)
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
