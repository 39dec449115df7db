"""Scale-out: the ``poller_daemon`` table, and an index for each daemon's leases.

Each ``poller run`` registers itself in ``poller_daemon`` under its identity (``[daemon]
identity``; host name and PID by default), refreshes ``heartbeat_at`` while it runs and sets
``stopped_at`` when it stops; ``poller status`` reads it. The identity is the key: a restart
under the same identity reuses its row, and a live identity (fresh heartbeat, not stopped) is
refused to a second process. ``ix_poll_target_lease_owner`` serves the heartbeat's lease renewal
and ``poller status``'s "targets held" (both select by ``lease_owner``).

Only new objects: no table is rebuilt, so SQLite needs no batch mode and the views stay.

Revision ID: 0003_daemons
Revises: 0002_reports
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_daemons"
down_revision: str | Sequence[str] | None = "0002_reports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create ``poller_daemon`` and the lease-owner index."""
    op.create_table(
        "poller_daemon",
        sa.Column("identity", sa.String(), nullable=False),
        sa.Column("host", sa.String(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("heartbeat_at", TS, nullable=False),
        sa.Column("stopped_at", TS, nullable=True),
        sa.Column("lease_seconds", sa.Double(), nullable=False),
        sa.Column("polls_total", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("polls_last_minute", sa.Integer(), server_default=sa.text("0"),
                  nullable=False),
        sa.PrimaryKeyConstraint("identity", name="pk_poller_daemon"),
    )
    op.create_index("ix_poll_target_lease_owner", "poll_target", ["lease_owner"])


def downgrade() -> None:
    """Drop them again (recorded history is untouched)."""
    op.drop_index("ix_poll_target_lease_owner", table_name="poll_target")
    op.drop_table("poller_daemon")
