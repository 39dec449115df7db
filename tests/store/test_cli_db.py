"""`poller db …` through the real CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from poller.cli import cli
from poller.store import migrate


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A SQLite database that does not exist yet."""
    return f"sqlite:///{tmp_path / 'cli.db'}"


def test_upgrade_current_downgrade(url: str) -> None:
    """upgrade builds the schema, current reports head, downgrade base empties it."""
    runner = CliRunner()
    env = {"POLLER_DATABASE_URL": url}
    result = runner.invoke(cli, ["db", "current"], env=env)
    assert result.exit_code == 1
    assert "not at head" in result.output
    result = runner.invoke(cli, ["db", "upgrade"], env=env)
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["db", "current"], env=env)
    assert result.output.strip() == f"{migrate.head()} (head)"
    result = runner.invoke(cli, ["db", "downgrade", "base"], env=env)
    assert result.exit_code == 0, result.output
    assert migrate.current(url) is None


def test_database_url_option_and_revision(url: str) -> None:
    """--database-url picks the database and --revision the target."""
    result = CliRunner().invoke(cli, ["db", "upgrade", "--revision", "0001_initial",
                                      "--database-url", url])
    assert result.exit_code == 0, result.output
    assert migrate.current(url) == "0001_initial"
