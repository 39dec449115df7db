"""The tables: the SQL interface users report on (see ``docs/schema.md``).

Migrations in ``migrations/`` are the only source of the real schema; these typed models must
agree with them (a test runs Alembic's autogenerate comparison). Conventions:

* every table has an integer ``id`` primary key; a foreign key to another table's ``id`` is named
  ``<table>_pk`` (``conference_pk``, ``member_pk``, ``target_pk``) so it is never confused with
  the provider's own IDs (``conference_id``, ``member_id``);
* every timestamp is timezone-aware UTC (``UTCDateTime``), on SQLite too;
* JSON columns are ``JSONB`` on PostgreSQL and JSON text on SQLite.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """An aware-UTC datetime on every database.

    Binding refuses naive datetimes (a bug upstream, never guessed at) and converts other
    offsets to UTC; reading attaches UTC where the database returns naive values (SQLite).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime refused: {value!r}")
        value = value.astimezone(UTC)
        # SQLite has no time zones: store naive UTC text so SQL date functions work on it.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


PrimaryKey = BigInteger().with_variant(Integer(), "sqlite")
"""BIGINT on PostgreSQL; INTEGER on SQLite so that it aliases the rowid (autoincrement)."""

JSONDocument = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
"""Python ``None`` is SQL NULL (not the JSON text ``null``), so ``IS NULL`` works in reports."""


class Base(DeclarativeBase):
    """Declarative base of every table, with the constraint naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 (read once by SQLAlchemy, never mutated)
        datetime: UTCDateTime(),
        dict[str, Any]: JSONDocument,
        list[Any]: JSONDocument,
        str: String(),
    }


class PollTarget(Base):
    """What to poll, and the scheduler's bookkeeping for it. One row per (account, conference)."""

    __tablename__ = "poll_target"
    __table_args__ = (
        UniqueConstraint("account", "conference_id"),
        # The scheduler's "what is due" query: active targets by next_poll_at.
        Index("ix_poll_target_due", "state", "next_poll_at"),
        # A daemon's leases: heartbeat renewal and ``poller status`` (migration 0003).
        Index("ix_poll_target_lease_owner", "lease_owner"),
    )

    id: Mapped[int] = mapped_column(PrimaryKey, primary_key=True)
    provider: Mapped[str]
    account: Mapped[str]
    conference_id: Mapped[str]
    region: Mapped[str | None]
    source: Mapped[str] = mapped_column(server_default=text("'config'"))
    """config / discovered / cli."""
    state: Mapped[str] = mapped_column(server_default=text("'active'"))
    """active / retired."""
    retired_reason: Mapped[str | None]
    """completed / gone / never_found / removed."""
    retired_at: Mapped[datetime | None]
    next_poll_at: Mapped[datetime]
    last_polled_at: Mapped[datetime | None]
    last_success_at: Mapped[datetime | None]
    """``observed_at`` of the newest recorded observation: when the conference was last seen."""
    last_outcome: Mapped[str | None]
    """ok, unchanged, or a ``poll_error.kind``."""
    consecutive_failures: Mapped[int] = mapped_column(server_default=text("0"))
    poll_count: Mapped[int] = mapped_column(server_default=text("0"))
    """Polls recorded, successful and failed (a replayed or out-of-order result is not counted)."""
    failure_count: Mapped[int] = mapped_column(server_default=text("0"))
    """Failed polls recorded (never pruned, unlike ``poll_error``)."""
    last_error: Mapped[str | None] = mapped_column(Text)
    not_found_since: Mapped[datetime | None]
    """First 404 of the current run of 404s (for gone / never_found decisions)."""
    lease_owner: Mapped[str | None]
    lease_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class Conference(Base):
    """The current view of each conference ever seen."""

    __tablename__ = "conference"
    __table_args__ = (
        UniqueConstraint("account", "conference_id"),
        Index("ix_conference_created_at", "created_at"),
        Index("ix_conference_status", "status"),
    )

    id: Mapped[int] = mapped_column(PrimaryKey, primary_key=True)
    provider: Mapped[str]
    account: Mapped[str]
    conference_id: Mapped[str]
    name: Mapped[str | None]
    status: Mapped[str]
    provider_status: Mapped[str | None]
    region: Mapped[str | None]
    created_at: Mapped[datetime | None]
    updated_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    completed_at_source: Mapped[str | None]
    """provider / provider_updated_at / observed (see ``poller.model.CompletedAtSource``)."""
    duration_seconds: Mapped[float | None]
    end_reason: Mapped[str | None]
    ended_by_call_control_id: Mapped[str | None]
    ended_by_call_session_id: Mapped[str | None]
    connection_id: Mapped[str | None]
    tag: Mapped[str | None]
    event_url: Mapped[str | None]
    event_method: Mapped[str | None]
    content_hash: Mapped[str | None]
    """Hash of the last observed state (equals the current snapshot's)."""
    first_observed_at: Mapped[datetime]
    last_changed_at: Mapped[datetime]
    """The last observation that changed this row: first sighting, new state, gone or back.

    Unchanged polls do not move it (they write only ``poll_target``); the last successful poll
    is ``poll_target.last_success_at``, shown as ``conference_summary.last_observed_at``.
    """
    gone_at: Mapped[datetime | None]
    """When the provider started answering 404 for a conference it had shown us."""
    detail_records_at: Mapped[datetime | None]
    """When its Telnyx participant detail records were applied (``detail_records = true``)."""
    detail_records_next_at: Mapped[datetime | None]
    """The next attempt at them while Telnyx has none yet."""
    detail_records_tries: Mapped[int] = mapped_column(server_default=text("0"))


