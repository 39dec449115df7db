"""Lockstep proofs: the real ``poller`` CLI against a simulator whose clock moves only when told.

The simulator (``poller.simulator``) is served by uvicorn on a free 127.0.0.1 port, in a thread
of the test process, on a ``VirtualClock``. The poller runs as a real subprocess (``poller
--config C once`` per step, or one ``poller run`` stopped with SIGTERM) with a short real poll
interval. The harness moves the simulated world one ``INTERVAL`` at a time and, after each move,
waits until the poller has answered for it: every conference that exists in the simulated
world has been polled successfully after the move (or is retired). So every simulated state
that lasts at least two intervals spans a moment the poller looked at, and the recorded
history can be compared with the simulator's ground truth (``GET /_sim/truth``) *exactly*:

* every status change (with its end reason and completion time) and every member join, leave,
  mute and hold whose state lasted at least ``2 * INTERVAL`` is recorded, in order (a *miss*
  otherwise);
* nothing is recorded that did not happen (*fabricated*), nothing twice in a row
  (*duplicates*), sequence numbers have no gaps and every transition's ``from_status`` is the
  previous one's ``to_status``.

While the database is away (an outage) the poller cannot record, so the harness cannot read
its looks from the database: it waits instead until the simulator has *served* every conference
that could still change a whole answer after the move (:class:`FetchLog`); the daemon spools
what it fetched, and the comparison later requires those states too. A daemon killed after a
move must look again (the results it had fetched may not have reached the spool).

Faults (:class:`poller.simulator.FaultConfig`), ``SIGKILL`` of the daemon and database outages
are applied between or during steps by the tests in ``test_proofs.py``; each test prints one
line of figures (``Figures.line``) and adds it to the pytest terminal summary.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import IO, Any

import httpx
import uvicorn
import waiting
from sqlalchemy import Engine, create_engine, pool, select
from test_history_vs_truth import (
    BANDWIDTH,
    TELNYX,
    collapse,
    history,
    member_sequences,
    parse_time,
    truth_member_changes,
)

from poller.model import Provider
from poller.simulator import FaultConfig, ScenarioConfig, Simulator, VirtualClock, create_app
from poller.simulator.app import BANDWIDTH_PREFIX, TELNYX_PREFIX
from poller.simulator.webhooks import (
    BANDWIDTH_WEBHOOK_PASSWORD,
    BANDWIDTH_WEBHOOK_USERNAME,
    SIMULATOR_PUBLIC_KEY,
)
from poller.store.database import normalise_url
from poller.store.schema import PollTarget

INTERVAL = 20.0
"""Simulated seconds the world moves per step."""
SIGNIFICANT = 2 * INTERVAL
"""A state that lasted this long (inside the compared window) must be recorded."""
STEP_DEADLINE_SECONDS = 60.0
"""Bound on one step's catching up (generous: a loaded machine, faults, restarts)."""
STARTUP_SECONDS = 30.0

TELNYX_KEY_ENV = "LOCKSTEP_TELNYX_KEY"
BW_ID_ENV = "LOCKSTEP_BW_CLIENT_ID"
BW_SECRET_ENV = "LOCKSTEP_BW_CLIENT_SECRET"
TELNYX_PUBLIC_ENV = "LOCKSTEP_TELNYX_PUBLIC_KEY"
BW_HOOK_USER_ENV = "LOCKSTEP_BW_WEBHOOK_USER"
BW_HOOK_PASSWORD_ENV = "LOCKSTEP_BW_WEBHOOK_PASSWORD"
WEBHOOK_ENVIRON = {TELNYX_PUBLIC_ENV: SIMULATOR_PUBLIC_KEY,
                   BW_HOOK_USER_ENV: BANDWIDTH_WEBHOOK_USERNAME,
                   BW_HOOK_PASSWORD_ENV: BANDWIDTH_WEBHOOK_PASSWORD}
