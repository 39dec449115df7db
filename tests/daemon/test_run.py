"""``poller run`` as a real process against ``poller simulate`` served over TCP.

Everything runs in real time (the simulator at 60x, so a lively conference lives a few real
seconds), so the checks are the ones real time cannot upset: what is recorded happened, in
order, without gaps or duplicates, and enough of it was recorded.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, create_engine, inspect, select, text
from test_history_vs_truth import BANDWIDTH, TELNYX, compare
from waiting import catches, wait_for

from poller.store.database import make_engine
from poller.store.fleet import register
from poller.store.schema import PollTarget

STARTUP_SECONDS = 30.0
"""Bound on a process start (imports, migrations) on a loaded machine."""
PROGRESS_SECONDS = 40.0
"""Bound on waiting for the daemon to record something."""
GRACE_SECONDS = 5.0
MIN_TRANSITIONS_PER_PROVIDER = 2


@dataclass
class Sim:
    """A running ``poller simulate``: its URL, printed accounts and credential variables."""

    url: str
    accounts: list[dict[str, Any]]
    env: dict[str, str]


def _poller_command() -> list[str]:
    script = Path(sys.executable).with_name("poller")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from poller.cli import main; main()"]


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=30)


_wait_for = partial(wait_for, seconds=PROGRESS_SECONDS, every=0.2)


@pytest.fixture(scope="module")
def sim() -> Iterator[Sim]:
    """``poller simulate --lively --speed 60`` on a free port, for the whole module."""
    with serving_simulator("--lively", "--speed", "60", "--conferences", "6",
                           "--seed", "7") as served:
        yield served


@contextmanager
def serving_simulator(*options: str, graceful: bool = True) -> Iterator[Sim]:
    """``poller simulate --port 0 …`` once it answers; stopped afterwards (killed at once
    unless ``graceful``: uvicorn would wait for held-back answers)."""
    command = [*_poller_command(), "simulate", "--port", "0", *options]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert process.stdout is not None
        received = b""
        deadline = time.monotonic() + STARTUP_SECONDS
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            while b"(Ctrl-C to stop)" not in received:
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"no simulator banner; got:\n{received.decode()}"
                if selector.select(timeout=remaining):
                    chunk = os.read(process.stdout.fileno(), 65536)
                    assert chunk, f"simulate exited early:\n{received.decode()}"
                    received += chunk
        output = received.decode()
        url = output.split("# Serving on ")[1].split()[0]
        snippet = output.split("# 1. Add to config.toml:")[1].split("# 2.")[0]
        env = dict(line.removeprefix("export ").split("=", 1)
                   for line in output.splitlines() if line.startswith("export "))
        with httpx.Client(base_url=url, timeout=10) as client:
            deadline = time.monotonic() + STARTUP_SECONDS
            while True:
                try:
                    served = client.get("/_sim/conferences").json()
                    break
                except httpx.ConnectError:
                    assert time.monotonic() < deadline, "simulator not answering"
                    time.sleep(0.1)
        accounts = tomllib.loads(snippet)["accounts"]
        assert [a["name"] for a in accounts] == [TELNYX, BANDWIDTH]
        assert served, "the simulator serves conferences"
        yield Sim(url, accounts, env)
    finally:
        if graceful:
            process.terminate()
        try:
            process.wait(timeout=10 if graceful else 0)
        except subprocess.TimeoutExpired:
            _stop(process)
        if process.stdout is not None:
            process.stdout.close()


def _toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)


def write_config(path: Path, database: Path, accounts: list[dict[str, Any]], *,
                 grace_seconds: float = GRACE_SECONDS) -> None:
    """A config.toml polling ``accounts`` fast, into the SQLite file ``database``."""
    lines = [
        "[database]", f"url = {json.dumps(f'sqlite:///{database}')}", "",
        "[polling]", "interval_seconds = 0.5", "idle_interval_seconds = 1",
        "completion_grace_seconds = 1", "backoff_base_seconds = 1", "backoff_max_seconds = 2",
        "read_timeout_seconds = 60", f"shutdown_grace_seconds = {grace_seconds}", "",
    ]
    for account in accounts:
        lines.append("[[accounts]]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in account.items()]
        lines.append("")
    path.write_text("\n".join(lines))


def _conference_ids(account: dict[str, Any]) -> list[str]:
    return [c if isinstance(c, str) else c["id"] for c in account["conferences"]]


class Daemon:
    """A ``poller run`` process, its stderr, and a read-only view of its database."""

    def __init__(self, sim: Sim, config: Path, database: Path, stderr: IO[bytes],
                 options: tuple[str, ...] = ()) -> None:
        self._stderr = stderr
        self.process = subprocess.Popen(
            [*_poller_command(), *options, "--config", str(config), "run"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=self._stderr,
            env={**os.environ, **sim.env, "PYTHONUNBUFFERED": "1"})
        self.engine: Engine = create_engine(f"sqlite:///{database}")

    def stderr(self) -> str:
        """Everything logged so far."""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def query(self, sql: str, **params: Any) -> list[Any]:
        """Rows of ``sql``, or none while the database is not there yet."""
        try:
            with self.engine.connect() as conn:
                return list(conn.execute(text(sql), params).all())
        except Exception:  # not created or not migrated yet
            return []

    def transitions_by_account(self) -> dict[str, int]:
        """Status transitions recorded so far, per account."""
        rows = self.query("select c.account, count(*) from status_transition t "
                          "join conference c on c.id = t.conference_pk group by c.account")
        return {account: count for account, count in rows}

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.process.poll() is None

    def close(self) -> None:
        """Kill the process if it still runs; release the database."""
        _stop(self.process)
        self.engine.dispose()


@contextmanager
def running_daemon(sim: Sim, config: Path, database: Path, *options: str) -> Iterator[Daemon]:
    """``poller [options] --config config run``, killed afterwards if still running."""
    with tempfile.TemporaryFile() as stderr:
        daemon = Daemon(sim, config, database, stderr, options)
        try:
            yield daemon
        finally:
            daemon.close()


def _terminate(daemon: Daemon) -> int:
    daemon.process.send_signal(signal.SIGTERM)
    return daemon.process.wait(timeout=GRACE_SECONDS + 20)


def test_run_records_both_providers_and_stops_on_sigterm(sim: Sim, tmp_path: Path) -> None:
    """The daemon records true, gapless history for both providers, logs JSON lines without
    secrets, and exits 0 on SIGTERM."""
    database, config = tmp_path / "run.db", tmp_path / "config.toml"
    write_config(config, database, sim.accounts)
    with running_daemon(sim, config, database, "--log-format", "json") as daemon:
        def progressed() -> bool:
            assert daemon.alive(), daemon.stderr()
            counts = daemon.transitions_by_account()
            return all(counts.get(name, 0) >= MIN_TRANSITIONS_PER_PROVIDER
                       for name in (TELNYX, BANDWIDTH))

        _wait_for("transitions of both providers", progressed)
        started = time.monotonic()
        assert _terminate(daemon) == 0, daemon.stderr()
        assert time.monotonic() - started < GRACE_SECONDS + 20
        logged = daemon.stderr()
        leases = daemon.query("select count(*) from poll_target where lease_owner is not null")
    assert leases[0][0] == 0
    records = [json.loads(line) for line in logged.splitlines()]
    assert {"time", "level", "logger", "message"} <= set(records[0])
    assert not [r for r in records if r["level"] in ("ERROR", "CRITICAL") or "exception" in r]
    assert records[-1]["message"] == "poller stopped"
    failed = [r for r in records if "poll failed" in r["message"]]
    assert failed, "some conferences of the lively world do not exist yet: 404s are logged"
    assert all(r["level"] == "WARNING" and "-sim'" in r["message"] for r in failed)
    # The context as fields of their own (docs/operations.md "Logs"), the daemon on every line.
    for record in failed:
        assert record["account"] in (TELNYX, BANDWIDTH)
        assert record["provider"] in ("telnyx", "bandwidth")
        assert record["conference_id"] in record["message"]
        assert record["kind"] == "not_found"
        assert record["http_status"] == 404
        assert record["duration_ms"] >= 0
    daemons = {r.get("daemon") for r in records if r["logger"].startswith("poller.")}
    assert len(daemons) == 1
    assert None not in daemons
    for secret in sim.env.values():
        assert secret not in logged
    truth = httpx.get(f"{sim.url}/_sim/truth", timeout=30).json()
    engine = create_engine(f"sqlite:///{database}")
    try:
        # An empty window: only what real time cannot upset is compared (see module doc).
        now = datetime.now(UTC)
        counts = compare(engine, truth, (now, now), complete=False)
        stored = _every_value(engine)
    finally:
        engine.dispose()
    for secret in sim.env.values():
        assert secret not in stored, "a credential reached the database"
    assert counts["transitions"] >= 2 * MIN_TRANSITIONS_PER_PROVIDER
    assert counts["members"] >= 1


def _every_value(engine: Engine) -> str:
    """Every value of every table and view, as one text to search."""
    inspector = inspect(engine)
    parts: list[str] = []
    with engine.connect() as conn:
        for name in inspector.get_table_names() + inspector.get_view_names():
            parts.extend(repr(tuple(row)) for row in conn.exec_driver_sql(
                f'select * from "{name}"'))
    assert len(parts) > 10, "the database should hold recorded history"
    return "\n".join(parts)


def test_second_daemon_on_one_sqlite_file_is_refused(sim: Sim, tmp_path: Path) -> None:
    """A second ``poller run`` on the same SQLite file exits 1 and says why."""
    database, config = tmp_path / "run.db", tmp_path / "config.toml"
    write_config(config, database, sim.accounts)
    with running_daemon(sim, config, database) as first:
        _wait_for("the first daemon to sync its targets",
                  lambda: bool(first.query("select 1 from poll_target")))
        second = subprocess.run([*_poller_command(), "--config", str(config), "run"],
                                capture_output=True, timeout=STARTUP_SECONDS,
                                env={**os.environ, **sim.env}, check=False)
        assert second.returncode == 1
        assert b"is already using this SQLite database" in second.stderr
        assert first.alive(), first.stderr()
        assert _terminate(first) == 0, first.stderr()


def test_sighup_adds_a_conference_and_survives_a_bad_config(sim: Sim, tmp_path: Path) -> None:
    """SIGHUP with a bad file keeps the daemon running; with one more ID, that one is polled."""
    database, config = tmp_path / "run.db", tmp_path / "config.toml"
    telnyx, bandwidth = sim.accounts
    added = _conference_ids(bandwidth)[-1]
    fewer = {**bandwidth, "conferences": bandwidth["conferences"][:-1]}
    write_config(config, database, [telnyx, fewer])
    with running_daemon(sim, config, database) as daemon:
        _wait_for("the first polls", lambda: bool(daemon.query(
            "select 1 from poll_target where poll_count > 0")))
        assert not daemon.query("select 1 from poll_target where conference_id = :c", c=added)

        config.write_text("[polling]\ninterval_seconds = -1\n")
        daemon.process.send_signal(signal.SIGHUP)
        _wait_for("the reload error", lambda: "configuration not reloaded" in daemon.stderr())
        assert "polling.interval_seconds" in daemon.stderr()
        assert daemon.alive(), daemon.stderr()

        write_config(config, database, [telnyx, bandwidth])
        daemon.process.send_signal(signal.SIGHUP)
        _wait_for("the added conference to be polled", lambda: bool(daemon.query(
            "select 1 from poll_target where conference_id = :c and poll_count > 0", c=added)))
        assert _terminate(daemon) == 0, daemon.stderr()
        logged = daemon.stderr()
    assert "Traceback" not in logged, logged


def test_sigterm_abandons_slow_polls_after_the_grace_and_leaves_them_due(tmp_path: Path) -> None:
    """Polls still in flight when the grace runs out are abandoned: exit 0, no lease left,
    every abandoned target still due (or due when its account's 429 pause ends); the polls that
    had finished (the fast failures) are recorded."""
    database, config = tmp_path / "run.db", tmp_path / "config.toml"
    # 80 targets, a seventh of the requests held for 60 s: the first tick is still waiting.
    with serving_simulator("--conferences", "40", "--fault-rate", "1", "--slow-seconds", "60",
                           "--seed", "3", graceful=False) as slow_sim:
        write_config(config, database, slow_sim.accounts, grace_seconds=1)
        with running_daemon(slow_sim, config, database) as daemon:
            _wait_for("the fast failures of the first tick",
                      lambda: "poll failed" in daemon.stderr())
            started = time.monotonic()
            assert _terminate(daemon) == 0, daemon.stderr()
            assert time.monotonic() - started < 1 + 20
            logged = daemon.stderr()
            stopped_at = datetime.now(UTC)
    assert "abandoning them" in logged, logged
    assert "Traceback" not in logged, logged
    engine = make_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as conn:
            targets = conn.execute(select(PollTarget.lease_owner, PollTarget.next_poll_at,
                                          PollTarget.last_polled_at)).all()
    finally:
        engine.dispose()
    assert len(targets) == 80
    assert all(target.lease_owner is None for target in targets)
    unpolled = [target for target in targets if target.last_polled_at is None]
    assert unpolled, "the held polls were abandoned"
    assert len(unpolled) < len(targets), "what had finished before the stop is recorded"
    # Abandoned targets stay due; those handed back for a 429 pause (2 s) are due when it ends.
    paused_until = stopped_at + timedelta(seconds=2)
    assert all(target.next_poll_at <= paused_until for target in unpolled)
    assert any(target.next_poll_at <= stopped_at for target in unpolled)


def _served_url(daemon: Daemon, key: str) -> str | None:
    """``http://host:port`` the daemon logged for the ``key`` server (``metrics.listen``)."""
    found = re.search(rf"on (http://[^ ]+) \({re.escape(key)}\)", daemon.stderr())
    return found.group(1) if found else None


def _samples(body: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [(sample.labels, sample.value)
            for family in text_string_to_metric_families(body)
            for sample in family.samples if sample.name == name]


def test_run_serves_metrics_and_health(sim: Sim, tmp_path: Path) -> None:
    """With ``[metrics]`` and ``[health]`` on port 0: /healthz answers, /readyz turns ready
    after the first ticks, /metrics counts the polls of both providers; SIGTERM exits 0."""
    database, config = tmp_path / "run.db", tmp_path / "config.toml"
    write_config(config, database, sim.accounts)
    config.write_text(config.read_text() + '\n[metrics]\nlisten = "127.0.0.1:0"\n\n'
                      '[health]\nlisten = "127.0.0.1:0"\n')
    with running_daemon(sim, config, database) as daemon, httpx.Client(timeout=10) as http:
        urls: dict[str, str] = {}

        def listening() -> bool:
            assert daemon.alive(), daemon.stderr()
            for key in ("metrics.listen", "health.listen"):
                url = _served_url(daemon, key)
                if url is not None:
                    urls[key] = url
            return len(urls) == 2

        _wait_for("both servers to listen", listening, seconds=STARTUP_SECONDS)
        metrics_url, health_url = urls["metrics.listen"], urls["health.listen"]
        assert http.get(f"{health_url}/healthz").status_code == 200
        assert http.get(f"{metrics_url}/healthz").status_code == 200
        _wait_for("/readyz to be ready",
                  lambda: http.get(f"{health_url}/readyz").status_code == 200)
        assert http.get(f"{health_url}/readyz").json()["ready"] is True

        def polled_both() -> bool:
            body = http.get(f"{metrics_url}/metrics").text
            polls: dict[str, float] = {}
            for labels, value in _samples(body, "poller_polls_total"):
                polls[labels["provider"]] = polls.get(labels["provider"], 0) + value
            return polls.get("telnyx", 0) > 0 and polls.get("bandwidth", 0) > 0

        _wait_for("polls of both providers in /metrics", polled_both)
        body = http.get(f"{metrics_url}/metrics").text
        [(_, last_tick)] = _samples(body, "poller_last_successful_tick_timestamp_seconds")
        assert last_tick > 0
        assert sum(v for _, v in _samples(body, "poller_poll_duration_seconds_count")) > 0
        assert sum(v for _, v in _samples(body, "poller_http_responses_total")) > 0
        slots = {labels["state"]: v for labels, v in _samples(body, "poller_poll_slots")}
        assert set(slots) == {"limit", "in_use", "waiting"}
        assert slots["limit"] >= 32  # concurrency = "auto": 32 slots at least
        targets = sum(v for _, v in _samples(body, "poller_targets"))
        assert targets == sum(len(_conference_ids(account)) for account in sim.accounts)
        assert http.get(f"{health_url}/metrics").status_code == 404
        assert _terminate(daemon) == 0, daemon.stderr()
        logged = daemon.stderr()
    assert "Traceback" not in logged, logged


def test_run_exits_2_when_the_metrics_port_is_taken(sim: Sim, tmp_path: Path) -> None:
    """An address already in use is a configuration error naming the setting: exit 2."""
    database, config = tmp_path / "run.db", tmp_path / "config.toml"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        write_config(config, database, sim.accounts)
        config.write_text(config.read_text() + f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n')
        result = subprocess.run([*_poller_command(), "--config", str(config), "run"],
                                capture_output=True, timeout=STARTUP_SECONDS,
                                env={**os.environ, **sim.env}, check=False)
    assert result.returncode == 2, result.stderr.decode()
    assert b"metrics.listen" in result.stderr
    assert b"Traceback" not in result.stderr


def test_run_exits_1_when_another_process_takes_over_its_identity(sim: Sim, tmp_path: Path
                                                                  ) -> None:
    """A daemon whose ``[daemon] identity`` another process registered (after it missed its
    heartbeats past its lease) stops and exits 1, not 0, so ``Restart=on-failure`` restarts it;
    the error says why."""
    database, config = tmp_path / "run.db", tmp_path / "config.toml"
    write_config(config, database, sim.accounts)
    config.write_text(config.read_text() + '\n[daemon]\nidentity = "twin"\n'
                      "lease_seconds = 60\nheartbeat_seconds = 0.2\n")
    with running_daemon(sim, config, database) as daemon:
        def registered() -> bool:
            assert daemon.alive(), daemon.stderr()
            return bool(daemon.query("select 1 from poller_daemon where identity = 'twin'"))

        _wait_for("the daemon's registration", registered, seconds=STARTUP_SECONDS)
        later = datetime.now(UTC) + timedelta(seconds=120)  # its heartbeat looks 120 s old
        register(daemon.engine, "twin", host="elsewhere", pid=99, now=later, lease_seconds=60)
        code = daemon.process.wait(timeout=STARTUP_SECONDS)
        logged = daemon.stderr()
        [row] = daemon.query("select host, pid from poller_daemon")
    assert code == 1, logged
    assert "'twin' was taken over by another process" in logged
    assert "Traceback" not in logged
    assert tuple(row) == ("elsewhere", 99)


def test_a_sighup_right_after_the_start_reloads_instead_of_killing(sim: Sim,
                                                                  tmp_path: Path) -> None:
    """A SIGHUP while ``poller run`` is still loading (a ``systemctl reload`` right after a
    start) is noted and acted on once the daemon runs: a reload, not death by signal."""
    database, config = tmp_path / "hup.db", tmp_path / "config.toml"
    write_config(config, database, sim.accounts)
    with running_daemon(sim, config, database) as daemon:
        # The moment poller notes signals, before it imports the rest of itself: a fixed sleep
        # could fall before the interpreter even runs poller's code on a loaded machine (where
        # SIGHUP's default action still applies, and would rightly kill it).
        wait_for("poller to note SIGHUP", lambda: (
            daemon.alive() and catches(daemon.process.pid, signal.SIGHUP)),
            seconds=STARTUP_SECONDS, every=0.001)
        daemon.process.send_signal(signal.SIGHUP)
        _wait_for("the early SIGHUP's reload", lambda: (
            daemon.alive() and "configuration reloaded" in daemon.stderr()))
        assert _terminate(daemon) == 0, daemon.stderr()
        assert "SIGHUP received" in daemon.stderr()


def test_run_raises_a_low_open_files_limit() -> None:
    """``poller run`` raises a soft limit of open files below the hard one (to at most
    ``MAX_OPEN_FILES``): hundreds of connections an account must not fail on 1,024."""
    code = (
        "import resource\n"
        "from poller.commands.run import MAX_OPEN_FILES, raise_open_files_limit\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
        "cap = MAX_OPEN_FILES if hard == resource.RLIM_INFINITY else min(hard, MAX_OPEN_FILES)\n"
        "before, after = raise_open_files_limit()\n"
        "assert (before, after) == (256, cap), (before, after, cap)\n"
        "assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == cap\n"
        "assert raise_open_files_limit() == (cap, cap)  # already raised: unchanged\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
