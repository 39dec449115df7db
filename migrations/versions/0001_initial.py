"""Initial schema: targets, conferences, snapshots, transitions, members, events, errors.

Written by hand (migrations are the only schema source; ``poller.store.schema`` mirrors them and
a test checks the two agree). Runs on SQLite and PostgreSQL: JSON columns are JSONB on
PostgreSQL, primary keys BIGINT there and INTEGER (the rowid alias) on SQLite, and the "one
current snapshot per conference" rule is a partial unique index on both.

Revision ID: 0001_initial
Revises:
Create Date: 2025-01-01 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001_initial"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
JSONDOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _pk() -> sa.Column:
    return sa.Column("id", PK, primary_key=True, autoincrement=True)


def upgrade() -> None:
    """Create every table of ``poller.store.schema``."""
    op.create_table(
        "poll_target",
        _pk(),
        sa.Column("provider", sa.String(), nullable=False),
        sa.Column("account", sa.String(), nullable=False),
        sa.Column("conference_id", sa.String(), nullable=False),
        sa.Column("region", sa.String(), nullable=True),
        sa.Column("source", sa.String(), server_default=sa.text("'config'"), nullable=False),
        sa.Column("state", sa.String(), server_default=sa.text("'active'"), nullable=False),
        sa.Column("retired_reason", sa.String(), nullable=True),
        sa.Column("retired_at", TS, nullable=True),
        sa.Column("next_poll_at", TS, nullable=False),
        sa.Column("last_polled_at", TS, nullable=True),
        sa.Column("last_success_at", TS, nullable=True),
        sa.Column("last_outcome", sa.String(), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), server_default=sa.text("0"),
                  nullable=False),
        sa.Column("poll_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("failure_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("not_found_since", TS, nullable=True),
        sa.Column("lease_owner", sa.String(), nullable=True),
        sa.Column("lease_expires_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_poll_target"),
        sa.UniqueConstraint("account", "conference_id",
                            name="uq_poll_target_account_conference_id"),
    )
    op.create_index("ix_poll_target_due", "poll_target", ["state", "next_poll_at"])

    op.create_table(
        "conference",
        _pk(),
        sa.Column("provider", sa.String(), nullable=False),
        sa.Column("account", sa.String(), nullable=False),
        sa.Column("conference_id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("provider_status", sa.String(), nullable=True),
        sa.Column("region", sa.String(), nullable=True),
        sa.Column("created_at", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=True),
        sa.Column("expires_at", TS, nullable=True),
        sa.Column("completed_at", TS, nullable=True),
        sa.Column("completed_at_source", sa.String(), nullable=True),
        sa.Column("duration_seconds", sa.Double(), nullable=True),
        sa.Column("end_reason", sa.String(), nullable=True),
        sa.Column("ended_by_call_control_id", sa.String(), nullable=True),
        sa.Column("ended_by_call_session_id", sa.String(), nullable=True),
        sa.Column("connection_id", sa.String(), nullable=True),
        sa.Column("tag", sa.String(), nullable=True),
        sa.Column("event_url", sa.String(), nullable=True),
        sa.Column("event_method", sa.String(), nullable=True),
        sa.Column("content_hash", sa.String(), nullable=True),
        sa.Column("first_observed_at", TS, nullable=False),
        sa.Column("last_changed_at", TS, nullable=False),
        sa.Column("gone_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_conference"),
        sa.UniqueConstraint("account", "conference_id",
                            name="uq_conference_account_conference_id"),
    )
    op.create_index("ix_conference_created_at", "conference", ["created_at"])
    op.create_index("ix_conference_status", "conference", ["status"])

    op.create_table(
        "conference_snapshot",
        _pk(),
        sa.Column("conference_pk", PK, nullable=False),
        sa.Column("valid_from", TS, nullable=False),
        sa.Column("valid_to", TS, nullable=True),
        sa.Column("content_hash", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("member_count", sa.Integer(), nullable=False),
        sa.Column("state", JSONDOC, nullable=False),
        sa.Column("raw", JSONDOC, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_conference_snapshot"),
        sa.ForeignKeyConstraint(["conference_pk"], ["conference.id"], ondelete="CASCADE",
                                name="fk_conference_snapshot_conference_pk_conference"),
        sa.UniqueConstraint("conference_pk", "valid_from",
                            name="uq_conference_snapshot_conference_pk_valid_from"),
    )
    op.create_index(
        "uq_conference_snapshot_current",
        "conference_snapshot",
        ["conference_pk"],
        unique=True,
        sqlite_where=sa.text("valid_to IS NULL"),
        postgresql_where=sa.text("valid_to IS NULL"),
    )

    op.create_table(
        "status_transition",
        _pk(),
        sa.Column("conference_pk", PK, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("from_status", sa.String(), nullable=True),
        sa.Column("to_status", sa.String(), nullable=False),
        sa.Column("from_provider_status", sa.String(), nullable=True),
        sa.Column("to_provider_status", sa.String(), nullable=True),
        sa.Column("observed_at", TS, nullable=False),
        sa.Column("previous_observed_at", TS, nullable=True),
        sa.Column("provider_changed_at", TS, nullable=True),
        sa.Column("end_reason", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_status_transition"),
        sa.ForeignKeyConstraint(["conference_pk"], ["conference.id"], ondelete="CASCADE",
                                name="fk_status_transition_conference_pk_conference"),
        sa.UniqueConstraint("conference_pk", "seq", name="uq_status_transition_conference_pk_seq"),
    )
    op.create_index("ix_status_transition_observed_at", "status_transition", ["observed_at"])

    op.create_table(
        "member",
        _pk(),
        sa.Column("conference_pk", PK, nullable=False),
        sa.Column("member_id", sa.String(), nullable=False),
        sa.Column("call_control_id", sa.String(), nullable=True),
        sa.Column("call_leg_id", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=True),
        sa.Column("muted", sa.Boolean(), nullable=True),
        sa.Column("on_hold", sa.Boolean(), nullable=True),
        sa.Column("coaching", JSONDOC, nullable=True),
        sa.Column("end_conference_on_exit", sa.Boolean(), nullable=True),
        sa.Column("soft_end_conference_on_exit", sa.Boolean(), nullable=True),
        sa.Column("member_url", sa.String(), nullable=True),
        sa.Column("updated_at", TS, nullable=True),
        sa.Column("joined_at", TS, nullable=True),
        sa.Column("joined_at_source", sa.String(), nullable=True),
        sa.Column("left_at", TS, nullable=True),
        sa.Column("left_at_source", sa.String(), nullable=True),
        sa.Column("first_observed_at", TS, nullable=False),
        sa.Column("last_observed_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_member"),
        sa.ForeignKeyConstraint(["conference_pk"], ["conference.id"], ondelete="CASCADE",
                                name="fk_member_conference_pk_conference"),
        sa.UniqueConstraint("conference_pk", "member_id",
                            name="uq_member_conference_pk_member_id"),
    )

    op.create_table(
        "member_event",
        _pk(),
        sa.Column("member_pk", PK, nullable=False),
        sa.Column("conference_pk", PK, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("observed_at", TS, nullable=False),
        sa.Column("previous_observed_at", TS, nullable=True),
        sa.Column("provider_changed_at", TS, nullable=True),
        sa.Column("detail", JSONDOC, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_member_event"),
        sa.ForeignKeyConstraint(["member_pk"], ["member.id"], ondelete="CASCADE",
                                name="fk_member_event_member_pk_member"),
        sa.ForeignKeyConstraint(["conference_pk"], ["conference.id"], ondelete="CASCADE",
                                name="fk_member_event_conference_pk_conference"),
        sa.UniqueConstraint("member_pk", "seq", name="uq_member_event_member_pk_seq"),
    )
    op.create_index("ix_member_event_conference_pk", "member_event", ["conference_pk"])
    op.create_index("ix_member_event_observed_at", "member_event", ["observed_at"])

    op.create_table(
        "poll_error",
        _pk(),
        sa.Column("target_pk", PK, nullable=False),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("provider_code", sa.String(), nullable=True),
        sa.Column("retry_after_seconds", sa.Double(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_poll_error"),
        sa.ForeignKeyConstraint(["target_pk"], ["poll_target.id"], ondelete="CASCADE",
                                name="fk_poll_error_target_pk_poll_target"),
    )
    op.create_index("ix_poll_error_occurred_at", "poll_error", ["occurred_at"])
    op.create_index("ix_poll_error_target_pk_occurred_at", "poll_error",
                    ["target_pk", "occurred_at"])


def downgrade() -> None:
    """Drop every table (children first)."""
    op.drop_table("poll_error")
    op.drop_table("member_event")
    op.drop_table("member")
    op.drop_table("status_transition")
    op.drop_table("conference_snapshot")
    op.drop_table("conference")
    op.drop_table("poll_target")
