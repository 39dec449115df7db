"""Provider events: the ``webhook_event`` table, the receiver's durable inbox.

Each Telnyx webhook or Bandwidth callback that passes the receiver's checks (signature or
credentials, size, JSON) is inserted here, raw, before the request is answered; a delivery of an
event already stored only counts in ``deliveries``. Unique on (``provider``, ``account``,
``event_key``): Telnyx's event ``id``, or for Bandwidth (no ID) a hash of the callback's fields.
``kind`` is what poller applies it as (NULL: a type it keeps but does not apply);
``apply_after`` is the poll time from which it can be applied (its time plus the clock-skew
allowance). ``outcome``
says what became of it: ``pending``, ``ignored``, ``applied``, ``conflict`` or ``unmatched``
(``docs/webhooks.md``).

Telnyx detail records (``docs/webhooks.md``): ``conference.detail_records_at`` (when its
participant detail records were applied), ``detail_records_next_at`` and ``detail_records_tries``
(the next attempt while Telnyx has none yet, and the attempts so far).

Only a new table and new nullable (or defaulted) columns: no table is rebuilt, so SQLite needs no
batch mode and the views stay.

Revision ID: 0005_webhook_events
Revises: 0004_snapshot_warnings
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_webhook_events"
down_revision: str | Sequence[str] | None = "0004_snapshot_warnings"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create ``webhook_event`` and its indexes."""
    op.create_table(
        "webhook_event",
        sa.Column("id", PK, nullable=False),
        sa.Column("provider", sa.String(), nullable=False),
        sa.Column("account", sa.String(), nullable=False),
        sa.Column("event_key", sa.String(), nullable=False),
        sa.Column("event_type", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=True),
        sa.Column("conference_id", sa.String(), nullable=True),
        sa.Column("call_id", sa.String(), nullable=True),
        sa.Column("occurred_at", TS, nullable=True),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("apply_after", TS, nullable=True),
        sa.Column("deliveries", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("processed_at", TS, nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_event"),
        sa.UniqueConstraint("provider", "account", "event_key",
                            name="uq_webhook_event_provider_account_event_key"),
    )
    op.create_index("ix_webhook_event_conference", "webhook_event",
                    ["account", "conference_id", "occurred_at"])
    op.create_index("ix_webhook_event_outcome", "webhook_event", ["outcome", "apply_after"])
    op.create_index("ix_webhook_event_received_at", "webhook_event", ["received_at"])
    op.add_column("conference", sa.Column("detail_records_at", TS, nullable=True))
    op.add_column("conference", sa.Column("detail_records_next_at", TS, nullable=True))
    op.add_column("conference", sa.Column("detail_records_tries", sa.Integer(),
                                          server_default=sa.text("0"), nullable=False))


def downgrade() -> None:
    """Drop them again (recorded history is untouched). Plain ``DROP COLUMN``: batch mode
    would rebuild ``conference`` under the views that read it."""
    for column in ("detail_records_tries", "detail_records_next_at", "detail_records_at"):
        op.drop_column("conference", column)
    op.drop_table("webhook_event")
