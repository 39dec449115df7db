"""The read-only queries behind ``poller report``.

Each report is a function ``(connection, ReportFilter) -> Report``: the column names and rows of
plain Python values (aware UTC ``datetime``, ``float`` seconds, ``int`` counts, ``bool`` flags,
``str``, ``None`` for "not known"). Formatting them is the CLI's business
(``poller.commands.report``).

The queries read the documented views (``conference_summary``, ``member_session``) and, where
no view fits, the tables (``status_transition`` joined to ``conference``, ``poll_error`` joined
to ``poll_target``). They are ``text()`` SQL with bound parameters, the same on SQLite and
PostgreSQL: moments are bound and read through ``UTCDateTime``, so ``--since`` compares in each
database's own representation (naive UTC text on SQLite, ``timestamptz`` on PostgreSQL).

What ``--since`` means per report (every row is kept from that moment on):

* ``conferences``: created at or after it (the first sighting when the provider gave no time);
* ``transitions``: observed at or after it;
* ``members``: stays that began at or after it;
* ``usage``: buckets (days or hours) from the one holding it on;
* ``summary``: each section counts exactly what the matching report would list, and poll
  errors that occurred at or after it.

:func:`run_report` runs a report in one read-only transaction: a deferred ``BEGIN`` on SQLite,
so a report never takes the write lock from a running daemon (WAL lets it read meanwhile), and
``READ ONLY, REPEATABLE READ`` on PostgreSQL, so the summary's queries all see one snapshot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Connection, Float, Integer, bindparam, inspect, pool, text
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.types import TypeEngine

from poller.errors import StoreUnavailable
from poller.model import require_utc
from poller.store.database import make_engine, read_only, refuse_missing_sqlite_file, store_errors
from poller.store.migrate import revision_on
from poller.store.schema import UTCDateTime

Value = str | int | float | bool | datetime | None
"""One cell of a report."""

NOT_REPORTED = "(not reported)"
"""The end reason shown for completed conferences without one (every Bandwidth conference)."""

REQUIRED_VIEWS = frozenset({"conference_summary", "member_session", "usage_daily", "usage_hourly"})
"""Views the reports read; missing means the schema predates ``0002_reports`` (or, for the
usage views, ``0006_usage``)."""


@dataclass(frozen=True, slots=True)
class ReportFilter:
    """Which rows a report keeps. ``None`` everywhere: everything."""

    since: datetime | None = None
    """Keep rows from this aware UTC moment on (what the moment applies to: see the module)."""
    provider: str | None = None
    account: str | None = None
    limit: int | None = None
    """At most this many rows (per breakdown in the summary); ``None``: all."""

    def __post_init__(self) -> None:
        require_utc(self.since, "since")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1 or None, got {self.limit}")


@dataclass(frozen=True, slots=True)
class Report:
    """A report's answer: column names, rows in order, and whether ``limit`` cut rows off."""

    columns: tuple[str, ...]
    rows: list[dict[str, Value]] = field(default_factory=list)
    truncated: bool = False


ReportQuery = Callable[[Connection, ReportFilter], Report]
"""A report: reads through an open connection, inside the caller's transaction."""


# --- Building queries ------------------------------------------------------------------------

_TIME = UTCDateTime()
_TYPES: dict[str, TypeEngine[Any]] = {
    # Result types the drivers do not give on their own (SQLite returns times as text and
    # flags as 0/1; PostgreSQL may return numeric for averages). A name absent from a query's
    # columns is simply unused.
    **{name: _TIME for name in (
        "created_at", "completed_at", "observed_at", "previous_observed_at",
        "provider_changed_at", "joined_at", "left_at")},
    **{name: Boolean() for name in ("gone", "present")},
    **{name: Float() for name in (
        "duration_seconds", "seconds_muted", "seconds_held", "avg_seconds", "max_seconds")},
    **{name: Float() for name in (
        "conference_minutes", "member_minutes", "median_duration_seconds",
        "p95_duration_seconds")},
    **{name: Integer() for name in (
        "count", "peak_member_count", "member_count", "conferences", "active_conferences",
        "peak_members")},
}


