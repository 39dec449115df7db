"""The warnings of each distinct state: ``conference_snapshot.warnings``.

What a parser noticed but did not refuse (an unknown enum value, a timestamp without a time
zone, an implausible date, a participant list cut at the page cap) is stored with the snapshot
of the state it was seen in, as a JSON list of short texts (NULL: none). Warnings follow from
the provider's payload, so they change only when the state does: storing them with the
snapshot keeps an unchanged poll free of writes.

Only a new nullable column: no table is rebuilt, so SQLite needs no batch mode and the views
stay.

Revision ID: 0004_snapshot_warnings
Revises: 0003_daemons
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004_snapshot_warnings"
down_revision: str | Sequence[str] | None = "0003_daemons"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSONDOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    """Add ``conference_snapshot.warnings``."""
    op.add_column("conference_snapshot", sa.Column("warnings", JSONDOC, nullable=True))


def downgrade() -> None:
    """Drop it again (the rest of the history is untouched). A plain ``DROP COLUMN`` (SQLite
    has it since 3.35, which poller needs anyway): batch mode would rebuild the table under
    the reporting views that read it."""
    op.drop_column("conference_snapshot", "warnings")
