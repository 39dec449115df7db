"""``poller demo`` as a real process: simulator, daemon, progress and summary in one command.

The run is short and the simulator fast (60x), so a few real seconds cover minutes of lively
conferences; the checks are ones a loaded machine cannot upset (something of each kind was
recorded for both providers, the output has its parts, the exit is clean).
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from poller.commands.demo import BANDWIDTH_ACCOUNT, TELNYX_ACCOUNT

RUN_BOUND_SECONDS = 120.0
"""Bound on the whole run (8 s of polling, plus start-up and shutdown on a loaded machine)."""


def _poller_command() -> list[str]:
    script = Path(sys.executable).with_name("poller")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from poller.cli import main; main()"]


def _demo(tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_poller_command(), "demo", "--database", str(tmp_path / "demo.db"), *options],
        cwd=tmp_path, capture_output=True, text=True, timeout=RUN_BOUND_SECONDS,
        env={**os.environ, "PYTHONUNBUFFERED": "1"}, check=False)


def _count(db: Path, sql: str, account: str) -> int:
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return int(conn.execute(sql, (account,)).fetchone()[0])
    finally:
        conn.close()


def test_demo_records_both_providers_and_prints_the_summary(tmp_path: Path) -> None:
    done = _demo(tmp_path, "--duration", "8", "--speed", "60", "--progress-every", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    db = tmp_path / "demo.db"
    assert f"recording into {db}" in out
    assert any(line.startswith("[") and "conferences" in line and "poll errors" in line
               for line in out.splitlines()), out
    assert "[done] conferences" in out
    assert "Summary (poller report summary)" in out
    assert "conferences  total" in out
    assert "conference_summary" in out
    assert "poller report conferences" in out
    # It ends with the page of its busiest conference, which draws what the database holds.
    last = out.strip().splitlines()[-1]
    assert last.startswith("The busiest conference, drawn (poller report timeline): "), out
    page = (tmp_path / last.rsplit(": ", 1)[1]).read_text()
    conference_id = page.split("<title>", 1)[1].split("</title>", 1)[0].split(" · ")[2]
    conference_id = conference_id.split(" ")[0]
    members = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True).execute(
        "SELECT m.member_id FROM member m JOIN conference c ON c.id = m.conference_pk "
        "WHERE c.conference_id = ?", (conference_id,)).fetchall()
    assert members
    assert sorted(re.findall(r'<g class="lane" data-member="([^"]+)"', page)) == sorted(
        member for (member,) in members)
    for account in (TELNYX_ACCOUNT, BANDWIDTH_ACCOUNT):
        conferences = _count(db, "SELECT count(*) FROM conference WHERE account = ?", account)
        transitions = _count(db, "SELECT count(*) FROM status_transition t JOIN conference c "
                                 "ON c.id = t.conference_pk WHERE c.account = ?", account)
        members = _count(db, "SELECT count(*) FROM member m JOIN conference c "
                             "ON c.id = m.conference_pk WHERE c.account = ?", account)
        assert conferences > 0, (account, out)
        assert transitions > 0, (account, out)
        assert members > 0, (account, out)


def test_demo_stops_gracefully_on_sigint_and_starts_afresh(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    first = _demo(tmp_path, "--duration", "2", "--speed", "60", "--fault-rate", "0")
    assert first.returncode == 0, first.stdout + first.stderr
    # A second run replaces the previous demo's database (the conference IDs repeat).
    process = subprocess.Popen(
        [*_poller_command(), "demo", "--database", str(db), "--duration", "600"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + RUN_BOUND_SECONDS
        seen = ""
        while "Ctrl-C stops earlier" not in seen:
            assert time.monotonic() < deadline, seen
            line = process.stdout.readline()
            assert line, seen
            seen += line
        time.sleep(1.0)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=RUN_BOUND_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    assert process.returncode == 0, seen + out + err
    assert "Summary (poller report summary)" in out


def test_demo_leaves_a_foreign_database_alone(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE precious (x INTEGER)")
    conn.commit()
    conn.close()
    done = _demo(tmp_path, "--duration", "1")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "left alone" in done.stderr
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT count(*) FROM precious").fetchone() == (0,)
    finally:
        conn.close()
