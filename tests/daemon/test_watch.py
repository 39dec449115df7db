"""``poller watch`` as a real command: adding, listing and removing targets, on its own and
beside a running ``poller run`` (which polls what is added at its next tick, no reload), and
the plain SQL of ``docs/discovery.md`` doing the same."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_run import (
    Sim,
    _poller_command,
    _wait_for,
    running_daemon,
    serving_simulator,
    write_config,
)

DOCS = Path(__file__).parent.parent.parent / "docs" / "discovery.md"


def poller(config: Path, *args: str, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_poller_command(), "--config", str(config), *args],
                          capture_output=True, text=True, timeout=120, check=False,
                          env=env)


def documented_insert() -> str:
    """The SQLite ``INSERT`` that ``docs/discovery.md`` gives apps."""
    text = DOCS.read_text()
    block = text.split("<!-- watch-insert-sqlite -->", 1)[1]
    match = re.search(r"```sql\n(.*?)```", block, re.DOTALL)
    assert match is not None
    return match.group(1)


def rows(database: Path) -> dict[str, dict[str, Any]]:
    with sqlite3.connect(database, timeout=30) as conn:
        conn.row_factory = sqlite3.Row
        return {r["conference_id"]: dict(r) for r in conn.execute("select * from poll_target")}


@pytest.fixture
def offline(tmp_path: Path) -> tuple[Path, Path]:
    """A config with one account of each provider (nothing to reach) and its database."""
    database, config = tmp_path / "watch.db", tmp_path / "config.toml"
    write_config(config, database, [
        {"name": "tx", "provider": "telnyx", "api_key_env": "TX_KEY",
         "base_url": "http://127.0.0.1:9/v2", "conferences": ["from-config"]},
        {"name": "bw", "provider": "bandwidth", "account_id": "9900000",
         "username_env": "BW_USER", "password_env": "BW_PASSWORD",
         "base_url": "http://127.0.0.1:9/api/v2"},
    ])
    return config, database


def test_add_list_remove(offline: tuple[Path, Path]) -> None:
    """Added targets are active ``cli`` rows due now; removing retires them ``removed``;
    adding again reactivates; the list shows what is there."""
    config, database = offline
    before = datetime.now(UTC)
    added = poller(config, "watch", "add", "telnyx", "tx", "conf-1", "--region", "Europe")
    assert added.returncode == 0, added.stderr
    assert "watching tx conf-1" in added.stdout
    assert poller(config, "watch", "add", "bandwidth", "bw", "conf-2").returncode == 0
    again = poller(config, "watch", "add", "telnyx", "tx", "conf-1")
    assert again.returncode == 0
    assert "already watching" in again.stdout
    stored = rows(database)
    assert set(stored) == {"conf-1", "conf-2"}
    assert stored["conf-1"]["source"] == "cli"
    assert stored["conf-1"]["state"] == "active"
    assert stored["conf-1"]["region"] == "Europe"
    assert stored["conf-2"]["region"] is None
    due = datetime.fromisoformat(stored["conf-1"]["next_poll_at"]).replace(tzinfo=UTC)
    assert before <= due <= datetime.now(UTC)

    listed = poller(config, "watch", "list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    assert [(t["account"], t["conference_id"], t["source"]) for t in json.loads(
        listed.stdout)] == [("bw", "conf-2", "cli"), ("tx", "conf-1", "cli")]
    table = poller(config, "watch", "list", "--account", "tx")
    assert "conf-1" in table.stdout
    assert "conf-2" not in table.stdout

    removed = poller(config, "watch", "remove", "tx", "conf-1")
    assert removed.returncode == 0, removed.stderr
    assert rows(database)["conf-1"]["state"] == "retired"
    assert rows(database)["conf-1"]["retired_reason"] == "removed"
    assert json.loads(poller(config, "watch", "list", "--format", "json").stdout)[0][
        "conference_id"] == "conf-2"
    assert len(json.loads(poller(config, "watch", "list", "--all", "--format",
                                 "json").stdout)) == 2
    back = poller(config, "watch", "add", "telnyx", "tx", "conf-1")
    assert "again" in back.stdout
    assert rows(database)["conf-1"]["state"] == "active"


@pytest.mark.parametrize(("args", "code", "message"), [
    (("add", "telnyx", "nope", "c"), 2, "account 'nope' is not in the config"),
    (("add", "bandwidth", "tx", "c"), 2, "is a telnyx account"),
    (("add", "bandwidth", "bw", "c", "--region", "Europe"), 2, "only for Telnyx"),
    (("add", "telnyx", "tx", "c", "--region", "Mars"), 2, "Mars"),
    (("add", "telnyx", "tx", ".."), 2, "dot segment"),
    (("add", "fax", "tx", "c"), 2, "fax"),
])
def test_bad_arguments_are_refused(offline: tuple[Path, Path], args: tuple[str, ...],
                                   code: int, message: str) -> None:
    """Unknown accounts, providers that do not match, bad regions and IDs: exit 2 naming the
    problem; removing what is not there: exit 1."""
    config, database = offline
    result = poller(config, "watch", *args)
    assert result.returncode == code, result.stdout + result.stderr
    assert message in result.stderr
    assert not database.exists() or not rows(database)


def test_list_and_remove_refuse_a_missing_sqlite_file(offline: tuple[Path, Path]) -> None:
    """``watch list`` / ``watch remove`` never create the database (like ``report``): a missing
    SQLite file is exit 1 naming it; once it exists they work on it."""
    config, database = offline
    for args in (("list",), ("remove", "tx", "never-added")):
        result = poller(config, "watch", *args)
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"no database at {database}" in result.stderr
        assert "poller db upgrade" in result.stderr
        assert not database.exists()
    assert poller(config, "db", "upgrade").returncode == 0
    listed = poller(config, "watch", "list")
    assert listed.returncode == 0, listed.stderr
    assert "no targets" in listed.stdout
    result = poller(config, "watch", "remove", "tx", "never-added")
    assert result.returncode == 1
    assert "not a poll target" in result.stderr


def test_config_targets_are_not_removed_by_watch(offline: tuple[Path, Path]) -> None:
    """``watch remove`` of a target the config lists is refused (a sync would undo it)."""
    config, database = offline
    assert poller(config, "db", "upgrade").returncode == 0
    with sqlite3.connect(database, timeout=30) as conn:
        conn.execute("insert into poll_target (provider, account, conference_id, source, state,"
                     " next_poll_at, created_at) values ('telnyx', 'tx', 'from-config', "
                     "'config', 'active', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)")
    result = poller(config, "watch", "remove", "tx", "from-config")
    assert result.returncode == 1
    assert "listed in the config file" in result.stderr
    assert rows(database)["from-config"]["state"] == "active"


# --- beside a running daemon --------------------------------------------------------------------

@pytest.fixture(scope="module")
def slow_sim() -> Iterator[Sim]:
    """A simulator at 10x: conferences live long enough in real time to be added by hand."""
    with serving_simulator("--lively", "--speed", "10", "--conferences", "6",
                           "--seed", "3") as served:
        yield served


def _alive_now(sim: Sim, provider: str, count: int) -> list[dict[str, Any]]:
    """``count`` conferences of ``provider`` that exist now and longest from expiry."""
    truth = httpx.get(f"{sim.url}/_sim/truth", params={"until": "all"}, timeout=30).json()
    now = datetime.fromisoformat(httpx.get(f"{sim.url}/_sim/clock", timeout=10).json()[
        "now"].replace("Z", "+00:00"))

    def gone(conf: dict[str, Any]) -> datetime:
        return datetime.fromisoformat(conf["gone_at"].replace("Z", "+00:00"))

    alive = [c for c in truth["conferences"] if c["provider"] == provider
             and datetime.fromisoformat(c["created_at"].replace("Z", "+00:00")) <= now
             and gone(c) > now]
    alive.sort(key=gone, reverse=True)
    assert len(alive) >= count, f"not {count} {provider} conferences alive now"
    return alive[:count]


def test_running_daemon_polls_watched_targets_without_reload(slow_sim: Sim, tmp_path: Path
                                                             ) -> None:
    """With no conference in the config, ``watch add`` and the documented ``INSERT`` make a
    running ``poller run`` record those conferences; SIGHUP keeps them; ``remove`` stops."""
    database, config = tmp_path / "run.db", tmp_path / "config.toml"
    accounts = [{**a, "conferences": []} for a in slow_sim.accounts]
    write_config(config, database, accounts)
    telnyx_account, bandwidth_account = (a["name"] for a in accounts)
    with running_daemon(slow_sim, config, database) as daemon:
        _wait_for("the daemon's schema", lambda: daemon.alive() and bool(
            daemon.query("select count(*) from poll_target")))
        telnyx = _alive_now(slow_sim, "telnyx", 1)[0]
        region = [] if telnyx["region"] == "US" else ["--region", telnyx["region"]]
        added = poller(config, "watch", "add", "telnyx", telnyx_account,
                       telnyx["conference_id"], *region)
        assert added.returncode == 0, added.stderr
        bandwidth = _alive_now(slow_sim, "bandwidth", 1)[0]
        insert = documented_insert().replace("bandwidth-main", bandwidth_account).replace(
            "conf-fe23a767-a75a5b77-20c5-4cca-b581-cbbf0776eca9", bandwidth["conference_id"])
        with sqlite3.connect(database, timeout=30) as conn:
            conn.execute(insert)

        def recorded() -> set[str]:
            assert daemon.alive(), daemon.stderr()
            return {cid for (cid,) in daemon.query("select conference_id from conference")}

        wanted = {telnyx["conference_id"], bandwidth["conference_id"]}
        _wait_for("both watched conferences recorded", lambda: wanted <= recorded())

        daemon.process.send_signal(signal.SIGHUP)
        _wait_for("the reload", lambda: "configuration reloaded" in daemon.stderr())
        _wait_for("targets synced after the reload",
                  lambda: daemon.stderr().count("targets synced") >= 2)
        after = {r.conference_id: r for r in daemon.query(
            "select conference_id, source, state, retired_reason from poll_target")}
        for cid in wanted:
            assert after[cid].source == "cli"
            assert after[cid].retired_reason != "removed"

        removed = poller(config, "watch", "remove", telnyx_account, telnyx["conference_id"])
        assert removed.returncode == 0, removed.stderr
        if after[telnyx["conference_id"]].state == "active":
            assert "stopped watching" in removed.stdout
            state = daemon.query("select state, retired_reason from poll_target where "
                                 "conference_id = :cid", cid=telnyx["conference_id"])[0]
            assert tuple(state) == ("retired", "removed")
        daemon.process.send_signal(signal.SIGTERM)
        assert daemon.process.wait(timeout=30) == 0, daemon.stderr()
