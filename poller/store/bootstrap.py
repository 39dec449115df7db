"""Opening the database for a command: the SQLite lock, the schema check, stale leases.

Every command that uses the database opens it here, one of four ways:

* :func:`open_database` (``poller once``, ``run``, ``demo``): :func:`open_migrated`, and, when
  the process holds the SQLite lock, the leases of a poller that died are dropped
  (:func:`prepare`, which ``poller run`` calls again later when the database is down at start);
* :func:`open_migrated` (``poller watch add``): a SQLite file is created and migrated when
  ``[database] auto_migrate`` allows it (on by default for SQLite); any other database must
  already be at head (``poller db upgrade``), or ``StoreUnavailable`` says what to run;
* :func:`open_existing` (``poller watch list`` / ``remove``): the same, but a SQLite file that
  does not exist is refused instead of created;
* :func:`open_at_head` (``poller status``): an engine without a pool on a database that must
  exist and be at head; nothing is migrated.

:class:`SqliteLock` keeps a second poller off a SQLite file (DESIGN §8); ``poller once`` and
``poller run`` hold it while they work (:func:`exclusive_sqlite`).
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, pool
from sqlalchemy.engine import make_url

from poller.config import DatabaseSettings
from poller.errors import AlreadyRunning, StoreUnavailable
from poller.store import migrate
from poller.store.database import make_engine, refuse_missing_sqlite_file
from poller.store.targets import release_all

log = logging.getLogger(__name__)


class SqliteLock:
    """An exclusive ``flock`` on ``<database>.lock``, held for the life of the process.

    Why a sidecar file and ``flock``: SQLite's own locks last one transaction, not a process
    life, and ``PRAGMA locking_mode=EXCLUSIVE`` would also shut out readers such as
    ``poller report``. The kernel drops a ``flock`` when its process dies, however it dies, so a
    crash never leaves a stale lock behind (unlike a PID file). The file is never deleted:
    unlinking it would let a newcomer lock a fresh file while an old holder still runs.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @classmethod
    def for_database(cls, settings: DatabaseSettings) -> SqliteLock | None:
        """The lock of a SQLite file database, or ``None`` (PostgreSQL, in-memory SQLite)."""
        url = make_url(settings.url)
        if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
            return None
        return cls(Path(f"{url.database}.lock"))

    def acquire(self) -> None:
        """Take the lock, or raise :class:`AlreadyRunning` at once if another process has it."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise StoreUnavailable(f"cannot open lock file {self.path}: {error}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyRunning(
                f"another poller (`poller run` or `poller once`) is already using this SQLite "
                f"database (it holds {self.path}); only one poller may run on a SQLite file. "
                f"Stop the other one, or use PostgreSQL to run several.") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (also dropped by the kernel when the process ends)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


@contextmanager
def exclusive_sqlite(settings: DatabaseSettings) -> Iterator[SqliteLock | None]:
    """Hold the SQLite lock of ``settings`` (if SQLite) for the block (``AlreadyRunning`` if
    another poller holds it); ``None`` for databases several pollers may share."""
    lock = SqliteLock.for_database(settings)
    if lock is None:
        yield None
        return
    lock.acquire()
    try:
        yield lock
    finally:
        lock.release()


def open_database(settings: DatabaseSettings, *, exclusive: bool = False) -> Engine:
    """An engine on the configured database, made ready by :func:`prepare`."""
    engine = make_engine(settings.url)
    try:
        prepare(settings, engine, exclusive=exclusive)
    except BaseException:
        engine.dispose()
        raise
    return engine


def prepare(settings: DatabaseSettings, engine: Engine, *, exclusive: bool = False) -> None:
    """Make the database behind ``engine`` ready for a poller: migrated if allowed, refused if
    not at head (:func:`check_schema`); and, when this process holds the SQLite lock
    (``exclusive``), the leases of a poller that died are dropped so its targets are polled
    again at once. ``StoreDown`` when the database does not answer (``poller run`` then
    starts spooling, and calls this again until it does)."""
    check_schema(settings)
    if exclusive:
        released = release_all(engine)
        if released:
            log.warning("released %d leases left by a poller that stopped without releasing "
                        "them (killed?); those targets are polled again now", released)


def open_migrated(settings: DatabaseSettings) -> Engine:
    """An engine on the configured database once :func:`check_schema` passes."""
    check_schema(settings)
    return make_engine(settings.url)


def check_schema(settings: DatabaseSettings) -> None:
    """Migrate the configured database if allowed; refuse it if it is not at head then (a
    database a newer poller migrated: ``SchemaAhead``, naming both revisions)."""
    revision = migrate.require_known(settings.url)
    if settings.auto_migrate:
        migrate.upgrade(settings.url)
    elif revision != migrate.head():
        revision = revision or "empty"
        raise StoreUnavailable(
            f"database {settings.display_url()} is at schema {revision}, not the newest "
            f"({migrate.head()}): run `poller db upgrade` first (or set "
            f"[database] auto_migrate = true)")


def open_existing(settings: DatabaseSettings) -> Engine:
    """:func:`open_migrated`, refusing a SQLite file that does not exist (not created)."""
    refuse_missing_sqlite_file(settings.url, "or point [database] url at the daemon's database")
    return open_migrated(settings)


def open_at_head(url: str) -> Engine:
    """An engine without a pool on the database at ``url``, which must exist and be at the
    newest schema (``StoreUnavailable`` saying what to do otherwise)."""
    parsed = make_url(url)
    if (parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:")
            and not Path(parsed.database).exists()):
        raise StoreUnavailable(f"SQLite database {parsed.database} does not exist (no "
                               "daemon has run on it yet)")
    revision = migrate.require_known(url)
    if revision != migrate.head():
        raise StoreUnavailable(
            f"the database is at schema {revision or 'empty'}, not the newest "
            f"({migrate.head()}): run `poller db upgrade` first")
    return make_engine(url, poolclass=pool.NullPool)
