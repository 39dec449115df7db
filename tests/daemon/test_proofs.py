"""Proofs that no history is lost: the real CLI in lockstep with the simulator (``lockstep.py``).

Each test plays a seeded scenario with every kind of ending and member change, drives the real
``poller`` (``once`` per step, or one ``run`` process stopped with SIGTERM), and compares the
database with the simulator's ground truth exactly: no misses, no duplicates, nothing
fabricated, unbroken chains, exit code 0. Each prints one line of figures (``-s``) that also
appears in the pytest terminal summary. The quick variants run by default; the long ones are
``slow`` (``./dev test -m slow tests/daemon/test_proofs.py``).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lockstep import (
    Figures,
    PollerRun,
    ServedSimulator,
    Stepper,
    TcpProxy,
    appended_log,
    compact_scenario,
    compare_with_truth,
    endings_and_changes,
    reader,
    run_once,
    sqlite_locked,
    steps_to_the_end,
    wait_for,
    write_config,
)
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from poller.simulator import FaultConfig, FaultKind
from poller.store.schema import MemberEvent, StatusTransition

SEED = 41
"""A seed whose compact world holds every ending (checked by ``assert_lively``)."""
QUICK_START = 120.0
"""Quick variants start this far into the scenario, when most conferences are running."""


@dataclass
class Proof:
    """What a proof run produced."""

    figures: Figures
    log: str
    faults: dict[str, int]
    """Faults the simulator injected, by kind."""


def assert_lively(truth: dict[str, object], figures: Figures) -> None:
    """The scenario really had every kind of ending and member change, and some history."""
    endings, kinds = endings_and_changes(truth)  # type: ignore[arg-type]
    assert {"all_left", "host_left", "ended_via_api", "time_exceeded"} <= endings, endings
    assert {"joined", "left", "muted", "unmuted", "held", "unheld"} <= kinds, kinds
    assert figures.truth_changes >= 40, figures.line()


def assert_exact(figures: Figures, proof_log: str) -> None:
    """The recorded history equals the truth for every lasting change."""
    assert not figures.problems, "\n".join(figures.problems[:20])
    assert figures.misses == 0
    assert figures.duplicates == 0
    assert figures.fabricated == 0
    assert figures.recorded == figures.truth_changes
    assert "Traceback" not in proof_log, proof_log[-5000:]


def report(figures: Figures, record_property: Callable[[str, object], None]) -> None:
    line = figures.line()
    print(f"\nPROOF {line}")
    record_property("proof", line)


def prove_with_run(tmp_path: Path, database_url: str, label: str, *, conferences: int,
                   steps: int | None = None, seed: int = SEED,
                   faults: FaultConfig | None = None, daemon_url: str | None = None,
                   crowded: float = 0.0, start_at: float = 0.0,
                   during: Callable[[int, Stepper, Callable[[], None]], None] | None = None,
                   **polling: object) -> Proof:
    """One ``poller run`` stepped through the scenario, SIGTERM at the end.

    ``during(step, stepper, restart)`` runs right after each step's move (an outage, a kill:
    calling ``restart()`` SIGKILLs the daemon and starts a new one)."""
    log_path = tmp_path / "poller.log"
    config = tmp_path / "config.toml"
    with ServedSimulator(seed=seed, scenario=compact_scenario(conferences, crowded=crowded),
                         faults=faults) as served, appended_log(log_path) as log:
        write_config(config, daemon_url or database_url, served, **polling)
        engine = reader(database_url)
        stepper = Stepper(served, engine)
        total = steps if steps is not None else steps_to_the_end(served.sim)
        daemons = [PollerRun(config, served.environ(), log)]

        def restart() -> None:
            daemons[-1].kill()
            daemons.append(PollerRun(config, served.environ(), log))
            stepper.restarts += 1

        try:
            served.advance(start_at)
            stepper.first()
            for index in range(total):
                stepper.step(lambda i=index: during(i, stepper, restart) if during else None)
                assert daemons[-1].alive(), log_path.read_text()[-5000:]
            # A daemon restarted at the last step may still be starting: SIGTERM it once it
            # runs (before Python installs handlers, SIGTERM's default action kills it).
            pid = daemons[-1].process.pid
            wait_for("the daemon to run", lambda: f"(pid {pid})" in log_path.read_text())
            code = daemons[-1].terminate()
        finally:
            for daemon in daemons:
                daemon.ensure_stopped()
        assert code == 0, log_path.read_text()[-5000:]
        truth = served.truth()
        stats = served.stats()
        figures = compare_with_truth(engine, truth, stepper.window(),
                                     Figures(label, steps=stepper.steps))
        engine.dispose()
    figures.requests = stats["requests"]
    figures.failed_requests = sum(stats["faults"].values())
    if faults is not None:
        figures.notes.append("injected " + ", ".join(
            f"{kind} {n}" for kind, n in stats["faults"].items() if n))
    if len(daemons) > 1:
        figures.notes.append(f"{len(daemons) - 1} SIGKILLs")
    if steps is None:
        assert_lively(truth, figures)
    return Proof(figures, log_path.read_text(), stats["faults"])


# --- no faults ----------------------------------------------------------------------------------

def prove_with_once(tmp_path: Path, label: str, *, steps: int | None = None,
                    start_at: float = 0.0,
                    record_property: Callable[[str, object], None]) -> Figures:
    """``poller once`` after every step, the config growing as conferences are created (as an
    operator would add them): every run exits 0."""
    database_url = f"sqlite:///{tmp_path / 'once.db'}"
    config = tmp_path / "config.toml"
    with ServedSimulator(seed=SEED, scenario=compact_scenario(4)) as served:
        engine = reader(database_url)
        stepper = Stepper(served, engine)
        listed: set[tuple[str, str]] = set()
        outputs: list[str] = []

        def once() -> None:
            listed.update(served.existing())
            write_config(config, database_url, served, only=listed)
            result = run_once(config, served.environ())
            assert result.returncode == 0, result.stdout + result.stderr
            outputs.append(result.stdout)

        served.advance(start_at)
        stepper.first(once)
        for _ in range(steps if steps is not None else steps_to_the_end(served.sim)):
            stepper.step(once)
        truth = served.truth()
        figures = compare_with_truth(engine, truth, stepper.window(),
                                     Figures(label, steps=stepper.steps))
        engine.dispose()
        stats = served.stats()
    figures.requests = stats["requests"]
    figures.failed_requests = sum(stats["faults"].values())
    report(figures, record_property)
    assert len(outputs) == stepper.steps + 1
    assert all(out.startswith("polled ") for out in outputs), outputs
    if steps is None:
        assert_lively(truth, figures)
    assert_exact(figures, "")
    return figures


def test_once_per_step_on_sqlite_matches_truth(
        tmp_path: Path, record_property: Callable[[str, object], None]) -> None:
    """Six runs of ``poller once`` (five steps, from the busy middle of the scenario): the
    history so far equals the truth so far."""
    figures = prove_with_once(tmp_path, "no faults, once x6, SQLite", steps=5,
                              start_at=QUICK_START,
                              record_property=record_property)
    assert figures.truth_changes >= 10, figures.line()


@pytest.mark.slow
def test_once_per_step_through_the_whole_scenario(
        tmp_path: Path, record_property: Callable[[str, object], None]) -> None:
    """``poller once`` after every step until every conference has ended."""
    prove_with_once(tmp_path, "no faults, once per step, SQLite",
                    record_property=record_property)


@pytest.mark.postgres
def test_run_on_postgresql_matches_truth(tmp_path: Path, postgres_url: str,
                                         record_property: Callable[[str, object], None]
                                         ) -> None:
    """One ``poller run`` on PostgreSQL through the whole scenario, stopped with SIGTERM."""
    proof = prove_with_run(tmp_path, postgres_url, "no faults, run, PostgreSQL", conferences=4)
    report(proof.figures, record_property)
    assert_exact(proof.figures, proof.log)


@pytest.mark.slow
def test_run_on_sqlite_matches_truth(tmp_path: Path,
                                     record_property: Callable[[str, object], None]) -> None:
    """One ``poller run`` on SQLite through the whole scenario, stopped with SIGTERM."""
    proof = prove_with_run(tmp_path, f"sqlite:///{tmp_path / 'run.db'}",
                           "no faults, run, SQLite", conferences=4)
    report(proof.figures, record_property)
    assert_exact(proof.figures, proof.log)


@pytest.mark.slow
def test_run_on_a_bigger_world_matches_truth(tmp_path: Path,
                                             record_property: Callable[[str, object], None]
                                             ) -> None:
    """Twelve conferences a provider, crowded Bandwidth ones included, on SQLite."""
    proof = prove_with_run(tmp_path, f"sqlite:///{tmp_path / 'run.db'}",
                           "no faults, run, SQLite, 24 conferences", conferences=12,
                           crowded=0.2)
    report(proof.figures, record_property)
    assert_exact(proof.figures, proof.log)


# --- faults -------------------------------------------------------------------------------------

FAULT_RATE = 0.2
FAULT_POLLING: dict[str, object] = {"read_timeout_seconds": 0.5, "interval_seconds": 1,
                                    "idle_interval_seconds": 1}
"""Timeouts shorter than the held answers; polls no more often than the 1 s retry floor, so
the requests (and 429 pauses) of polls that already succeeded do not crowd out the retries."""


def fault_mix(seed: int) -> FaultConfig:
    """A fifth of provider requests fail: 429, 500, 503, timeouts (an answer held past the read
    timeout), connection resets, non-JSON and truncated bodies, in equal shares."""
    return FaultConfig(rates={kind: FAULT_RATE / len(FaultKind) for kind in FaultKind},
                       seed=seed, slow_delay_seconds=1.0, retry_after_seconds=1)


def assert_faults_hit(proof: Proof, stats: dict[str, int]) -> None:
    """Every kind of fault was injected, and the poller met each kind it can tell apart.

    Resets are injected but not required in the log: the aiohttp transport (the default)
    resends an idempotent GET once when a reused keep-alive connection is reset, so a reset is
    logged only when the retry fails too; a reset under either transport is proven in
    tests/providers/test_transports.py."""
    figures = proof.figures
    assert figures.failed_requests >= 0.12 * figures.requests, figures.line()
    assert all(stats[kind.value] > 0 for kind in FaultKind), stats
    for logged in ("rate_limited", "server_error", "timeout", "bad_response"):
        assert f"poll failed ({logged}" in proof.log, logged


def test_faults_lose_and_duplicate_nothing(tmp_path: Path,
                                           record_property: Callable[[str, object], None]
                                           ) -> None:
    """20 % of requests failing (5 steps from the busy middle of the scenario): every lasting
    change is still recorded, once, and nothing else; the daemon never crashes and exits 0 on
    SIGTERM."""
    proof = prove_with_run(tmp_path, f"sqlite:///{tmp_path / 'faults.db'}",
                           "faults 20 %, run, SQLite", conferences=4, faults=fault_mix(7),
                           steps=5, start_at=QUICK_START, **FAULT_POLLING)
    report(proof.figures, record_property)
    assert_exact(proof.figures, proof.log)
    assert_faults_hit(proof, proof.faults)
    assert proof.figures.truth_changes >= 25, proof.figures.line()


@pytest.mark.slow
def test_faults_on_a_long_scenario(tmp_path: Path,
                                   record_property: Callable[[str, object], None]) -> None:
    """The same on a bigger world (24 conferences, crowded Bandwidth ones included)."""
    proof = prove_with_run(tmp_path, f"sqlite:///{tmp_path / 'faults.db'}",
                           "faults 20 %, run, SQLite, 24 conferences", conferences=12,
                           crowded=0.2, faults=fault_mix(8), **FAULT_POLLING)
    report(proof.figures, record_property)
    assert_exact(proof.figures, proof.log)
    assert_faults_hit(proof, proof.faults)


# --- crashes ------------------------------------------------------------------------------------

def killer(kills: int, steps: int, seed: int
           ) -> Callable[[int, Stepper, Callable[[], None]], None]:
    """SIGKILL the daemon ``kills`` times at seeded random moments: at random steps, a random
    0-0.8 s after the world moved (mid-claim, mid-poll, mid-commit, mid-start-up…)."""
    rng = random.Random(seed)
    at = set(rng.sample(range(steps), kills))

    def during(step: int, _stepper: Stepper, restart: Callable[[], None]) -> None:
        if step in at:
            time.sleep(rng.uniform(0.0, 0.8))  # the random moment of the kill
            restart()

    return during


def test_sigkill_loses_and_duplicates_nothing(tmp_path: Path,
                                              record_property: Callable[[str, object], None]
                                              ) -> None:
    """Five SIGKILLs in eight steps, each followed by a restart: every chain unbroken, nothing
    duplicated, the history equals the truth."""
    proof = prove_with_run(tmp_path, f"sqlite:///{tmp_path / 'crash.db'}",
                           "crash x5 (SIGKILL), run, SQLite", conferences=4, steps=8,
                           start_at=QUICK_START, during=killer(5, 8, seed=1))
    report(proof.figures, record_property)
    assert_exact(proof.figures, proof.log)
    assert proof.figures.notes == ["5 SIGKILLs"]
    assert proof.figures.truth_changes >= 30, proof.figures.line()


@pytest.mark.slow
def test_twenty_sigkills_through_the_whole_scenario(
        tmp_path: Path, record_property: Callable[[str, object], None]) -> None:
    """Twenty SIGKILLs and restarts over the whole scenario."""
    steps = 27
    proof = prove_with_run(tmp_path, f"sqlite:///{tmp_path / 'crash.db'}",
                           "crash x20 (SIGKILL), run, SQLite", conferences=4,
                           during=killer(20, steps, seed=2))
    report(proof.figures, record_property)
    assert_exact(proof.figures, proof.log)
    assert proof.figures.notes == ["20 SIGKILLs"]


# --- database outages ---------------------------------------------------------------------------

OUTAGE_STEP = 3
"""The outage starts right after this step's move."""


