"""The migrations: they build and remove the schema on both databases and match the models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from databases import execute
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from poller.errors import StoreUnavailable
from poller.store import migrate
from poller.store.database import make_engine

REPO = Path(__file__).resolve().parents[2]
TABLES = {"poll_target", "conference", "conference_snapshot", "status_transition", "member",
          "member_event", "poll_error"}


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_empty_head_base_head(empty_database_url: str) -> None:
    """An empty database goes to head, back to base, and to head again."""
    url = empty_database_url
    assert migrate.current(url) is None
    migrate.upgrade(url)
    assert migrate.is_at_head(url)
    assert _tables(url) >= TABLES
    migrate.downgrade(url, "base")
    assert migrate.current(url) is None
    assert _tables(url) == set()
    migrate.upgrade(url)
    assert migrate.current(url) == migrate.head()
    assert _tables(url) >= TABLES


def test_models_match_migrations(database_url: str) -> None:
    """`alembic check` finds no difference between schema.py and the migrated database."""
    migrate.check(database_url)


def test_head_is_alembics_head() -> None:
    """``migrate.HEAD`` (what the daemon compares with, without loading Alembic) is the newest
    revision of the tree: a new migration must move it."""
    assert migrate.script_directory().get_current_head() == migrate.HEAD


def test_the_daemon_does_not_load_alembic_on_a_database_at_head(tmp_path: Path) -> None:
    """Reading the revision and checking it is known load no Alembic (10 MB saved)."""
    url = f"sqlite:///{tmp_path / 'head.db'}"
    migrate.upgrade(url)
    code = ("import sys; from poller.store import migrate; "
            f"assert migrate.require_known({url!r}) == migrate.HEAD; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_several_revisions_are_refused(tmp_path: Path) -> None:
    """A branched ``alembic_version`` (two rows) is a clear error, as Alembic's own."""
    url = f"sqlite:///{tmp_path / 'branched.db'}"
    migrate.upgrade(url)
    execute(url, "INSERT INTO alembic_version VALUES ('other')")
    with pytest.raises(StoreUnavailable, match="several schema revisions"):
        migrate.current(url)


def test_first_revision_is_0001_initial() -> None:
    """The first migration has the revision id later ones build on."""
    revisions = list(migrate.script_directory().walk_revisions())
    assert revisions[-1].revision == "0001_initial"
    assert revisions[-1].down_revision is None


def test_one_current_snapshot_per_conference(engine: Engine) -> None:
    """The partial unique index refuses a second current snapshot, but allows closed ones."""
    insert_snapshot = text(
        "INSERT INTO conference_snapshot (conference_pk, valid_from, valid_to, content_hash,"
        " status, member_count, state) VALUES (1, :vf, :vt, 'h', 'init', 0, '{}')"
    )
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO conference (id, provider, account, conference_id, status,"
            " first_observed_at, last_changed_at) VALUES (1, 'telnyx', 'a', 'c', 'init',"
            " '2025-01-01 00:00:00', '2025-01-01 00:00:00')"))
        conn.execute(insert_snapshot, {"vf": "2025-01-01 00:00:00", "vt": "2025-01-01 00:01:00"})
        conn.execute(insert_snapshot, {"vf": "2025-01-01 00:01:00", "vt": None})
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert_snapshot, {"vf": "2025-01-01 00:02:00", "vt": None})


@pytest.mark.postgres
def test_json_columns_are_jsonb_on_postgresql(postgres_url: str) -> None:
    """PostgreSQL stores the JSON documents as JSONB."""
    engine = make_engine(postgres_url)
    with engine.connect() as conn:
        jsonb = conn.execute(text(
            "SELECT table_name || '.' || column_name FROM information_schema.columns"
            " WHERE data_type = 'jsonb' AND table_schema = 'public'")).scalars().all()
    assert set(jsonb) >= {"conference_snapshot.state", "conference_snapshot.raw",
                          "member.coaching", "member_event.detail"}
    engine.dispose()


def test_alembic_command_line_from_repo_top(empty_database_url: str) -> None:
    """`alembic -x db_url=… upgrade head` works from the repository's top level."""
    subprocess.run(
        [sys.executable, "-m", "alembic", "-x", f"db_url={empty_database_url}", "upgrade", "head"],
        cwd=REPO, check=True, capture_output=True,
    )
    assert migrate.is_at_head(empty_database_url)