class ConferenceSnapshot(Base):
    """One row per distinct observed state of a conference (SCD type 2)."""

    __tablename__ = "conference_snapshot"
    __table_args__ = (
        UniqueConstraint("conference_pk", "valid_from"),
        # At most one current snapshot per conference, enforced by the database.
        Index(
            "uq_conference_snapshot_current",
            "conference_pk",
            unique=True,
            sqlite_where=text("valid_to IS NULL"),
            postgresql_where=text("valid_to IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(PrimaryKey, primary_key=True)
    conference_pk: Mapped[int] = mapped_column(ForeignKey("conference.id", ondelete="CASCADE"))
    valid_from: Mapped[datetime]
    valid_to: Mapped[datetime | None]
    content_hash: Mapped[str]
    status: Mapped[str]
    member_count: Mapped[int]
    """Members present (not left) in this state."""
    state: Mapped[dict[str, Any]]
    """The normalised conference and members."""
    raw: Mapped[dict[str, Any] | None]
    """The provider payloads this state was seen in (pruned by retention when configured)."""
    warnings: Mapped[list[Any] | None]
    """What the parsers noticed in this state but did not refuse (NULL: nothing)."""


class StatusTransition(Base):
    """Every status change of a conference, numbered 1, 2, … (the first sighting is seq 1)."""

    __tablename__ = "status_transition"
    __table_args__ = (
        UniqueConstraint("conference_pk", "seq"),
        Index("ix_status_transition_observed_at", "observed_at"),
    )

    id: Mapped[int] = mapped_column(PrimaryKey, primary_key=True)
    conference_pk: Mapped[int] = mapped_column(ForeignKey("conference.id", ondelete="CASCADE"))
    seq: Mapped[int]
    from_status: Mapped[str | None]
    """NULL on first sight."""
    to_status: Mapped[str]
    from_provider_status: Mapped[str | None]
    to_provider_status: Mapped[str | None]
    observed_at: Mapped[datetime]
    """First poll that saw ``to_status``."""
    previous_observed_at: Mapped[datetime | None]
    """Last poll that saw ``from_status``: the change happened in (previous, observed]."""
    provider_changed_at: Mapped[datetime | None]
    """The provider's own time of the change, where it has one."""
    end_reason: Mapped[str | None]


class Member(Base):
    """One member (Telnyx participant, Bandwidth call) of a conference: its current view."""

    __tablename__ = "member"
    __table_args__ = (UniqueConstraint("conference_pk", "member_id"),)

    id: Mapped[int] = mapped_column(PrimaryKey, primary_key=True)
    conference_pk: Mapped[int] = mapped_column(ForeignKey("conference.id", ondelete="CASCADE"))
    member_id: Mapped[str]
    call_control_id: Mapped[str | None]
    """Telnyx ``call_control_id``; Bandwidth ``callId``."""
    call_leg_id: Mapped[str | None]
    status: Mapped[str | None]
    """Telnyx joining / joined / left; NULL for Bandwidth."""
    muted: Mapped[bool | None]
    on_hold: Mapped[bool | None]
    coaching: Mapped[list[Any] | None]
    end_conference_on_exit: Mapped[bool | None]
    soft_end_conference_on_exit: Mapped[bool | None]
    member_url: Mapped[str | None]
    updated_at: Mapped[datetime | None]
    """The provider's last change of this member (Telnyx ``updated_at``); NULL for Bandwidth."""
    joined_at: Mapped[datetime | None]
    joined_at_source: Mapped[str | None]
    """provider (Telnyx ``created_at``) / observed (first poll that listed it)."""
    left_at: Mapped[datetime | None]
    left_at_source: Mapped[str | None]
    """provider / observed / disappeared / conference_completed."""
    first_observed_at: Mapped[datetime]
    last_observed_at: Mapped[datetime]
    """The last poll that wrote this row (first listing or a change; unchanged polls do not).

    For a member that disappeared: the last successful poll before the one that missed it.
    """


class MemberEvent(Base):
    """Every change of a member: joined, left, muted, unmuted, held, unheld, …, numbered."""

    __tablename__ = "member_event"
    __table_args__ = (
        UniqueConstraint("member_pk", "seq"),
        Index("ix_member_event_conference_pk", "conference_pk"),
        Index("ix_member_event_observed_at", "observed_at"),
    )

    id: Mapped[int] = mapped_column(PrimaryKey, primary_key=True)
    member_pk: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"))
    conference_pk: Mapped[int] = mapped_column(ForeignKey("conference.id", ondelete="CASCADE"))
    seq: Mapped[int]
    kind: Mapped[str]
    observed_at: Mapped[datetime]
    previous_observed_at: Mapped[datetime | None]
    provider_changed_at: Mapped[datetime | None]
    detail: Mapped[dict[str, Any] | None]


class PollError(Base):
    """Failed polls only (successes leave no row). Pruned by the retention setting."""

    __tablename__ = "poll_error"
    __table_args__ = (
        Index("ix_poll_error_occurred_at", "occurred_at"),
        Index("ix_poll_error_target_pk_occurred_at", "target_pk", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(PrimaryKey, primary_key=True)
    target_pk: Mapped[int] = mapped_column(ForeignKey("poll_target.id", ondelete="CASCADE"))
    occurred_at: Mapped[datetime]
    kind: Mapped[str]
    """not_found / rate_limited / server_error / timeout / network / bad_response / auth."""
    http_status: Mapped[int | None]
    provider_code: Mapped[str | None]
    retry_after_seconds: Mapped[float | None]
    detail: Mapped[str | None] = mapped_column(Text)
    """Short description with secrets removed."""


class PollerDaemon(Base):
    """One row per ``poller run`` identity: who runs, since when, last heartbeat (scale-out).

    Unlike the other tables its key is the identity itself (``[daemon] identity``): a daemon
    restarted under the same identity takes its row over; a live one keeps it to itself.
    """

    __tablename__ = "poller_daemon"

    identity: Mapped[str] = mapped_column(primary_key=True)
    host: Mapped[str]
    pid: Mapped[int]
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]
    """Refreshed every ``[daemon] heartbeat_seconds`` while it runs."""
    stopped_at: Mapped[datetime | None]
    """Set by a graceful stop; NULL while running, and after a crash."""
    lease_seconds: Mapped[float]
    """Its lease time: with no heartbeat for that long it is taken for dead."""
    polls_total: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    """Polls it made since it started (as of its last heartbeat)."""
    polls_last_minute: Mapped[int] = mapped_column(server_default=text("0"))
    """Polls it made in the minute before its last heartbeat."""


class WebhookEvent(Base):
    """One provider event (Telnyx webhook, Bandwidth callback) as received: the inbox.

    Stored raw before the request is answered, once per event (``deliveries`` counts repeats).
    """

    __tablename__ = "webhook_event"
    __table_args__ = (
        UniqueConstraint("provider", "account", "event_key"),
        Index("ix_webhook_event_conference", "account", "conference_id", "occurred_at"),
        Index("ix_webhook_event_outcome", "outcome", "apply_after"),
        Index("ix_webhook_event_received_at", "received_at"),
    )

    id: Mapped[int] = mapped_column(PrimaryKey, primary_key=True)
    provider: Mapped[str]
    account: Mapped[str]
    event_key: Mapped[str]
    """Telnyx ``data.id``; Bandwidth: a hash of the callback's fields (it sends no ID)."""
    event_type: Mapped[str]
    kind: Mapped[str | None]
    """What poller applies it as (``poller.model.EventKind``); NULL: kept, not applied."""
    conference_id: Mapped[str | None]
    call_id: Mapped[str | None]
    """Telnyx ``call_control_id``; Bandwidth ``callId``."""
    occurred_at: Mapped[datetime | None]
    """The provider's time of the event (Telnyx ``occurred_at``, Bandwidth ``eventTime``)."""
    received_at: Mapped[datetime]
    """When the first delivery of it was stored."""
    apply_after: Mapped[datetime | None]
    """A poll of its conference at or after this (``occurred_at`` + the skew allowance) has
    looked past it: it can be applied. NULL for events that are not applied."""
    deliveries: Mapped[int] = mapped_column(server_default=text("1"))
    body: Mapped[str] = mapped_column(Text)
    """The request body exactly as received (a Telnyx signature can be checked again on it)."""
    outcome: Mapped[str]
    """pending / ignored / applied / conflict / unmatched (``docs/webhooks.md``)."""
    processed_at: Mapped[datetime | None]
    detail: Mapped[str | None] = mapped_column(Text)