@dataclass
class Outage:
    """The database is away for ``seconds`` of real time while the world moves ``moves``
    intervals (``Stepper.moves_while_away``: the daemon keeps looking, into its spool); with
    ``kill``, the daemon is SIGKILLed half-way and a new one starts while it is still away.
    Then it is back, and the daemon must replay what it spooled."""

    seconds: float
    moves: int
    cut: Callable[[], None]
    restore: Callable[[], None]
    kill: bool = False
    notes: list[str] = field(default_factory=list)
    began: datetime | None = None
    ended: datetime | None = None

    def __call__(self, step: int, stepper: Stepper, restart: Callable[[], None]) -> None:
        if step != OUTAGE_STEP:
            return
        self.cut()
        self.began = datetime.now(UTC)
        try:
            changed = stepper.moves_while_away(self.moves, self.seconds,
                                               restart=restart if self.kill else None)
        finally:
            self.restore()
            self.ended = datetime.now(UTC)
        self.notes.append(f"outage {self.seconds:g} s ({self.moves} intervals, {changed} "
                          f"truth changes meanwhile{', SIGKILL and restart in it' * self.kill})")

    def observed_inside(self, database_url: str) -> int:
        """Transitions and member events observed while the database was away (recorded
        later, from the spool, with their own observation times)."""
        assert self.began is not None
        assert self.ended is not None
        engine = reader(database_url)
        try:
            with engine.connect() as conn:
                return sum(conn.execute(select(func.count()).select_from(table).where(
                    table.observed_at > self.began,
                    table.observed_at < self.ended)).scalar_one()
                    for table in (StatusTransition, MemberEvent))
        finally:
            engine.dispose()


