"""Usage views: usage_hourly and usage_daily (``poller report usage``).

One row per provider, account and UTC bucket (hour or day) with any activity: conferences that
started in it, conferences live in it, conference and member minutes, the peak of concurrent
member stays of the account, and the median and p95 duration of the completed conferences
that started in it (``docs/schema.md`` says exactly what each means).

* A conference's life runs from ``created_at`` (else ``first_observed_at``) to
  ``completed_at``; while not completed, to its last successful poll
  (``poll_target.last_success_at``; ``last_changed_at`` if its target row is gone). A stay of
  ``member_session`` runs from ``joined_at`` to ``left_at`` (while present: to its
  conference's end), clipped to its conference's life.
* Stays are ``member_session``'s, read from the tables the way that view reads them: a
  member that never rejoined has one stay, its ``member`` row's ``joined_at`` to ``left_at``;
  one that rejoined has a stay per ``joined`` / ``rejoined`` event, to its next ``left``
  event (the last one to ``member.left_at``). Reading the view itself would compute its mute
  and hold columns for every stay (PostgreSQL does not push the filter into it).
* Every life and stay is cut into the buckets it overlaps by a recursive CTE, so its minutes
  fall where they were spent. Times are whole milliseconds since 1970 (integers, the same on
  both databases: SQLite keeps milliseconds), so bucket arithmetic is integer arithmetic and
  the text of a bucket is computed once per row.
* ``peak_members`` is a sweep over the stay pieces of each (provider, account, bucket): +1 at
  a piece's start, -1 at its end, leaves before joins at the same instant (a stay is the
  half-open interval [start, end)); a stay carried in from an earlier bucket starts a piece
  at the bucket's start.
* Percentiles are nearest-rank (rank ``ceil(p × n)``) with ``ROW_NUMBER`` and ``COUNT``
  windows: SQLite has no percentile functions, and the two give the same answer everywhere.
* The daily view cuts by day itself: peaks and percentiles do not add up from hours.

The SQL is frozen here on purpose, like ``0002_reports``: to change a view, a new migration
drops and re-creates it. No table changes.

Revision ID: 0006_usage
Revises: 0005_webhook_events
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from alembic import op

revision: str = "0006_usage"
down_revision: str | Sequence[str] | None = "0005_webhook_events"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HOUR_MS = 3_600_000
DAY_MS = 86_400_000


class _Dialect(NamedTuple):
    """The few expressions that differ between SQLite and PostgreSQL (a named tuple: Alembic
    loads a migration outside ``sys.modules``, where a dataclass cannot be made)."""

    ms: Callable[[str], str]
    """A moment as whole milliseconds since 1970 (an integer)."""
    least: str
    greatest: str
    bucket_text: Callable[[str, str], str]
    """(milliseconds expression, ``day`` or ``hour``) → the bucket as text."""


def _sqlite_ms(moment: str) -> str:
    # julianday() resolves milliseconds; rounding recovers them exactly from the day fraction.
    return f"CAST(ROUND((julianday({moment}) - 2440587.5) * 86400000.0) AS INTEGER)"


def _postgresql_ms(moment: str) -> str:
    return f"CAST(ROUND(EXTRACT(EPOCH FROM {moment}) * 1000) AS BIGINT)"


_FORMATS = {
    "sqlite": {"day": "%Y-%m-%d", "hour": "%Y-%m-%d %H:00"},
    "postgresql": {"day": "YYYY-MM-DD", "hour": "YYYY-MM-DD HH24:00"},
}


def _sqlite_bucket(ms: str, unit: str) -> str:
    return f"strftime('{_FORMATS['sqlite'][unit]}', ({ms}) / 1000, 'unixepoch')"


def _postgresql_bucket(ms: str, unit: str) -> str:
    return (f"to_char(to_timestamp(({ms}) / 1000) AT TIME ZONE 'UTC', "
            f"'{_FORMATS['postgresql'][unit]}')")


DIALECTS = {
    "sqlite": _Dialect(_sqlite_ms, "MIN", "MAX", _sqlite_bucket),
    "postgresql": _Dialect(_postgresql_ms, "LEAST", "GREATEST", _postgresql_bucket),
}


EVENT_AT = "COALESCE({a}.provider_changed_at, {a}.observed_at)"
"""When a member event happened, as ``member_session`` (``0002_reports``) reads it."""


def _pieces(name: str, source: str, size: int, first: str = "") -> str:
    """CTEs ``long_{name}_piece`` and ``{name}_piece``: each (start_ms, end_ms) row of
    ``source`` cut at the bucket boundaries it crosses (by multiples of ``size`` ms).

    A life within one bucket (most of them) is its own piece; only the others go through the
    recursive CTE, one row per bucket. ``first`` names a column that is 1 on a life's first
    piece and 0 on the others.
    """
    first_1, first_0 = (f", 1 AS {first}", ", 0") if first else ("", "")
    first_col = f", {first}" if first else ""
    bucket_end = f"start_ms - start_ms % {size} + {size}"
    return f"""long_{name}_piece AS (
    SELECT account_no{first_1}, start_ms AS piece_start, {bucket_end} AS piece_end, end_ms
    FROM {source}
    WHERE end_ms > {bucket_end}
    UNION ALL
    SELECT account_no{first_0}, piece_end,
           CASE WHEN end_ms < piece_end + {size} THEN end_ms ELSE piece_end + {size} END, end_ms
    FROM long_{name}_piece
    WHERE piece_end < end_ms
),
{name}_piece AS (
    SELECT account_no{first_1}, start_ms AS piece_start, end_ms AS piece_end
    FROM {source}
    WHERE end_ms <= {bucket_end}
    UNION ALL
    SELECT account_no{first_col}, piece_start, piece_end
    FROM long_{name}_piece
)"""


def _usage(d: _Dialect, unit: str, size: int) -> str:
    """The ``SELECT`` of one usage view, cutting by buckets of ``size`` ms named ``unit``."""
    start = d.ms("COALESCE(c.created_at, c.first_observed_at)")
    end = d.ms("COALESCE(c.completed_at, pt.last_success_at, c.last_changed_at)")
    joined = d.ms("COALESCE(s.joined_at, s.first_observed_at)")
    left = d.ms("s.left_at")
    return f"""