"""The variables a config written with ``webhooks=True`` names (the simulator's secrets)."""

POLLING = {
    "interval_seconds": 0.25,
    "idle_interval_seconds": 0.25,
    "completion_grace_seconds": 0.25,
    "never_found_retire_seconds": 3600,
    "backoff_base_seconds": 0.25,
    "backoff_max_seconds": 1,
    "connect_timeout_seconds": 2,
    "read_timeout_seconds": 2,
    "shutdown_grace_seconds": 5,
}
"""Real-time polling settings: quick enough that a step takes a fraction of a second."""


def compact_scenario(conferences: int, *, crowded: float = 0.0) -> ScenarioConfig:
    """Short lives with every kind of ending: all over within ~45 steps."""
    return ScenarioConfig(
        telnyx_conferences=conferences, bandwidth_conferences=conferences,
        created_from_seconds=-60.0, created_until_seconds=300.0,
        typical_duration_seconds=200.0, telnyx_max_duration_seconds=420.0,
        bandwidth_max_duration_seconds=540.0, retention_seconds=120.0,
        activity_interval_seconds=40.0, members_min=2, members_max=6,
        crowded_probability=crowded)


def steps_to_the_end(sim: Simulator) -> int:
    """Steps until every conference has completed, plus two for the grace polls."""
    last_ms = max(t.ended_ms for p in Provider for t in (
        sim.timeline(p, cid) for cid in sim.conference_ids(p)) if t is not None)
    return int(last_ms / 1000 / INTERVAL) + 3


def poller_command() -> list[str]:
    """The installed ``poller`` script next to this interpreter (or ``python -c``)."""
    script = Path(sys.executable).with_name("poller")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from poller.cli import main; main()"]


# --- the simulator, served ----------------------------------------------------------------------