def finish_outage(proof: Proof, outage: Outage, database_url: str) -> None:
    inside = outage.observed_inside(database_url)
    replayed = sum(int(n) for n in re.findall(r"the spool is replayed: (\d+) results",
                                             proof.log))
    proof.figures.notes += [*outage.notes, f"{inside} changes observed inside it",
                            f"{replayed} results replayed from the spool"]
    assert inside > 0, "what changed during the outage is recorded at its own time"
    assert replayed > 0, proof.log[-3000:]
    assert "store unavailable" in proof.log, proof.log[-3000:]


def prove_postgresql_outage(tmp_path: Path, postgres_url: str, seconds: float, moves: int,
                            steps: int, *, kill: bool = False) -> Proof:
    url = make_url(postgres_url)
    with TcpProxy((url.host or "127.0.0.1", url.port or 5432)) as proxy:
        daemon_url = url.set(host="127.0.0.1", port=proxy.port).render_as_string(
            hide_password=False)
        outage = Outage(seconds, moves, proxy.cut, proxy.restore, kill=kill)
        proof = prove_with_run(tmp_path, postgres_url,
                               f"PostgreSQL down {seconds:g} s, run", conferences=4,
                               steps=steps, start_at=QUICK_START, daemon_url=daemon_url,
                               during=outage)
        refused = proxy.refused
    finish_outage(proof, outage, postgres_url)
    assert refused > 0, "the daemon tried to reconnect during the outage"
    return proof


