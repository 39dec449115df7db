"""Engines set up for a long-running daemon, and the store's error boundary.

``make_engine(url)`` is the one place an engine is built:

* **SQLite** runs in WAL mode (readers never block the writer), with a ``busy_timeout`` so a
  second connection waits for the lock instead of failing, ``foreign_keys=ON`` and
  ``synchronous=NORMAL`` (durable across application crashes, cheap fsyncs). Following the
  SQLAlchemy documentation ("Enabling Non-Legacy SQLite Transactional Modes"), the sqlite3
  driver's own transaction handling is switched off and SQLAlchemy emits ``BEGIN IMMEDIATE``
  itself, so a write transaction takes the write lock up front: two writers queue on the busy
  timeout instead of deadlocking on a read-lock upgrade. A read-only connection may ask for a
  plain deferred ``BEGIN`` with ``conn.execution_options(sqlite_begin="DEFERRED")``. Each
  connection keeps at most ``SQLITE_CACHED_STATEMENTS`` prepared statements: a statement
  with an ``IN`` list is another SQL text for every list length, and the driver's default of
  128 each of them per connection held 30 MB at 10,000 targets.
* **PostgreSQL** goes through psycopg 3 with ``pool_pre_ping`` so a restarted server costs one
  failed ping, not a failed poll batch. Unless the URL sets them, libpq's ``connect_timeout``
  (``POSTGRES_CONNECT_TIMEOUT_SECONDS``), TCP keepalives and a TCP user timeout
  (``POSTGRES_KEEPALIVES``) are set, so a server that vanishes without closing its
  connections (a network partition, a black-holed port) fails the statement or the
  connection attempt within about a minute instead of hanging the tick for minutes or hours.

``store_errors()`` translates the driver's "cannot reach / cannot write" errors into
:class:`poller.errors.StoreDown` once, at the store boundary, and
``insert_ignoring_duplicates()`` is ``INSERT … ON CONFLICT DO NOTHING`` in either dialect.

:class:`FileIdentity` notices a SQLite file deleted or replaced under a running poller: SQLite
goes on writing to the open (now unlinked) file, so nothing else would. Once an engine has
opened its SQLite file, its later connections open it ``mode=rw``: a file deleted meanwhile
fails them (the store is down) instead of being created anew, empty, at that path (which would
also make the deletion look like a replacement).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event, exc, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.pool import ConnectionPoolEntry

from poller.errors import StoreDown, StoreUnavailable

SQLITE_BUSY_TIMEOUT_MS = 10_000
"""How long a SQLite connection waits for another's write lock before giving up."""

SQLITE_CACHED_STATEMENTS = 16
"""Prepared statements each SQLite connection keeps (the sqlite3 driver's default: 128)."""

POSTGRES_INSERT_PAGE_ROWS = 64
"""Rows per multi-row ``INSERT`` on PostgreSQL (SQLAlchemy's ``insertmanyvalues_page_size``,
1,000 by default): psycopg splits each statement's text in Python, and one INSERT of a batch
of new conferences took 8 MB to do it (memray), a peak the allocator then kept."""

SQLITE_BEGIN_OPTION = "sqlite_begin"
"""Execution option naming the SQLite ``BEGIN`` flavour (default ``IMMEDIATE``)."""

_SQLITE_BEGIN_MODES = frozenset({"DEFERRED", "IMMEDIATE", "EXCLUSIVE"})

POSTGRES_CONNECT_TIMEOUT_SECONDS = 10
"""libpq ``connect_timeout`` unless the URL names one."""

POSTGRES_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
                       "keepalives_count": 3, "tcp_user_timeout": 60_000}
