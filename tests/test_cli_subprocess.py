"""The installed ``poller`` command, run as a subprocess the way a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from databases import execute
from sqlalchemy import create_engine, inspect

from poller.store import migrate

POLLER = str(Path(sys.executable).with_name("poller"))
TABLES = {"poll_target", "conference", "conference_snapshot", "status_transition", "member",
          "member_event", "poll_error"}
VIEWS = {"conference_summary", "member_session"}


def poller(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([POLLER, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, cwd=cwd, check=False)


def test_db_upgrade_creates_every_table_and_view(empty_database_url: str, tmp_path: Path
                                                 ) -> None:
    """POLLER_DATABASE_URL=… poller db upgrade builds every documented table and view."""
    before = poller("db", "current", env={"POLLER_DATABASE_URL": empty_database_url})
    assert before.returncode == 1, "db current must exit 1 below head"
    result = poller("db", "upgrade", env={"POLLER_DATABASE_URL": empty_database_url},
                    cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    engine = create_engine(empty_database_url)
    try:
        inspector = inspect(engine)
        assert set(inspector.get_table_names()) >= TABLES
        assert set(inspector.get_view_names()) >= VIEWS
    finally:
        engine.dispose()
    current = poller("db", "current", env={"POLLER_DATABASE_URL": empty_database_url})
    assert current.returncode == 0
    assert current.stdout.strip().endswith("(head)")


def test_bad_config_file_exits_2(tmp_path: Path) -> None:
    """A config file that is not TOML stops the command with exit code 2 and names the file."""
    config = tmp_path / "config.toml"
    config.write_text("[database\nurl = 3\n")
    env = {k: v for k, v in os.environ.items() if k != "POLLER_DATABASE_URL"}
    result = subprocess.run([POLLER, "--config", str(config), "db", "current"],
                            capture_output=True, text=True, timeout=60, env=env, check=False)
    assert result.returncode == 2
    assert "config.toml" in result.stderr


def test_help_on_every_command() -> None:
    """--help works on the group and every sub-command."""
    for args in ([], ["db"], ["db", "upgrade"], ["db", "current"], ["simulate"], ["prune"],
                 ["check-config"], ["report"], ["report", "summary"], ["status"]):
        result = poller(*args, "--help")
        assert result.returncode == 0, (args, result.stderr)
        assert "Usage:" in result.stdout


@pytest.mark.parametrize(("args", "env", "said"), [
    (["report", "conferences", "--since", "99999999d"], {}, "reaches back before the year 1"),
    (["report", "conferences", "--database-url", "notaurl"], {}, "is not a database URL"),
    (["db", "current", "--database-url", "notaurl"], {}, "is not a database URL"),
    (["status", "--database-url", "notaurl"], {}, "is not a database URL"),
    (["prune", "--poll-error-days", "nan"], {}, "is not a number of days"),
    (["prune", "--raw-payload-days", "inf"], {}, "--raw-payload-days"),
    (["db", "current"], {"POLLER_DATABASE_URL": "notaurl"}, "POLLER_DATABASE_URL is not a "
                                                             "database URL"),
])
def test_bad_arguments_exit_2_with_a_message(args: list[str], env: dict[str, str], said: str,
                                             tmp_path: Path) -> None:
    """A bad argument or database URL is a usage error: exit 2, a message naming it, never a
    traceback."""
    result = poller(*args, env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert said in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [["db", "upgrade"], ["db", "current"], ["once"], ["status"],
                                  ["watch", "list"]])
def test_a_schema_newer_than_this_poller_is_named_and_refused(args: list[str],
                                                              tmp_path: Path) -> None:
    """A database a newer poller migrated: one message naming both revisions, exit 2, no
    traceback, and nothing migrated."""
    url = f"sqlite:///{tmp_path / 'ahead.db'}"
    assert poller("db", "upgrade", env={"POLLER_DATABASE_URL": url}).returncode == 0
    execute(url, "UPDATE alembic_version SET version_num = '0099_future'")
    result = poller(*args, env={"POLLER_DATABASE_URL": url}, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "schema revision 0099_future, which this poller does not know" in result.stderr
    assert f"its newest is {migrate.head()}" in result.stderr
    assert "Traceback" not in result.stderr


def test_json_log_lines_carry_their_context_as_fields() -> None:
    """``JsonFormatter``: what a call passes as ``extra`` (the documented context fields)
    becomes fields of the line; other attributes do not; the message stays whole."""
    import json
    import logging

    from poller.daemon.logs import JsonFormatter

    record = logging.LogRecord("poller.polling.poller", logging.WARNING, __file__, 1,
                               "%s conference %s: poll failed", ("telnyx", "c-1"), None)
    for name, value in {"provider": "telnyx", "account": "tx", "conference_id": "c-1",
                        "kind": "timeout", "http_status": None, "duration_ms": 12.5,
                        "daemon": "poller-a", "unrelated": "x"}.items():
        setattr(record, name, value)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "telnyx conference c-1: poll failed"
    assert {k: line[k] for k in ("provider", "account", "conference_id", "kind",
                                 "duration_ms", "daemon")} == {
        "provider": "telnyx", "account": "tx", "conference_id": "c-1", "kind": "timeout",
        "duration_ms": 12.5, "daemon": "poller-a"}
    assert "http_status" not in line  # None: not known, left out
    assert "unrelated" not in line