def _select(
    conn: Connection,
    sql: str,
    filters: ReportFilter,
    *,
    moment: str,
    provider: str = "provider",
    account: str = "account",
    group_by: str = "",
    order_by: str = "",
    extra_where: str = "",
    since_format: str | None = None,
) -> tuple[list[dict[str, Value]], bool]:
    """Rows of ``sql`` (a SELECT … FROM … ending before WHERE) with the filters applied.

    ``moment``, ``provider`` and ``account`` are the SQL expressions the filters compare with.
    Every SQL fragment is a constant of this module; user input is only ever bound. With
    ``since_format``, ``moment`` is a text bucket and ``filters.since`` is bound as the text of
    its own bucket (``strftime(since_format)``). Returns the rows and whether
    ``filters.limit`` cut any off.
    """
    conditions = [extra_where] if extra_where else []
    params: list[BindParameter[Any]] = []
    if filters.since is not None:
        conditions.append(f"{moment} >= :since")
        params.append(bindparam("since", filters.since.strftime(since_format))
                      if since_format else bindparam("since", filters.since, type_=_TIME))
    if filters.provider is not None:
        conditions.append(f"{provider} = :provider")
        params.append(bindparam("provider", filters.provider))
    if filters.account is not None:
        conditions.append(f"{account} = :account")
        params.append(bindparam("account", filters.account))
    if conditions:
        sql += "\nWHERE " + " AND ".join(conditions)
    if group_by:
        sql += f"\nGROUP BY {group_by}"
    if order_by:
        sql += f"\nORDER BY {order_by}"
    if filters.limit is not None:
        # One row more than asked tells whether the limit cut anything off.
        sql += "\nLIMIT :limit"
        params.append(bindparam("limit", filters.limit + 1, type_=Integer()))
    statement = text(sql).bindparams(*params).columns(**_TYPES)
    rows = [dict(row) for row in conn.execute(statement).mappings()]
    if filters.limit is not None and len(rows) > filters.limit:
        return rows[: filters.limit], True
    return rows, False


# --- The reports -----------------------------------------------------------------------------

CONFERENCE_COLUMNS = (
    "provider", "account", "conference_id", "name", "status", "created_at", "completed_at",
    "duration_seconds", "end_reason", "peak_member_count", "member_count", "gone",
)
_STARTED = "COALESCE(created_at, first_observed_at)"


def conferences(conn: Connection, filters: ReportFilter) -> Report:
    """One row per conference (``conference_summary``), newest first."""
    rows, truncated = _select(
        conn,
        f"SELECT {', '.join(CONFERENCE_COLUMNS)}\nFROM conference_summary",
        filters,
        moment=_STARTED,
        order_by=f"{_STARTED} DESC, provider, account, conference_id",
    )
    return Report(CONFERENCE_COLUMNS, rows, truncated)


TRANSITION_COLUMNS = (
    "observed_at", "provider", "account", "conference_id", "seq", "from_status", "to_status",
    "end_reason", "previous_observed_at", "provider_changed_at",
)


def transitions(conn: Connection, filters: ReportFilter) -> Report:
    """One row per status transition, newest first.

    The change happened in ``(previous_observed_at, observed_at]``; ``seq`` 1 is the first
    sighting, with ``from_status`` and ``previous_observed_at`` NULL.
    """
    rows, truncated = _select(
        conn,
        "SELECT t.observed_at, c.provider, c.account, c.conference_id, t.seq, t.from_status,"
        " t.to_status, t.end_reason, t.previous_observed_at, t.provider_changed_at\n"
        "FROM status_transition t JOIN conference c ON c.id = t.conference_pk",
        filters,
        moment="t.observed_at",
        provider="c.provider",
        account="c.account",
        order_by="t.observed_at DESC, c.provider, c.account, c.conference_id, t.seq DESC",
    )
    return Report(TRANSITION_COLUMNS, rows, truncated)


