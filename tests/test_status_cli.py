"""``poller status`` as a subprocess, over daemons registered in real time."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path

from databases import copy_sqlite
from factories import telnyx_target
from sqlalchemy import update
from test_cli_subprocess import poller

from poller.model import utc_now
from poller.store import migrate
from poller.store.database import make_engine
from poller.store.fleet import heartbeat, mark_stopped, register
from poller.store.schema import PollTarget
from poller.store.targets import claim_due, sync_targets


def write_config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[database]\nurl = "{url}"\n\n[polling]\ninterval_seconds = 60\n')
    return path


def populate(url: str) -> None:
    """Daemons a (live, 2 leases), b (live), old (stopped); 6 targets, 2 overdue by 600 s,
    1 due 5 s ago (not overdue at 60 s), 3 due later."""
    engine = make_engine(url)
    try:
        now = utc_now()
        sync_targets(engine, [telnyx_target(f"c{i}") for i in range(6)], now)
        for identity, pid in (("a", 1), ("b", 2), ("old", 3)):
            register(engine, identity, host="host-1", pid=pid, now=now, lease_seconds=60)
        mark_stopped(engine, "old", now=now, polls_total=40, polls_last_minute=4)
        with engine.begin() as conn:
            for names, due in ((["c0", "c1"], -600), (["c2"], -5), (["c3", "c4", "c5"], 60)):
                conn.execute(update(PollTarget).where(PollTarget.conference_id.in_(names))
                             .values(next_poll_at=now + timedelta(seconds=due)))
        claimed = claim_due(engine, now, 2, "a", 60)
        assert [t.key.conference_id for t in claimed] == ["c0", "c1"]
        heartbeat(engine, "a", now=utc_now(), lease_seconds=60, polls_total=120,
                  polls_last_minute=12)
    finally:
        engine.dispose()


def test_status_shows_live_daemons_and_overdue_targets(sqlite_template: Path,
                                                       tmp_path: Path) -> None:
    """On SQLite (the same queries run on PostgreSQL in ``tests/daemon/test_fleet.py``, and
    this command over three live daemons in ``test_fleet_postgres.py``)."""
    database_url = copy_sqlite(sqlite_template, tmp_path)
    populate(database_url)
    config = str(write_config(tmp_path, database_url))

    result = poller("--config", config, "status", "--format", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert [(d["identity"], d["state"], d["targets_held"], d["polls_last_minute"],
             d["polls_total"]) for d in document["daemons"]] == [
        ("a", "live", 2, 12, 120), ("b", "live", 0, 0, 0)]
    assert document["targets"] == {"active": 6, "overdue": 2, "overdue_after_seconds": 60}
    assert [t["conference_id"] for t in document["overdue_targets"]] == ["c0", "c1"]
    assert all(599 < t["late_seconds"] < 700 and t["lease_owner"] == "a"
               for t in document["overdue_targets"])
    assert document["daemons"][0]["heartbeat_at"].endswith("Z")

    table = poller("--config", config, "status")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["identity", "host", "pid", "state"]
    assert [line.split()[0] for line in lines[2:4]] == ["a", "b"]
    assert "6 active targets, 2 overdue by more than 60 s" in table.stdout

    everyone = poller("--config", config, "status", "--all", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(everyone.stdout)))
    assert [(r["identity"], r["state"], r["polls_total"]) for r in rows] == [
        ("a", "live", "120"), ("b", "live", "0"), ("old", "stopped", "40")]

    overdue = poller("--config", config, "status", "--overdue", "--overdue-after", "1")
    assert overdue.returncode == 0, overdue.stderr
    assert [line.split()[2] for line in overdue.stdout.splitlines()[2:]] == ["c0", "c1", "c2"]


def test_status_on_a_database_not_migrated_says_what_to_do(empty_database_url: str,
                                                           tmp_path: Path) -> None:
    migrate.upgrade(empty_database_url, "0002_reports")
    result = poller("--config", str(write_config(tmp_path, empty_database_url)), "status")
    assert result.returncode == 1
    assert (f"at schema 0002_reports, not the newest ({migrate.head()}): run `poller db upgrade`"
            in result.stderr)


def test_status_on_a_missing_sqlite_file_exits_1(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'none.db'}"
    result = poller("--config", str(write_config(tmp_path, url)), "status")
    assert result.returncode == 1
    assert "does not exist" in result.stderr
    assert not (tmp_path / "none.db").exists()
