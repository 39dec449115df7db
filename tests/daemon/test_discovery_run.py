"""``poller run`` as a real process with nothing but ``discover = true`` configured, against
``poller simulate`` over TCP: conferences appear and finish while it runs, and every one the
providers listed for longer than a discovery interval (plus a real second of slack) is recorded,
faithfully, conferences shorter than the interval included (the providers still list them after
they end)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine
from test_history_vs_truth import compare, parse_time
from test_run import Sim, _wait_for, running_daemon, serving_simulator, write_config

SPEED = 60
DISCOVERY_SECONDS = 4.0
"""Real seconds between discovery runs (four simulated minutes at 60x)."""
RUN_SECONDS = 18.0


@pytest.fixture(scope="module")
def discovery_sim() -> Iterator[Sim]:
    """A lively world at 60x: conferences of one to ten real seconds, listed five more."""
    with serving_simulator("--lively", "--speed", str(SPEED), "--conferences", "8",
                           "--seed", "24") as served:
        yield served


def sim_now(sim: Sim) -> datetime:
    now = httpx.get(f"{sim.url}/_sim/clock", timeout=10).json()["now"]
    return parse_time(now)


def overlap_seconds(conf: dict[str, Any], window: tuple[datetime, datetime]) -> float:
    """How long (simulated seconds) the provider listed the conference inside ``window``."""
    start = max(parse_time(conf["created_at"]), window[0])
    end = min(parse_time(conf["gone_at"]) if conf["gone_at"] else window[1], window[1])
    return (end - start).total_seconds()


def test_run_with_only_discovery_records_every_listed_conference(discovery_sim: Sim,
                                                                 tmp_path: Path) -> None:
    """No conference ID in the config: discovery finds them all, short ones included."""
    database, config = tmp_path / "discovered.db", tmp_path / "config.toml"
    accounts = []
    for account in discovery_sim.accounts:
        account = {k: v for k, v in account.items() if k != "conferences"}
        account["discover"] = True
        if account["provider"] == "telnyx":
            account["discover_regions"] = ["US", "Europe", "Australia", "Middle East"]
        accounts.append(account)
    write_config(config, database, accounts)
    config.write_text(config.read_text().replace(
        "[polling]\n", f"[polling]\ndiscovery_interval_seconds = {DISCOVERY_SECONDS}\n"))
    with running_daemon(discovery_sim, config, database) as daemon:
        def discovered() -> bool:
            assert daemon.alive(), daemon.stderr()
            return bool(daemon.query("select 1 from poll_target where source = 'discovered'"))

        def run_over() -> bool:
            assert daemon.alive(), daemon.stderr()
            return datetime.now(UTC) >= deadline

        _wait_for("the daemon's first discovery", discovered)
        started = sim_now(discovery_sim)
        deadline = datetime.now(UTC) + timedelta(seconds=RUN_SECONDS)
        _wait_for("the end of the run", run_over, seconds=RUN_SECONDS + 20)
        ended = sim_now(discovery_sim)
        daemon.process.send_signal(signal.SIGTERM)
        assert daemon.process.wait(timeout=30) == 0, daemon.stderr()
        logged = daemon.stderr()
        sources = {s for (s,) in daemon.query("select distinct source from poll_target")}
    assert sources == {"discovered"}
    assert "Traceback" not in logged
    truth = httpx.get(f"{discovery_sim.url}/_sim/truth", timeout=30).json()
    engine = create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as conn:
            recorded = {(a, c) for a, c in conn.exec_driver_sql(
                "select account, conference_id from conference")}
        now = datetime.now(UTC)
        counts = compare(engine, truth, (now, now), complete=False)
    finally:
        engine.dispose()
    names = {"telnyx": "telnyx-sim", "bandwidth": "bandwidth-sim"}
    interval_sim = DISCOVERY_SECONDS * SPEED
    listed = [c for c in truth["conferences"]
              if overlap_seconds(c, (started, ended)) >= interval_sim + SPEED]
    missing = [c["conference_id"] for c in listed
               if (names[c["provider"]], c["conference_id"]) not in recorded]
    assert not missing, f"{len(missing)} of {len(listed)} listed conferences not recorded"
    assert len(listed) >= 8
    short_ids = {c["conference_id"] for c in listed if c["completed_at"] and (
        parse_time(c["completed_at"]) - parse_time(c["created_at"])).total_seconds()
        < interval_sim}
    assert short_ids, "the world holds conferences shorter than the discovery interval"
    assert counts["conferences"] >= len(listed)
    print(f"\ndiscovery completeness (poller run): {len(listed) - len(missing)}/{len(listed)} "
          f"listed conferences recorded, {len(short_ids)} shorter than the discovery interval")