class FetchLog:
    """The simulator's ASGI app, noting when each conference was last served whole: the last
    request of a poll (Telnyx's participants, Bandwidth's conference with its members) answered
    200 and its body sent, by ``(account, conference_id)``, in ``time.monotonic()``."""

    LAST_REQUEST = (
        (TELNYX, re.compile(rf"^{TELNYX_PREFIX}/conferences/([^/]+)/participants$")),
        (BANDWIDTH, re.compile(rf"^{BANDWIDTH_PREFIX}/accounts/[^/]+/conferences/([^/]+)$")),
    )

    def __init__(self, app: Any) -> None:
        self.app = app
        self.served: dict[tuple[str, str], float] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        key = None
        if scope["type"] == "http":
            for account, pattern in self.LAST_REQUEST:
                match = pattern.match(scope["path"])
                if match:
                    key = (account, match.group(1))
        if key is None:
            await self.app(scope, receive, send)
            return
        status = 0

        async def sending(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
            if (message["type"] == "http.response.body" and not message.get("more_body")
                    and status == 200):
                self.served[key] = time.monotonic()

        await self.app(scope, receive, sending)


class ServedSimulator:
    """A ``Simulator`` on a ``VirtualClock`` served by uvicorn on a free 127.0.0.1 port."""

    def __init__(self, *, seed: int, scenario: ScenarioConfig,
                 faults: FaultConfig | None = None, clock: Any = None) -> None:
        self.clock = clock if clock is not None else VirtualClock()
        self.sim = Simulator(seed=seed, clock=self.clock, scenario=scenario, faults=faults)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self.fetches = FetchLog(create_app(self.sim))
        self._server = uvicorn.Server(uvicorn.Config(
            self.fetches, log_level="warning", access_log=False, lifespan="off",
            timeout_graceful_shutdown=1))
        self._thread = threading.Thread(target=self._serve, name="simulator", daemon=True)
        self._http = httpx.Client(base_url=self.url, timeout=30)

    def _serve(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._socket]))

    def __enter__(self) -> ServedSimulator:
        self._thread.start()
        wait_for("the simulator to serve", lambda: self._server.started,
                 seconds=STARTUP_SECONDS)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._http.close()
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()

    def advance(self, seconds: float) -> datetime:
        """Move the simulated world on (``POST /_sim/clock``); the new simulated time."""
        answer = self._http.post("/_sim/clock", json={"advance_seconds": seconds})
        answer.raise_for_status()
        return parse_time(answer.json()["now"])

    def truth(self) -> dict[str, Any]:
        """``GET /_sim/truth`` (up to the simulated now)."""
        answer = self._http.get("/_sim/truth")
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result

    def stats(self) -> dict[str, Any]:
        """``GET /_sim/stats``: provider requests and the faults injected."""
        result: dict[str, Any] = self._http.get("/_sim/stats").json()
        return result

    def existing(self) -> set[tuple[str, str]]:
        """``(account, conference_id)`` of every conference that exists (created, not gone)."""
        now = self.sim.now_ms()
        found = set()
        for provider, account in ((Provider.TELNYX, TELNYX), (Provider.BANDWIDTH, BANDWIDTH)):
            for cid in self.sim.conference_ids(provider):
                timeline = self.sim.timeline(provider, cid)
                assert timeline is not None
                if timeline.created_ms <= now < timeline.gone_ms:
                    found.add((account, cid))
        return found

    def served_since(self, since: float, looked: datetime) -> bool:
        """Whether every conference that exists now and had not ended by ``looked`` (the last
        look: an ended conference changes no more) was served whole after ``since``."""
        looked_ms = self.sim.to_ms(looked)
        for account, cid in self.existing():
            provider = Provider.TELNYX if account == TELNYX else Provider.BANDWIDTH
            timeline = self.sim.timeline(provider, cid)
            assert timeline is not None
            if timeline.ended_ms <= looked_ms:
                continue
            if self.fetches.served.get((account, cid), -1.0) <= since:
                return False
        return True

    def environ(self) -> dict[str, str]:
        """The credential variables a config from :func:`write_config` names."""
        creds = self.sim.credentials
        return {TELNYX_KEY_ENV: creds.telnyx_api_key, BW_ID_ENV: creds.bandwidth_client_id,
                BW_SECRET_ENV: creds.bandwidth_client_secret}


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


def write_config(path: Path, database_url: str, served: ServedSimulator, *,
                 only: set[tuple[str, str]] | None = None, webhooks: bool = False,
                 detail_records: bool = False, **polling: Any) -> None:
    """A config polling the served simulator's conferences (``only``: just those) fast;
    ``webhooks``: taking their events too, on a free port (``WEBHOOK_ENVIRON``)."""
    sim = served.sim
    telnyx: list[Any] = []
    for cid in sim.conference_ids(Provider.TELNYX):
        if only is not None and (TELNYX, cid) not in only:
            continue
        timeline = sim.timeline(Provider.TELNYX, cid)
        assert timeline is not None
        telnyx.append(cid if timeline.region == "US" else {"id": cid, "region": timeline.region})
    bandwidth = [cid for cid in sim.conference_ids(Provider.BANDWIDTH)
                 if only is None or (BANDWIDTH, cid) in only]
    settings = {**POLLING, **polling}
    lines = ["[database]", f"url = {json.dumps(database_url)}", "",
             "[spool]", f"path = {json.dumps(str(path.parent / 'spool'))}", "", "[polling]"]
    lines += [f"{key} = {_toml(value)}" for key, value in settings.items()]
    if webhooks:
        lines += ["", "[webhooks]", 'listen = "127.0.0.1:0"']
    telnyx_hook = [f'webhook_public_key_env = "{TELNYX_PUBLIC_ENV}"'] if webhooks else []
    telnyx_hook += ["detail_records = true"] if detail_records else []
    bandwidth_hook = ([f'webhook_username_env = "{BW_HOOK_USER_ENV}"',
                       f'webhook_password_env = "{BW_HOOK_PASSWORD_ENV}"'] if webhooks else [])
    lines += ["", "[[accounts]]", f'name = "{TELNYX}"', 'provider = "telnyx"', *telnyx_hook,
              f'api_key_env = "{TELNYX_KEY_ENV}"', f'base_url = "{served.url}/v2"',
              "requests_per_second = 1000", f"conferences = {_toml(telnyx)}", "",
              "[[accounts]]", f'name = "{BANDWIDTH}"', 'provider = "bandwidth"',
              f'account_id = "{sim.credentials.bandwidth_account_id}"',
              f'client_id_env = "{BW_ID_ENV}"', f'client_secret_env = "{BW_SECRET_ENV}"',
              *bandwidth_hook,
              f'base_url = "{served.url}/api/v2"',
              f'token_url = "{served.url}/api/v1/oauth2/token"',
              "requests_per_second = 1000", f"conferences = {_toml(bandwidth)}", ""]
    path.write_text("\n".join(lines))