@pytest.mark.postgres
def test_postgresql_outage_with_a_sigkill_loses_nothing(
        tmp_path: Path, postgres_url: str, record_property: Callable[[str, object], None]
        ) -> None:
    """PostgreSQL unreachable for 3 s while the world moves two intervals, the daemon killed
    in the middle and started again while it is still away: every lasting change, those
    inside the outage too, is recorded once, at its own time, from the spool."""
    proof = prove_postgresql_outage(tmp_path, postgres_url, 3.0, 2, steps=6, kill=True)
    report(proof.figures, record_property)
    assert_exact(proof.figures, proof.log)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("kill", [False, True], ids=["", "sigkill"])
def test_postgresql_outage_of_60_seconds(
        tmp_path: Path, postgres_url: str, kill: bool,
        record_property: Callable[[str, object], None]) -> None:
    """60 s (a managed server's failover) while the world moves six intervals; with and
    without a SIGKILL and restart in the middle; then on to the end of the scenario."""
    proof = prove_postgresql_outage(tmp_path, postgres_url, 60.0, 6, steps=24, kill=kill)
    report(proof.figures, record_property)
    assert_exact(proof.figures, proof.log)


def prove_sqlite_lock(tmp_path: Path, seconds: float, moves: int, steps: int, *,
                      kill: bool = False) -> Proof:
    database = tmp_path / "locked.db"
    with ExitStack() as stack:
        outage = Outage(seconds, moves, lambda: stack.enter_context(sqlite_locked(database)),
                        stack.close, kill=kill)
        proof = prove_with_run(tmp_path, f"sqlite:///{database}",
                               f"SQLite locked {seconds:g} s, run", conferences=4, steps=steps,
                               start_at=QUICK_START, during=outage)
    finish_outage(proof, outage, f"sqlite:///{database}")
    assert "database is locked" in proof.log
    return proof


def test_sqlite_lock_with_a_sigkill_loses_nothing(
        tmp_path: Path, record_property: Callable[[str, object], None]) -> None:
    """Another process holds BEGIN EXCLUSIVE on the SQLite file for 12 s (past the 10 s busy
    timeout: writes fail) while the world moves two intervals, the daemon killed in the middle
    and started again while the file is still locked."""
    proof = prove_sqlite_lock(tmp_path, 12.0, 2, steps=6, kill=True)
    report(proof.figures, record_property)
    assert_exact(proof.figures, proof.log)


@pytest.mark.slow
@pytest.mark.parametrize("kill", [False, True], ids=["", "sigkill"])
def test_sqlite_lock_of_60_seconds(tmp_path: Path, kill: bool,
                                   record_property: Callable[[str, object], None]) -> None:
    """60 s of lock, with and without a SIGKILL and restart in the middle."""
    proof = prove_sqlite_lock(tmp_path, 60.0, 6, steps=24, kill=kill)
    report(proof.figures, record_property)
    assert_exact(proof.figures, proof.log)