MEMBER_COLUMNS = (
    "provider", "account", "conference_id", "member_id", "stay", "joined_at", "joined_at_source",
    "left_at", "left_at_source", "duration_seconds", "present", "times_muted", "seconds_muted",
    "times_held", "seconds_held",
)
_JOINED = "COALESCE(joined_at, first_observed_at)"


def members(conn: Connection, filters: ReportFilter) -> Report:
    """One row per member stay (``member_session``), the latest to begin first."""
    rows, truncated = _select(
        conn,
        f"SELECT {', '.join(MEMBER_COLUMNS)}\nFROM member_session",
        filters,
        moment=_JOINED,
        order_by=f"{_JOINED} DESC, provider, account, conference_id, member_id, stay DESC",
    )
    return Report(MEMBER_COLUMNS, rows, truncated)


USAGE_BUCKETS = {"day": ("usage_daily", "%Y-%m-%d"), "hour": ("usage_hourly", "%Y-%m-%d %H:00")}
"""``--by`` → the view and the text of its buckets (``docs/schema.md``)."""
USAGE_COLUMNS = (
    "provider", "account", "conferences", "active_conferences", "conference_minutes",
    "member_minutes", "peak_members", "median_duration_seconds", "p95_duration_seconds",
)


def usage(by: str) -> ReportQuery:
    """Usage per UTC ``by`` (``day`` or ``hour``), provider and account (``usage_daily`` or
    ``usage_hourly``), oldest bucket first.

    ``--since`` keeps the buckets from the one holding that moment on: whole buckets, never
    part of one.
    """
    view, bucket_format = USAGE_BUCKETS[by]
    columns = (by, *USAGE_COLUMNS)

    def query(conn: Connection, filters: ReportFilter) -> Report:
        rows, truncated = _select(
            conn, f"SELECT {', '.join(columns)}\nFROM {view}", filters, moment=by,
            order_by=f"{by}, provider, account", since_format=bucket_format)
        return Report(columns, rows, truncated)

    return query


SUMMARY_COLUMNS = ("section", "name", "count", "avg_seconds", "max_seconds")


def summary(conn: Connection, filters: ReportFilter) -> Report:
    """One compact overview, as rows of (section, name, count, avg_seconds, max_seconds).

    Sections, in order: ``conferences`` (``total`` with the average and longest duration of
    those completed, ``still_open``, ``vanished``), ``status`` (per status), ``end_reason``
    (completed conferences per end reason, with their durations), ``members`` (``stays`` with
    their durations, distinct ``members``, ``present``), ``transitions`` (``total``, then per
    ``from → to``) and ``poll_errors`` (``total``, then per kind). Breakdowns are ordered by
    count, largest first, and each is cut at ``filters.limit``.
    """
    unlimited = ReportFilter(filters.since, filters.provider, filters.account)
    out: list[dict[str, Value]] = []
    truncated = False

    def add(section: str, rows: list[dict[str, Value]], cut: bool = False) -> None:
        nonlocal truncated
        truncated = truncated or cut
        for row in rows:
            out.append({"section": section, "name": row["name"], "count": row["count"],
                        "avg_seconds": row.get("avg_seconds"),
                        "max_seconds": row.get("max_seconds")})

    conference_totals, _ = _select(
        conn,
        "SELECT COUNT(*) AS count, AVG(duration_seconds) AS avg_seconds,"
        " MAX(duration_seconds) AS max_seconds,"
        " SUM(CASE WHEN still_open THEN 1 ELSE 0 END) AS open_count,"
        " SUM(CASE WHEN vanished THEN 1 ELSE 0 END) AS vanished_count\n"
        "FROM conference_summary",
        unlimited,
        moment=_STARTED,
    )
    totals = conference_totals[0]
    add("conferences", [
        {**totals, "name": "total"},
        {"name": "still_open", "count": totals["open_count"] or 0},
        {"name": "vanished", "count": totals["vanished_count"] or 0},
    ])
    add("status", *_breakdown(
        conn, filters, "status", "FROM conference_summary", moment=_STARTED,
        durations="duration_seconds"))
    add("end_reason", *_breakdown(
        conn, filters, f"COALESCE(end_reason, '{NOT_REPORTED}')", "FROM conference_summary",
        moment=_STARTED, durations="duration_seconds", extra_where="status = 'completed'"))

    member_totals, _ = _select(
        conn,
        "SELECT COUNT(*) AS count, AVG(duration_seconds) AS avg_seconds,"
        " MAX(duration_seconds) AS max_seconds, COUNT(DISTINCT member_pk) AS distinct_members,"
        " SUM(CASE WHEN present THEN 1 ELSE 0 END) AS present_stays\n"
        "FROM member_session",
        unlimited,
        moment=_JOINED,
    )
    stays = member_totals[0]
    add("members", [
        {**stays, "name": "stays"},
        {"name": "members", "count": stays["distinct_members"]},
        {"name": "present", "count": stays["present_stays"] or 0},
    ])

    transition_from = "FROM status_transition t JOIN conference c ON c.id = t.conference_pk"
    add("transitions", _total(conn, unlimited, transition_from, moment="t.observed_at",
                              provider="c.provider", account="c.account"))
    add("transitions", *_breakdown(
        conn, filters, "COALESCE(t.from_status, '(new)') || ' → ' || t.to_status",
        transition_from, moment="t.observed_at", provider="c.provider", account="c.account"))

    error_from = "FROM poll_error e JOIN poll_target p ON p.id = e.target_pk"
    add("poll_errors", _total(conn, unlimited, error_from, moment="e.occurred_at",
                              provider="p.provider", account="p.account"))
    add("poll_errors", *_breakdown(
        conn, filters, "e.kind", error_from, moment="e.occurred_at", provider="p.provider",
        account="p.account"))
    return Report(SUMMARY_COLUMNS, out, truncated)


