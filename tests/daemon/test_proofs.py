"""Proofs that no history is lost: the real CLI in lockstep with the simulator (``lockstep.py``).

Each test plays a seeded scenario with every kind of ending and member change, drives the real
``poller`` (``once`` per step, or one ``run`` process stopped with SIGTERM), and compares the
database with the simulator's ground truth exactly: no misses, no duplicates, nothing
fabricated, unbroken chains, exit code 0. Each prints one line of figures (``-s``) that also
appears in the pytest terminal summary. The quick variants run by default; the long ones are
``slow`` (``./dev test -m slow tests/daemon/test_proofs.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from lockstep import (
    Figures,
    PollerRun,
    ServedSimulator,
    Stepper,
    appended_log,
    compact_scenario,
    compare_with_truth,
    endings_and_changes,
    reader,
    run_once,
    steps_to_the_end,
    write_config,
)

from poller.simulator import FaultConfig

SEED = 41
"""A seed whose compact world holds every ending (checked by ``assert_lively``)."""


@dataclass
class Proof:
    """What a proof run produced."""

    figures: Figures
    log: str


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
                   crowded: float = 0.0,
                   during: Callable[[int, Stepper, list[PollerRun]], None] | None = None,
                   **polling: object) -> Proof:
    """One ``poller run`` (restarted when ``during`` kills it) stepped through the scenario."""
    log_path = tmp_path / "poller.log"
    config = tmp_path / "config.toml"
    with ServedSimulator(seed=seed, scenario=compact_scenario(conferences, crowded=crowded),
                         faults=faults) as served, appended_log(log_path) as log:
        write_config(config, daemon_url or database_url, served, **polling)
        engine = reader(database_url)
        stepper = Stepper(served, engine)
        total = steps if steps is not None else steps_to_the_end(served.sim)
        daemons = [PollerRun(config, served.environ(), log)]
        try:
            stepper.first()
            for index in range(total):
                stepper.step(lambda i=index: during(i, stepper, daemons) if during else None)
                assert daemons[-1].alive(), log_path.read_text()[-5000:]
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
    if steps is None:
        assert_lively(truth, figures)
    return Proof(figures, log_path.read_text())


# --- no faults ----------------------------------------------------------------------------------

def prove_with_once(tmp_path: Path, label: str, *, steps: int | None = None,
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
    """Eight steps of ``poller once``: the history so far equals the truth so far."""
    figures = prove_with_once(tmp_path, "no faults, once x9, SQLite", steps=8,
                              record_property=record_property)
    assert figures.truth_changes >= 15, figures.line()


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
