"""Reporting views: conference_summary, member_session, poll_error_daily.

The views are the stable, documented face of the history for SQL reports (``docs/schema.md``
describes every column and gives example queries). They read only the tables of
``0001_initial`` and work on SQLite and PostgreSQL with the same column names and meanings:

* durations are seconds as floating point (SQLite: ``julianday`` difference × 86400, to the
  millisecond; PostgreSQL: ``EXTRACT(EPOCH FROM …)`` cast to ``double precision``, to the
  microsecond);
* ``*_day`` columns are the UTC calendar day as text ``YYYY-MM-DD`` on both databases, so
  "per day" reports need no dialect-specific date functions;
* ``member_session`` has one row per stay (a member who left and was listed again has a
  second stay); it is built from the ``joined`` / ``rejoined`` / ``left`` events (each ``left``
  event's ``detail`` names the source of its time), and mute and hold times from the
  ``muted`` / ``unmuted`` / ``held`` / ``unheld`` events plus the state a member joined or
  rejoined in, kept in its ``joined`` / ``rejoined`` event's ``detail``;
* flags (``gone``, ``vanished``, ``still_open``, ``present``) are ``boolean`` on PostgreSQL
  and 0/1 on SQLite: ``WHERE gone``, ``WHERE NOT still_open`` and ``= TRUE`` work on both;
* ``conference_summary.last_observed_at`` (the last successful poll) is the target's
  ``poll_target.last_success_at``: an unchanged poll updates only ``poll_target``, so the
  ``conference`` row keeps ``last_changed_at`` instead.

The SQL is frozen here on purpose (a migration must not change when application code does). To
change a view, write a new migration that drops and re-creates it. A later migration that
rebuilds one of the underlying tables with SQLite batch mode must drop the views first and
re-create them afterwards: SQLite refuses to rename a table while a view names a missing one.

Revision ID: 0002_reports
Revises: 0001_initial
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from alembic import op

revision: str = "0002_reports"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _sqlite_seconds(start: str, end: str) -> str:
    # julianday() resolves milliseconds; rounding drops the float noise of the day fraction.
    return f"ROUND((julianday({end}) - julianday({start})) * 86400.0, 3)"


def _postgresql_seconds(start: str, end: str) -> str:
    return f"CAST(EXTRACT(EPOCH FROM ({end}) - ({start})) AS DOUBLE PRECISION)"


def _sqlite_day(moment: str) -> str:
    return f"date({moment})"


def _postgresql_day(moment: str) -> str:
    return f"to_char(({moment}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"


def _sqlite_flag_at_join(flag: str) -> str:
    return f"json_extract(e.detail, '$.{flag}') = 1"


def _postgresql_flag_at_join(flag: str) -> str:
    return f"(e.detail ->> '{flag}') = 'true'"


def _sqlite_left_source(alias: str) -> str:
    return f"json_extract({alias}.detail, '$.source')"


def _postgresql_left_source(alias: str) -> str:
    return f"({alias}.detail ->> 'source')"


EVENT_AT = "COALESCE({alias}.provider_changed_at, {alias}.observed_at)"
"""When a member event happened: the provider's time where it gave one, else the poll's."""


def _intervals(start_kind: str, end_kind: str, flag: str, flag_at_join: Callable[[str], str],
               seconds: Callable[[str, str], str]) -> str:
    """Mute (or hold) intervals: one row per interval, with its start event and length.

    An interval starts with a ``start_kind`` event, or with the ``joined`` / ``rejoined`` event
    of a member (re)joining with ``flag`` set (its ``detail`` says so). It ends at the member's
    next ``end_kind`` or ``left`` event (by ``seq``); one still running has NULL seconds.
    """
    end_at = (
        "(SELECT " + EVENT_AT.format(alias="x") + " FROM member_event x"
        " WHERE x.member_pk = e.member_pk AND x.seq = ("
        "SELECT MIN(y.seq) FROM member_event y WHERE y.member_pk = e.member_pk"
        f" AND y.seq > e.seq AND y.kind IN ('{end_kind}', 'left')))"
    )
    return (
        "SELECT e.member_pk, e.seq,"
        f" {seconds(EVENT_AT.format(alias='e'), end_at)} AS seconds"
        " FROM member_event e"
        f" WHERE e.kind = '{start_kind}'"
        f" OR (e.kind IN ('joined', 'rejoined') AND {flag_at_join(flag)})"
    )


def _views(dialect: str) -> dict[str, str]:
    """Each view's ``SELECT`` for ``dialect`` (``sqlite`` or ``postgresql``), in creation order."""
    if dialect == "postgresql":
        seconds, day = _postgresql_seconds, _postgresql_day
        flag_at_join, left_source = _postgresql_flag_at_join, _postgresql_left_source
    elif dialect == "sqlite":
        seconds, day = _sqlite_seconds, _sqlite_day
        flag_at_join, left_source = _sqlite_flag_at_join, _sqlite_left_source
    else:
        raise NotImplementedError(f"reporting views exist for sqlite and postgresql, not {dialect}")

    conference_summary = f"""
SELECT
    c.id AS conference_pk,
    c.provider,
    c.account,
    c.conference_id,
    c.name,
    c.status,
    c.provider_status,
    c.region,
    c.created_at,
    {day('COALESCE(c.created_at, c.first_observed_at)')} AS created_day,
    c.completed_at,
    c.completed_at_source,
    c.duration_seconds,
    c.end_reason,
    c.ended_by_call_control_id,
    COALESCE(s.peak_member_count, 0) AS peak_member_count,
    COALESCE(m.member_count, 0) AS member_count,
    COALESCE(m.members_present, 0) AS members_present,
    COALESCE(s.snapshot_count, 0) AS snapshot_count,
    COALESCE(t.transition_count, 0) AS transition_count,
    c.first_observed_at,
    pt.last_success_at AS last_observed_at,
    c.last_changed_at,
    (c.gone_at IS NOT NULL) AS gone,
    c.gone_at,
    (c.gone_at IS NOT NULL AND c.status <> 'completed') AS vanished,
    (c.status <> 'completed' AND c.gone_at IS NULL) AS still_open,
    pt.state AS target_state,
    pt.retired_reason AS target_retired_reason
FROM conference c
LEFT JOIN (
    SELECT conference_pk, MAX(member_count) AS peak_member_count, COUNT(*) AS snapshot_count
    FROM conference_snapshot GROUP BY conference_pk
) s ON s.conference_pk = c.id
LEFT JOIN (
    SELECT conference_pk, COUNT(*) AS member_count,
           SUM(CASE WHEN left_at IS NULL THEN 1 ELSE 0 END) AS members_present
    FROM member GROUP BY conference_pk
) m ON m.conference_pk = c.id
LEFT JOIN (
    SELECT conference_pk, COUNT(*) AS transition_count
    FROM status_transition GROUP BY conference_pk
) t ON t.conference_pk = c.id
LEFT JOIN poll_target pt ON pt.account = c.account AND pt.conference_id = c.conference_id
"""

    mutes = _intervals("muted", "unmuted", "muted", flag_at_join, seconds)
    holds = _intervals("held", "unheld", "on_hold", flag_at_join, seconds)
    member_session = f"""
WITH stay AS (
    SELECT
        s.member_pk,
        s.seq AS start_seq,
        s.kind AS start_kind,
        {EVENT_AT.format(alias='s')} AS started_at,
        s.provider_changed_at AS start_provider_at,
        (SELECT COUNT(*) FROM member_event p
          WHERE p.member_pk = s.member_pk AND p.seq <= s.seq
            AND p.kind IN ('joined', 'rejoined')) AS stay,
        (SELECT MIN(l.seq) FROM member_event l
          WHERE l.member_pk = s.member_pk AND l.seq > s.seq AND l.kind = 'left') AS end_seq,
        NOT EXISTS (SELECT 1 FROM member_event n
          WHERE n.member_pk = s.member_pk AND n.seq > s.seq
            AND n.kind IN ('joined', 'rejoined')) AS is_last
    FROM member_event s
    WHERE s.kind IN ('joined', 'rejoined')
),
mute AS ({mutes}),
hold AS ({holds}),
bounded AS (
    SELECT
        st.*,
        CASE WHEN st.start_kind = 'joined' THEN m.joined_at ELSE st.started_at END AS joined_at,
        CASE
            WHEN st.start_kind = 'joined' THEN m.joined_at_source
            WHEN st.start_provider_at IS NOT NULL THEN 'provider'
            ELSE 'observed'
        END AS joined_at_source,
        CASE
            WHEN st.end_seq IS NULL THEN NULL
            WHEN st.is_last THEN m.left_at
            ELSE {EVENT_AT.format(alias='l')}
        END AS left_at,
        CASE
            WHEN st.end_seq IS NULL THEN NULL
            WHEN st.is_last THEN m.left_at_source
            ELSE {left_source('l')}
        END AS left_at_source
    FROM stay st
    JOIN member m ON m.id = st.member_pk
    LEFT JOIN member_event l ON l.member_pk = st.member_pk AND l.seq = st.end_seq
)
SELECT
    m.id AS member_pk,
    m.conference_pk,
    c.provider,
    c.account,
    c.conference_id,
    m.member_id,
    b.stay,
    m.call_control_id,
    m.call_leg_id,
    m.status,
    b.joined_at,
    b.joined_at_source,
    b.left_at,
    b.left_at_source,
    {seconds('b.joined_at', 'b.left_at')} AS duration_seconds,
    (b.left_at IS NULL) AS present,
    m.muted,
    m.on_hold,
    (SELECT COUNT(*) FROM mute i WHERE i.member_pk = b.member_pk AND i.seq >= b.start_seq
        AND (b.end_seq IS NULL OR i.seq < b.end_seq)) AS times_muted,
    (SELECT COALESCE(SUM(i.seconds), 0.0) FROM mute i
      WHERE i.member_pk = b.member_pk AND i.seq >= b.start_seq
        AND (b.end_seq IS NULL OR i.seq < b.end_seq)) AS seconds_muted,
    (SELECT COUNT(*) FROM hold i WHERE i.member_pk = b.member_pk AND i.seq >= b.start_seq
        AND (b.end_seq IS NULL OR i.seq < b.end_seq)) AS times_held,
    (SELECT COALESCE(SUM(i.seconds), 0.0) FROM hold i
      WHERE i.member_pk = b.member_pk AND i.seq >= b.start_seq
        AND (b.end_seq IS NULL OR i.seq < b.end_seq)) AS seconds_held,
    m.first_observed_at,
    m.last_observed_at
FROM bounded b
JOIN member m ON m.id = b.member_pk
JOIN conference c ON c.id = m.conference_pk
"""

    poll_error_daily = f"""
SELECT
    t.provider,
    t.account,
    {day('e.occurred_at')} AS day,
    e.kind,
    COUNT(*) AS errors,
    COUNT(DISTINCT e.target_pk) AS conferences,
    MIN(e.occurred_at) AS first_occurred_at,
    MAX(e.occurred_at) AS last_occurred_at
FROM poll_error e
JOIN poll_target t ON t.id = e.target_pk
GROUP BY t.provider, t.account, {day('e.occurred_at')}, e.kind
"""

    return {
        "conference_summary": conference_summary,
        "member_session": member_session,
        "poll_error_daily": poll_error_daily,
    }


def upgrade() -> None:
    """Create the reporting views with the SQL for the connected database."""
    for name, body in _views(op.get_context().dialect.name).items():
        op.execute(f"CREATE VIEW {name} AS {body}")


def downgrade() -> None:
    """Drop the reporting views (the tables and their rows are untouched)."""
    for name in reversed(list(_views(op.get_context().dialect.name))):
        op.execute(f"DROP VIEW IF EXISTS {name}")