def _total(conn: Connection, filters: ReportFilter, from_: str, **columns: str
           ) -> list[dict[str, Value]]:
    """The single ``total`` row counting the rows of ``from_`` that pass the filters."""
    rows, _ = _select(conn, f"SELECT 'total' AS name, COUNT(*) AS count\n{from_}", filters,
                      **columns)
    return rows


def _breakdown(conn: Connection, filters: ReportFilter, name: str, from_: str, *,
               durations: str | None = None, **columns: str
               ) -> tuple[list[dict[str, Value]], bool]:
    """Rows of ``from_`` counted per ``name`` (an SQL expression), the most frequent first."""
    seconds = (f", AVG({durations}) AS avg_seconds, MAX({durations}) AS max_seconds"
               if durations else "")
    return _select(
        conn,
        f"SELECT {name} AS name, COUNT(*) AS count{seconds}\n{from_}",
        filters,
        # The expression, not its alias: PostgreSQL would group by a table's own ``name``.
        group_by=name,
        order_by="2 DESC, 1",  # count, largest first; then name
        **columns,
    )


# --- Running a report ------------------------------------------------------------------------

def run_report(url: str, report: ReportQuery, filters: ReportFilter) -> Report:
    """Run ``report`` on the database at ``url`` in one read-only transaction.

    Raises ``StoreUnavailable`` with a message saying what to do when the database cannot be
    reached, a SQLite file does not exist (it is not created), or the schema has no reporting
    views yet (``poller db upgrade``).
    """
    refuse_missing_sqlite_file(url)
    engine = make_engine(url, poolclass=pool.NullPool)
    try:
        with store_errors("reading the report"), read_only(engine) as conn:
            _require_views(conn)
            return report(conn, filters)
    finally:
        engine.dispose()


def _require_views(conn: Connection) -> None:
    """Refuse a database whose schema has no reporting views (never or not fully migrated)."""
    missing = REQUIRED_VIEWS - set(inspect(conn).get_view_names())
    if not missing:
        return
    revision = revision_on(conn)
    state = f"at schema revision {revision}" if revision else "not migrated"
    raise StoreUnavailable(
        f"the database is {state} and has no reporting views: run `poller db upgrade` first"
    )
