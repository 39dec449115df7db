"""make_engine: SQLite set up for a daemon, PostgreSQL via psycopg, errors at the boundary."""

from __future__ import annotations

import shutil
import socket
import sqlite3
import time
from pathlib import Path

import pytest
from factories import telnyx_observation
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import IntegrityError

from poller.errors import StoreDown, StoreUnavailable
from poller.store import migrate
from poller.store.database import make_engine, normalise_url
from poller.store.recorder import Recorder, is_retryable


def test_sqlite_pragmas(tmp_path: Path) -> None:
    """SQLite runs in WAL with a busy timeout, foreign keys on and synchronous NORMAL."""
    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    with engine.connect() as conn:
        pragmas = {name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                   for name in ("journal_mode", "busy_timeout", "foreign_keys", "synchronous")}
    engine.dispose()
    assert pragmas == {"journal_mode": "wal", "busy_timeout": 10_000, "foreign_keys": 1,
                       "synchronous": 1}


def test_sqlite_transactions_take_the_write_lock_up_front(tmp_path: Path) -> None:
    """A transaction that has only read still holds the write lock (BEGIN IMMEDIATE)."""
    path = tmp_path / "p.db"
    engine = make_engine(f"sqlite:///{path}")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        with engine.begin() as conn:
            conn.execute(text("SELECT 1"))
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
    finally:
        other.close()
        engine.dispose()


def test_sqlite_readers_may_defer(tmp_path: Path) -> None:
    """A reader can ask for a deferred BEGIN and leave the write lock free."""
    path = tmp_path / "p.db"
    engine = make_engine(f"sqlite:///{path}")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        with engine.connect() as conn:
            conn.execution_options(sqlite_begin="DEFERRED")
            with conn.begin():
                conn.execute(text("SELECT 1"))
                other.execute("BEGIN IMMEDIATE")
                other.execute("ROLLBACK")
    finally:
        other.close()
        engine.dispose()


def test_postgresql_urls_use_psycopg3() -> None:
    """A bare postgresql:// URL is pinned to the psycopg 3 driver."""
    assert normalise_url("postgresql://u@h/db").startswith("postgresql+psycopg://")


def test_unreachable_sqlite_raises_store_unavailable(tmp_path: Path) -> None:
    """A database that cannot be opened is StoreUnavailable, from the recorder and migrate."""
    url = f"sqlite:///{tmp_path / 'missing-dir' / 'p.db'}"
    engine = make_engine(url)
    with pytest.raises(StoreUnavailable):
        Recorder(engine).record([telnyx_observation()])
    engine.dispose()
    with pytest.raises(StoreUnavailable):
        migrate.current(url)


def test_a_deleted_sqlite_file_is_not_created_again_by_a_new_connection(
        sqlite_template: Path, tmp_path: Path) -> None:
    """Once an engine opened its SQLite file, a connection it opens after the file was deleted
    fails (the store is down) rather than creating an empty database at that path; the file
    of a new engine is still created as usual (and a path needing URI quoting works)."""
    path = tmp_path / "odd #name.db"
    shutil.copyfile(sqlite_template, path)
    engine = make_engine(f"sqlite:///{path}")
    try:
        Recorder(engine).record([telnyx_observation()])
        with engine.connect() as held:  # the pool's one connection, busy while the file goes
            path.unlink()
            with pytest.raises(StoreDown, match="unable to open database file"):
                Recorder(engine).record([telnyx_observation()])  # needs a new connection
            held.exec_driver_sql("SELECT 1")
        assert not path.exists()
    finally:
        engine.dispose()
    fresh = make_engine(f"sqlite:///{path}")
    try:
        with fresh.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        assert path.exists()
    finally:
        fresh.dispose()


def test_unreachable_postgresql_raises_store_unavailable() -> None:
    """A PostgreSQL server that refuses connections is StoreUnavailable."""
    engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
    with pytest.raises(StoreUnavailable):
        Recorder(engine).record([telnyx_observation()])
    engine.dispose()


class Connecting(Exception):
    """Raised by the test's ``do_connect`` listener with what the driver would be given."""


def _connect_params(engine: Engine) -> dict[str, object]:
    @event.listens_for(engine, "do_connect")
    def _stop(_dialect: object, _record: object, _args: object,
              params: dict[str, object]) -> None:
        raise Connecting(params)

    with pytest.raises(Connecting) as caught:
        engine.connect()
    params: dict[str, object] = caught.value.args[0]
    return params


def test_postgresql_connections_time_out_and_keep_alive() -> None:
    """PostgreSQL connections get a connect timeout and TCP keepalives unless the URL sets
    them: a vanished server fails statements instead of hanging the daemon."""
    engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    params = _connect_params(engine)
    assert params["connect_timeout"] == 10
    assert params["keepalives_idle"] == 30
    assert params["tcp_user_timeout"] == 60_000
    engine.dispose()
    engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=3")
    params = _connect_params(engine)
    assert str(params["connect_timeout"]) == "3", "the URL's own value stands"
    assert params["keepalives"] == 1
    engine.dispose()


def test_black_holed_postgresql_fails_within_the_connect_timeout() -> None:
    """A port that accepts TCP but never answers (a hung server) is StoreUnavailable after
    the connect timeout, not a hang."""
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(8)  # never accepted: the handshake completes, nothing ever answers
        port = hole.getsockname()[1]
        engine = make_engine(f"postgresql+psycopg://nobody@127.0.0.1:{port}/none"
                             "?connect_timeout=1")
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            Recorder(engine).record([telnyx_observation()])
        engine.dispose()
    assert time.monotonic() - started < 10


def test_unique_violations_are_retryable(engine: Engine) -> None:
    """A real unique violation from the database is classed as a lost race (retry)."""
    insert = text("INSERT INTO poll_target (provider, account, conference_id, next_poll_at,"
                  " created_at) VALUES ('telnyx', 'a', 'c', :t, :t)")
    with engine.begin() as conn:
        conn.execute(insert, {"t": "2025-01-01 00:00:00"})
    with pytest.raises(IntegrityError) as caught, engine.begin() as conn:
        conn.execute(insert, {"t": "2025-01-01 00:00:00"})
    assert is_retryable(caught.value)