"""libpq TCP settings unless the URL names them: an idle dead peer is noticed after about
30 + 3 × 10 seconds of silence (keepalives), and data sent that stays unacknowledged for 60 s
(a peer gone while a statement was on its way: keepalives do not probe then, and the kernel
would retransmit for about 15 minutes) drops the connection (``tcp_user_timeout``, in ms)."""


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """Which file a SQLite engine opened (device and inode), to notice it being swapped."""

    path: Path
    device: int
    inode: int

    @classmethod
    def of(cls, engine: Engine) -> FileIdentity | None:
        """The identity of ``engine``'s SQLite file now; ``None`` for other databases."""
        database = engine.url.database
        if engine.dialect.name != "sqlite" or database in (None, "", ":memory:"):
            return None
        path = Path(database)
        try:
            stat = path.stat()
        except OSError:
            return None
        return cls(path, stat.st_dev, stat.st_ino)

    def problem(self) -> str | None:
        """Why the file is no longer the one opened (deleted, replaced), or ``None``."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return f"the SQLite file {self.path} was deleted while poller used it"
        except OSError as error:
            return f"the SQLite file {self.path} cannot be checked: {error}"
        if (stat.st_dev, stat.st_ino) != (self.device, self.inode):
            return f"the SQLite file {self.path} was replaced by another file while poller used it"
        return None


def normalise_url(url: str) -> str:
    """The URL with PostgreSQL pinned to psycopg 3 (``postgresql://`` means psycopg2 otherwise)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, *, sqlite_foreign_keys: bool = True, **kwargs: Any) -> Engine:
    """An engine for ``url`` configured for the daemon (see the module docstring).

    ``sqlite_foreign_keys=False`` is for migrations only: Alembic's batch mode recreates
    tables, which must not cascade deletes into their children. Extra keyword arguments go to
    :func:`sqlalchemy.create_engine`.
    """
    url = normalise_url(url)
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        connect_args = {"cached_statements": SQLITE_CACHED_STATEMENTS,
                        **(kwargs.pop("connect_args", None) or {})}
        engine = create_engine(url, connect_args=connect_args, **kwargs)
        _configure_sqlite(engine, foreign_keys=sqlite_foreign_keys)
        return engine
    if backend == "postgresql":
        kwargs.setdefault("pool_pre_ping", True)
        kwargs.setdefault("insertmanyvalues_page_size", POSTGRES_INSERT_PAGE_ROWS)
        given = make_url(url).query
        connect_args = dict(kwargs.pop("connect_args", None) or {})
        defaults = {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_SECONDS, **POSTGRES_KEEPALIVES}
        for name, value in defaults.items():
            if name not in given:
                connect_args.setdefault(name, value)
        return create_engine(url, connect_args=connect_args, **kwargs)
    raise StoreUnavailable(f"unsupported database {backend!r}: use sqlite or postgresql")


def _configure_sqlite(engine: Engine, *, foreign_keys: bool) -> None:
    """Install the pragmas, the ``BEGIN IMMEDIATE`` recipe and, for a file, ``mode=rw`` once it
    was opened, on a SQLite engine."""
    is_file = engine.url.database not in (None, "", ":memory:")
    opened = False

    @event.listens_for(engine, "do_connect")
    def _on_do_connect(_dialect: Any, _record: ConnectionPoolEntry, cargs: list[Any],
                       cparams: dict[str, Any]) -> None:
        if opened and is_file and not cparams.get("uri"):
            cargs[0] = Path(cargs[0]).absolute().as_uri() + "?mode=rw"
            cparams["uri"] = True

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
        nonlocal opened
        opened = True
        # Stop the sqlite3 driver from emitting BEGIN itself; ``_on_begin`` does it instead.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            if is_file:
                cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = str(conn.get_execution_options().get(SQLITE_BEGIN_OPTION, "IMMEDIATE")).upper()
        if mode not in _SQLITE_BEGIN_MODES:
            raise ValueError(f"{SQLITE_BEGIN_OPTION} must be one of {sorted(_SQLITE_BEGIN_MODES)}")
        conn.exec_driver_sql(f"BEGIN {mode}")


def insert_ignoring_duplicates(conn: Connection, table: Table, unique: tuple[str, ...]) -> Any:
    """``INSERT … ON CONFLICT (unique) DO NOTHING`` for the connection's dialect."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=list(unique))
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=list(unique))
    return insert(table)


def is_unavailable(error: BaseException) -> bool:
    """True for errors meaning the database cannot be reached or written right now."""
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, exc.OperationalError | exc.InterfaceError)


@contextmanager
def store_errors(action: str) -> Iterator[None]:
    """Translate unreachable/unwritable database errors raised inside into ``StoreDown``.

    Programming errors (bad SQL, constraint violations that should never happen) propagate
    unchanged: hiding a bug behind "database unavailable" would send operators the wrong way.
    """
    try:
        yield
    except exc.DBAPIError as error:
        if is_unavailable(error):
            raise StoreDown(f"{action}: {_short(error)}") from error
        raise
    except exc.SQLAlchemyError as error:
        if isinstance(error, exc.TimeoutError | exc.DisconnectionError):
            raise StoreDown(f"{action}: {error}") from error
        raise


def _short(error: exc.DBAPIError) -> str:
    """The driver's own message, first line only (no SQL, no parameters, no secrets)."""
    original = error.orig if error.orig is not None else error
    message = str(original).strip()
    return message.splitlines()[0] if message else type(original).__name__


@contextmanager
def read_only(engine: Engine) -> Iterator[Connection]:
    """A connection inside a read-only transaction: a deferred ``BEGIN`` on SQLite (never the
    write lock a daemon may need; WAL lets it read meanwhile), ``READ ONLY, REPEATABLE READ`` on
    PostgreSQL (every query of the transaction sees one snapshot)."""
    options: Mapping[str, Any]
    if engine.dialect.name == "sqlite":
        options = {SQLITE_BEGIN_OPTION: "DEFERRED"}
    else:
        options = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
    with engine.connect() as conn:
        conn.execution_options(**options)
        with conn.begin():
            yield conn


def refuse_missing_sqlite_file(url: str, other: str = "or name another with --database-url"
                               ) -> None:
    """Refuse (``StoreUnavailable``) a SQLite URL naming a file that does not exist (connecting
    would create it); ``other`` ends the message (how else to name a database)."""
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return
    if "uri" not in parsed.query and not Path(database).exists():
        raise StoreUnavailable(
            f"no database at {database}: create it with `poller db upgrade`, {other}"
        )