WITH RECURSIVE account_key AS (
    SELECT provider, account, ROW_NUMBER() OVER (ORDER BY provider, account) AS account_no
    FROM (SELECT DISTINCT provider, account FROM conference) accounts
),
raw_life AS (
    SELECT c.id AS conference_pk, k.account_no, c.status, c.duration_seconds,
           {start} AS start_ms, {end} AS end_ms
    FROM conference c
    JOIN account_key k ON k.provider = c.provider AND k.account = c.account
    LEFT JOIN poll_target pt ON pt.account = c.account AND pt.conference_id = c.conference_id
),
life AS (
    SELECT conference_pk, account_no, status, duration_seconds, start_ms,
           {d.greatest}(start_ms, end_ms) AS end_ms
    FROM raw_life
),
{_pieces("conference", "life", size, "first_piece")},
stay AS MATERIALIZED (
    SELECT account_no, start_ms, end_ms
    FROM (
        SELECT l.account_no,
               {d.greatest}({joined}, l.start_ms) AS start_ms,
               {d.least}(COALESCE({left}, l.end_ms), l.end_ms) AS end_ms
        FROM (
            SELECT m.conference_pk, m.joined_at, m.left_at, m.first_observed_at
            FROM member m
            WHERE NOT EXISTS (SELECT 1 FROM member_event e
                              WHERE e.member_pk = m.id AND e.kind = 'rejoined')
            UNION ALL
            SELECT m.conference_pk,
                   CASE WHEN e.kind = 'joined' THEN m.joined_at ELSE {EVENT_AT.format(a='e')} END,
                   CASE
                       WHEN l.seq IS NULL THEN NULL
                       WHEN NOT EXISTS (SELECT 1 FROM member_event n
                                        WHERE n.member_pk = e.member_pk AND n.seq > e.seq
                                          AND n.kind IN ('joined', 'rejoined')) THEN m.left_at
                       ELSE {EVENT_AT.format(a='l')}
                   END,
                   m.first_observed_at
            FROM member_event e
            JOIN member m ON m.id = e.member_pk
            LEFT JOIN member_event l ON l.member_pk = e.member_pk AND l.seq = (
                SELECT MIN(x.seq) FROM member_event x
                WHERE x.member_pk = e.member_pk AND x.seq > e.seq AND x.kind = 'left')
            WHERE e.kind IN ('joined', 'rejoined')
              AND e.member_pk IN (SELECT member_pk FROM member_event WHERE kind = 'rejoined')
        ) s
        JOIN life l ON l.conference_pk = s.conference_pk
    ) clipped
    WHERE end_ms > start_ms
),
{_pieces("stay", "stay", size)},
edge AS (
    SELECT account_no, piece_start - piece_start % {size} AS bucket_ms,
           piece_start AS at_ms, 1 AS delta
    FROM stay_piece
    UNION ALL
    SELECT account_no, piece_start - piece_start % {size}, piece_end, -1
    FROM stay_piece
),
sweep AS (
    SELECT account_no, bucket_ms, at_ms, delta,
           SUM(delta) OVER (PARTITION BY account_no, bucket_ms ORDER BY at_ms, delta
                            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS present
    FROM edge
),
members AS (
    SELECT account_no, bucket_ms, MAX(present) AS peak_members,
           SUM(-delta * at_ms) AS member_ms
    FROM sweep
    GROUP BY account_no, bucket_ms
),
conferences AS (
    SELECT account_no, piece_start - piece_start % {size} AS bucket_ms,
           SUM(first_piece) AS conferences, COUNT(*) AS active_conferences,
           SUM(piece_end - piece_start) AS conference_ms
    FROM conference_piece
    GROUP BY account_no, piece_start - piece_start % {size}
),
ranked AS (
    SELECT account_no, start_ms - start_ms % {size} AS bucket_ms, duration_seconds,
           ROW_NUMBER() OVER (PARTITION BY account_no, start_ms - start_ms % {size}
                              ORDER BY duration_seconds) AS duration_rank,
           COUNT(*) OVER (PARTITION BY account_no, start_ms - start_ms % {size}) AS n
    FROM life
    WHERE status = 'completed' AND duration_seconds IS NOT NULL
),
durations AS (
    SELECT account_no, bucket_ms,
           MAX(CASE WHEN duration_rank = (n + 1) / 2 THEN duration_seconds END)
               AS median_duration_seconds,
           MAX(CASE WHEN duration_rank = (95 * n + 99) / 100 THEN duration_seconds END)
               AS p95_duration_seconds
    FROM ranked
    GROUP BY account_no, bucket_ms
)
SELECT
    k.provider,
    k.account,
    {d.bucket_text('c.bucket_ms', unit)} AS {unit},
    c.conferences,
    c.active_conferences,
    CAST(c.conference_ms AS DOUBLE PRECISION) / 60000.0 AS conference_minutes,
    CAST(COALESCE(m.member_ms, 0) AS DOUBLE PRECISION) / 60000.0 AS member_minutes,
    COALESCE(m.peak_members, 0) AS peak_members,
    p.median_duration_seconds,
    p.p95_duration_seconds
FROM conferences c
JOIN account_key k ON k.account_no = c.account_no
LEFT JOIN members m ON m.account_no = c.account_no AND m.bucket_ms = c.bucket_ms
LEFT JOIN durations p ON p.account_no = c.account_no AND p.bucket_ms = c.bucket_ms
"""


def _views(dialect: str) -> dict[str, str]:
    """Each view's ``SELECT`` for ``dialect`` (``sqlite`` or ``postgresql``)."""
    if dialect not in DIALECTS:
        raise NotImplementedError(f"usage views exist for sqlite and postgresql, not {dialect}")
    return {
        "usage_hourly": _usage(DIALECTS[dialect], "hour", HOUR_MS),
        "usage_daily": _usage(DIALECTS[dialect], "day", DAY_MS),
    }


def upgrade() -> None:
    """Create the usage views with the SQL for the connected database."""
    for name, body in _views(op.get_context().dialect.name).items():
        op.execute(f"CREATE VIEW {name} AS {body}")


def downgrade() -> None:
    """Drop the usage views (no table is touched)."""
    for name in reversed(list(_views(op.get_context().dialect.name))):
        op.execute(f"DROP VIEW IF EXISTS {name}")
