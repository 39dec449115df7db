"""Helpers for running several ``poller run`` processes on one PostgreSQL database.

:class:`FleetDaemon` is one ``poller run`` subprocess with its own identity and stderr;
:func:`write_fleet_config` writes the config they share (one per identity); :class:`Watch`
reads the shared database the way an operator would (no access to the processes' memory).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import IO, Any

import waiting
from sqlalchemy import Engine, create_engine, text
from test_run import _poller_command, _toml_value

STARTUP_SECONDS = 60.0
"""Bound on a process start (imports, registration, sync) on a loaded machine."""


def write_fleet_config(path: Path, database_url: str, accounts: list[dict[str, Any]], *,
                       identity: str, interval: float, lease: float, heartbeat: float,
                       polling: Mapping[str, Any] | None = None) -> Path:
    """A config.toml for one daemon of the fleet: ``[daemon]`` with a short lease, polling
    ``accounts`` every ``interval`` seconds, into the PostgreSQL ``database_url``."""
    settings = {"interval_seconds": interval, "idle_interval_seconds": interval,
                "completion_grace_seconds": 1, "backoff_base_seconds": 1,
                "backoff_max_seconds": 2, "shutdown_grace_seconds": 5,
                **(polling or {})}
    # The identity as application_name tells its connections apart in pg_stat_activity.
    url = f"{database_url}{'&' if '?' in database_url else '?'}application_name={identity}"
    lines = ["[database]", f"url = {json.dumps(url)}", "", "[polling]",
             *(f"{key} = {_toml_value(value)}" for key, value in settings.items()), "",
             "[daemon]", f"identity = {json.dumps(identity)}", f"lease_seconds = {lease}",
             f"heartbeat_seconds = {heartbeat}", "",
             "[spool]", f"path = {json.dumps(str(path.parent / f'spool-{identity}'))}", ""]
    for account in accounts:
        lines.append("[[accounts]]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in account.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


class FleetDaemon:
    """One ``poller run`` process (stderr kept in a temporary file)."""

    def __init__(self, identity: str, config: Path, env: Mapping[str, str]) -> None:
        self.identity = identity
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        self.process = subprocess.Popen(
            [*_poller_command(), "--config", str(config), "run"], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=self._stderr,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"})

    def stderr(self) -> str:
        """Everything it logged so far."""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, then its exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill_holding_leases(self, watch: Watch, deadline_seconds: float = 60.0
                            ) -> dict[int, int]:
        """SIGKILL it while it holds leases. It runs freely until the database shows leases
        of it; then it is frozen (SIGSTOP) and, once none of its statements is still running
        in the database (a COMMIT sent just before the freeze would release leases after we
        looked), killed if it still holds leases, else let go on. The leased targets'
        ``poll_count`` at the kill."""
        deadline = time.monotonic() + deadline_seconds
        while True:
            assert time.monotonic() < deadline, "the daemon never held a lease"
            if not watch.leased_by(self.identity):
                time.sleep(0.005)
                continue
            self.process.send_signal(signal.SIGSTOP)
            wait_for("its statements to finish", lambda: not watch.scalar(
                "select count(*) from pg_stat_activity where application_name = :who "
                "and state = 'active'", who=self.identity), seconds=10, every=0.01)
            held = watch.leased_by(self.identity)
            if held:
                self.process.send_signal(signal.SIGKILL)
                self.process.wait(timeout=30)
                return held
            self.process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)
        self._stderr.close()


class Watch:
    """Read-only queries on the fleet's database."""

    def __init__(self, database_url: str) -> None:
        self.engine: Engine = create_engine(database_url)

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(sql), params).all())

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def leased_by(self, identity: str) -> dict[int, int]:
        """Targets ``identity`` holds a lease on, with their ``poll_count``."""
        return {pk: n for pk, n in self.rows(
            "select id, poll_count from poll_target where lease_owner = :who", who=identity)}

    def poll_counts(self) -> dict[int, int]:
        return {pk: n for pk, n in self.rows("select id, poll_count from poll_target")}

    def live_daemons(self) -> list[str]:
        return [r[0] for r in self.rows(
            "select identity from poller_daemon where stopped_at is null and "
            "heartbeat_at > now() - make_interval(secs => lease_seconds) order by identity")]

    def max_overdue_seconds(self) -> float:
        """How late the most overdue active target is now (0 when none is late)."""
        value = self.scalar(
            "select coalesce(max(extract(epoch from now() - next_poll_at)), 0) "
            "from poll_target where state = 'active'")
        return max(0.0, float(value))

    def close(self) -> None:
        self.engine.dispose()


wait_for = partial(waiting.wait_for, seconds=STARTUP_SECONDS)