# --- the poller, as a process ---------------------------------------------------------------------

class PollerRun:
    """``poller --config C run`` as a subprocess, its stderr appended to ``log``."""

    def __init__(self, config: Path, environ: dict[str, str], log: IO[bytes]) -> None:
        self.process = subprocess.Popen(
            [*poller_command(), "--config", str(config), "run"], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=log,
            env={**os.environ, **environ, "PYTHONUNBUFFERED": "1"})

    def alive(self) -> bool:
        return self.process.poll() is None

    def terminate(self) -> int:
        """SIGTERM; the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=STARTUP_SECONDS)

    def kill(self) -> None:
        """SIGKILL, and reap it."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=STARTUP_SECONDS)

    def ensure_stopped(self) -> None:
        if self.alive():
            self.kill()


def run_once(config: Path, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``poller --config C once``, to its end."""
    return subprocess.run([*poller_command(), "--config", str(config), "once"],
                          capture_output=True, text=True, timeout=STARTUP_SECONDS * 2,
                          env={**os.environ, **environ}, check=False)


# --- waiting ----------------------------------------------------------------------------------

wait_for = partial(waiting.wait_for, seconds=STEP_DEADLINE_SECONDS, every=0.05)


def reader(database_url: str) -> Engine:
    """A read-only view of the database for the harness (no pool, plain deferred reads)."""
    return create_engine(normalise_url(database_url), poolclass=pool.NullPool)


def caught_up(engine: Engine, served: ServedSimulator, since: datetime) -> bool:
    """Whether every conference that exists now was polled successfully after ``since``
    (or is retired)."""
    try:
        with engine.connect() as conn:
            rows = {(r.account, r.conference_id): r for r in conn.execute(select(
                PollTarget.account, PollTarget.conference_id, PollTarget.state,
                PollTarget.last_success_at))}
    except Exception:  # not created yet, or unreachable for now
        return False
    for key in served.existing():
        row = rows.get(key)
        if row is None:
            return False
        if row.state == "retired":
            continue
        if row.last_success_at is None or row.last_success_at < since:
            return False
    return True


@dataclass
class Stepper:
    """Moves the world one interval and waits until the poller has looked at it."""

    served: ServedSimulator
    engine: Engine
    steps: int = 0
    start: datetime | None = None
    """Simulated time of the first look."""
    looked: datetime | None = None
    """Simulated time of the last look the poller finished."""
    restarts: int = 0
    """Daemons killed and started again (a look must follow each)."""

    def first(self, before: Callable[[], None] = lambda: None) -> datetime:
        """The first look, at the world as it is (no move)."""
        self.start = self.served.clock.now()
        self._look(before)
        return self.start

    def step(self, during: Callable[[], None] = lambda: None) -> datetime:
        """Advance one interval, run ``during`` (kill, outage…), wait for the poller."""
        self.served.advance(INTERVAL)
        self._look(during)
        self.steps += 1
        return self.served.clock.now()

    def moves_while_away(self, moves: int, real_seconds: float, *,
                         restart: Callable[[], None] | None = None) -> int:
        """The database is away: look at this step's move, then move the world ``moves - 1``
        more intervals, over ``real_seconds`` at least. Each look waits until the simulator
        has served every conference that can still change (the daemon spools what it
        fetched). ``restart`` (SIGKILL and a new daemon) is called half-way through, a moment
        after a move; the new daemon starts with the database away. The number of truth
        changes made meanwhile (status and member events)."""
        before = self.looked
        assert before is not None, "an outage follows a first look"
        began = time.monotonic()
        for move in range(moves):
            if move:
                self.served.advance(INTERVAL)
                self.steps += 1
            since = time.monotonic()
            if restart is not None and move == moves // 2:
                time.sleep(0.3)  # the kill lands among fetches and spool appends
                restart()
                since = time.monotonic()
            looked = self.looked
            wait_for(f"the poller to fetch step {self.steps} while the database is away",
                     lambda since=since, looked=looked: self.served.served_since(since, looked))
            self.looked = self.served.clock.now()
            time.sleep(max(0.0, began + real_seconds * (move + 1) / moves - time.monotonic()))
        after = self.served.clock.now()
        return sum(1 for conf in self.served.truth()["conferences"]
                   for at in ([c["at"] for c in conf["status_changes"]]
                              + [e["at"] for e in conf["member_events"]])
                   if before < parse_time(at) <= after)

    def _look(self, during: Callable[[], None]) -> None:
        since, world, restarts = datetime.now(UTC), self.served.clock.now(), self.restarts
        during()
        if self.served.clock.now() != world or self.restarts != restarts:
            since = datetime.now(UTC)  # moved on meanwhile, or restarted: look anew
        wait_for(f"the poller to catch up with step {self.steps}",
                 lambda: caught_up(self.engine, self.served, since))
        self.looked = self.served.clock.now()

    def window(self) -> tuple[datetime, datetime]:
        assert self.start is not None
        return self.start, self.served.clock.now()


# --- comparing with the truth -------------------------------------------------------------------

@dataclass
class Figures:
    """What a proof compared and found."""

    label: str
    truth_changes: int = 0
    """Lasting states in the truth: status changes, joins, leaves, mutes/unmutes, holds/unholds."""
    recorded: int = 0
    misses: int = 0
    duplicates: int = 0
    fabricated: int = 0
    conferences: int = 0
    requests: int = 0
    failed_requests: int = 0
    steps: int = 0
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        extra = "".join(f", {note}" for note in self.notes)
        return (f"{self.label}: {self.conferences} conferences, {self.steps} steps; changes in "
                f"truth {self.truth_changes}, recorded {self.recorded}, misses {self.misses}, "
                f"duplicates {self.duplicates}, fabricated {self.fabricated}; requests failed "
                f"{self.failed_requests}/{self.requests}{extra}")


def _overlap(a: tuple[datetime, datetime], b: tuple[datetime, datetime]) -> float:
    return max(0.0, (min(a[1], b[1]) - max(a[0], b[0])).total_seconds())


def merged_runs(changes: Sequence[tuple[datetime, Hashable]], end_of_life: datetime | None,
                window: tuple[datetime, datetime]) -> list[tuple[Hashable, float]]:
    """Each state (consecutive equal values merged) with the seconds it lasted in ``window``
    (a state lasting two intervals spans a look)."""
    runs: list[tuple[Hashable, float]] = []
    for i, (at, value) in enumerate(changes):
        until = changes[i + 1][0] if i + 1 < len(changes) else (end_of_life or window[1])
        overlap = _overlap((at, until), window)
        if runs and runs[-1][0] == value:
            runs[-1] = (value, runs[-1][1] + overlap)
        else:
            runs.append((value, overlap))
    return runs


def _greedy_matches(needle: Sequence[Hashable], haystack: Sequence[Hashable]) -> list[bool]:
    """For each item of ``needle``, whether a greedy in-order match finds it in ``haystack``."""
    found, position = [], 0
    for item in needle:
        try:
            position = list(haystack).index(item, position) + 1
            found.append(True)
        except ValueError:
            found.append(False)
    return found


def _compare_sequence(figures: Figures, label: str, runs: list[tuple[Hashable, float]],
                      recorded: Sequence[Hashable], *, flags: bool, required: bool = True
                      ) -> None:
    """One state sequence: count lasting changes, misses, duplicates, fabrications.

    Lasting states separated only by short ones that the poller cannot see are one state to
    it (``False``, 4 s ``True``, ``False`` is recorded as one ``False``): they are merged.
    ``required=False``: nothing of it could be seen (a member gone before the first look), so
    only what was recorded is checked.
    """
    visible = [value for value, _ in runs]
    got = collapse(recorded)
    figures.duplicates += len(recorded) - len(got)
    fabricated = _greedy_matches(got, visible).count(False)
    figures.fabricated += fabricated
    if fabricated:
        figures.problems.append(f"{label}: recorded {got} not in truth {visible}")
    if not required:
        return
    lasting: list[tuple[Hashable, bool]] = []
    for i, (value, overlap) in enumerate(runs):
        if overlap < SIGNIFICANT:
            continue
        if lasting and lasting[-1][0] == value:
            continue  # only short states in between: the same state to the poller
        # A flag's first value after a join is part of the join, and None means "not there":
        # only mute/unmute, hold/unhold count as changes of their own.
        counts = not flags or (value is not None and i > 0 and visible[i - 1] is not None)
        lasting.append((value, counts))
    matched = _greedy_matches([value for value, _ in lasting], got)
    for (value, counts), ok in zip(lasting, matched, strict=True):
        if counts:
            figures.truth_changes += 1
            figures.recorded += ok
            figures.misses += not ok
        if not ok:
            figures.problems.append(f"{label}: lasting {value!r} missing from {got} "
                                    f"(truth {visible})")


def compare_with_truth(engine: Engine, truth: dict[str, Any], window: tuple[datetime, datetime],
                       figures: Figures) -> Figures:
    """Fill ``figures`` from the recorded history against ``truth`` inside ``window``."""
    recorded = history(engine)
    for conf in truth["conferences"]:
        account = TELNYX if conf["provider"] == "telnyx" else BANDWIDTH
        label = f"{conf['provider']} {conf['conference_id']}"
        gone_at = parse_time(conf["gone_at"]) if conf["gone_at"] else None
        status_changes = [(parse_time(c["at"]), c["to"]) for c in conf["status_changes"]]
        row = recorded["conferences"].get((account, conf["conference_id"]))
        chain = recorded["transitions"].get(row.id, []) if row is not None else []
        figures.conferences += row is not None
        _compare_sequence(figures, f"{label} status",
                          merged_runs(status_changes, gone_at, window),
                          [t.to_status for t in chain], flags=False)
        if [t.seq for t in chain] != list(range(1, len(chain) + 1)):
            figures.problems.append(f"{label}: transition seqs {[t.seq for t in chain]}")
        for previous, transition in itertools.pairwise(chain):
            if transition.from_status != previous.to_status:
                figures.problems.append(f"{label}: chain broken at seq {transition.seq}")
        if row is not None and row.status == "completed":
            _check_completion(figures, label, conf, row, chain)
        for member in conf["members"]:
            mrow = recorded["members"].get((row.id, member["member_id"])) if row else None
            events = recorded["events"].get(mrow.id, []) if mrow is not None else []
            if [e.seq for e in events] != list(range(1, len(events) + 1)):
                figures.problems.append(f"{label} member {member['member_id']}: event seqs")
            got = member_sequences(events)
            truth_changes = truth_member_changes(conf, member["member_id"])
            presence = merged_runs(truth_changes["present"], gone_at, window)
            seen = mrow is not None or any(
                value and overlap >= SIGNIFICANT for value, overlap in presence)
            for key in ("present", "muted", "on_hold"):
                _compare_sequence(figures, f"{label} member {member['member_id']} {key}",
                                  merged_runs(truth_changes[key], gone_at, window),
                                  got[key],
                                  flags=key != "present", required=seen)
    return figures


def _check_completion(figures: Figures, label: str, conf: dict[str, Any], row: Any,
                      chain: Sequence[Any]) -> None:
    """Completion time, end reason and duration are the provider's."""
    expected_at = parse_time(conf["completed_at"]) if conf["completed_at"] else None
    if row.completed_at != expected_at:
        figures.problems.append(f"{label}: completed_at {row.completed_at} != {expected_at}")
    if row.end_reason != conf["end_reason"]:
        figures.problems.append(f"{label}: end_reason {row.end_reason} != {conf['end_reason']}")
    last = chain[-1] if chain else None
    if last is None or last.to_status != "completed" or last.end_reason != conf["end_reason"]:
        figures.problems.append(f"{label}: completed transition without end reason "
                                f"{conf['end_reason']!r}")
    if row.completed_at is not None and row.created_at is not None and (
            abs(row.duration_seconds - (row.completed_at - row.created_at).total_seconds())
            > 1e-3):
        figures.problems.append(f"{label}: duration {row.duration_seconds}")


def endings_and_changes(truth: dict[str, Any]) -> tuple[set[str], set[str]]:
    """The end causes and member event kinds present in a truth document."""
    endings = {c["end_cause"] for c in truth["conferences"] if c["end_cause"]}
    kinds = {e["kind"] for c in truth["conferences"] for e in c["member_events"]}
    return endings, kinds


@contextmanager
def appended_log(path: Path) -> Iterator[IO[bytes]]:
    """A binary log file the poller processes append to."""
    with path.open("ab") as log:
        yield log


# --- database outages ---------------------------------------------------------------------------

class TcpProxy:
    """A TCP forwarder to a database server that the test can cut off, like a server stopped.

    ``cut()`` drops every open connection and refuses new ones (accepted and closed at once);
    ``restore()`` lets connections through again. Used in front of the shared PostgreSQL
    server, which itself is never touched.
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._cut = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self.refused = 0
        self._thread = threading.Thread(target=self._accept, name="db-proxy", daemon=True)

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._closed.set()
        self._thread.join(timeout=5)
        self._listener.close()
        self._drop_all()

    def cut(self) -> None:
        """The server is gone: drop every connection, refuse new ones."""
        self._cut.set()
        self._drop_all()

    def restore(self) -> None:
        """The server is back."""
        self._cut.clear()

    def _drop_all(self) -> None:
        with self._lock:
            sockets, self._open = self._open, set()
        for sock in sockets:
            _drop(sock)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._cut.is_set():
                self.refused += 1
                _drop(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _drop(client)
                continue
            client.settimeout(None)
            server.settimeout(None)
            with self._lock:
                self._open.update((client, server))
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with self._lock:
                    self._open.discard(sock)
                _drop(sock)


def _drop(sock: socket.socket) -> None:
    """Shut a socket down both ways (waking a thread blocked on it) and close it."""
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


SQLITE_LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], timeout=60, isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
conn.execute("ROLLBACK")
"""


@contextmanager
def sqlite_locked(path: Path) -> Iterator[None]:
    """Another process holds ``BEGIN EXCLUSIVE`` on the SQLite file for the block."""
    locker = subprocess.Popen([sys.executable, "-c", SQLITE_LOCKER, str(path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout is not None
        assert locker.stdin is not None
        assert locker.stdout.readline().strip() == "locked"
        yield
    finally:
        if locker.stdin is not None:
            locker.stdin.close()
        assert locker.wait(timeout=STARTUP_SECONDS) == 0
        if locker.stdout is not None:
            locker.stdout.close()
