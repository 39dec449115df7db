"""What ``poller demo`` reads of its SQLite file while the daemon writes it.

Both read through a read-only ``sqlite3`` connection (``mode=ro``), so they never take a lock
the running daemon needs and never create a file:

* :func:`read_progress` counts what is recorded so far, for the progress lines;
* :func:`recorded_accounts` says which accounts a file holds, so that the demo replaces only a
  previous demo's database and leaves any other file alone.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from poller.errors import StoreUnavailable
from poller.model import Provider


@dataclass(frozen=True, slots=True)
class Progress:
    """Rows recorded so far."""

    conferences: int
    telnyx: int
    bandwidth: int
    transitions: int
    members: int
    member_events: int
    poll_errors: int
    not_found: int

    def line(self, elapsed: float) -> str:
        """One progress line."""
        return (f"[{elapsed:4.0f}s] conferences {self.conferences} (telnyx {self.telnyx}, "
                f"bandwidth {self.bandwidth}), transitions {self.transitions}, "
                f"members {self.members}, member events {self.member_events}, "
                f"poll errors {self.poll_errors} ({self.not_found} not found: not created yet "
                f"or gone)")


_PROGRESS_SQL = f"""
SELECT
    (SELECT count(*) FROM conference),
    (SELECT count(*) FROM conference WHERE provider = '{Provider.TELNYX.value}'),
    (SELECT count(*) FROM conference WHERE provider = '{Provider.BANDWIDTH.value}'),
    (SELECT count(*) FROM status_transition),
    (SELECT count(*) FROM member),
    (SELECT count(*) FROM member_event),
    (SELECT count(*) FROM poll_error),
    (SELECT count(*) FROM poll_error WHERE kind = 'not_found')
"""  # noqa: S608 (constants only)


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)


def read_progress(path: Path) -> Progress | None:
    """Counts of what is recorded, on a read-only connection (``None`` if it cannot be read)."""
    try:
        conn = _read_only(path)
    except sqlite3.Error:
        return None
    try:
        row = conn.execute(_PROGRESS_SQL).fetchone()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return Progress(*(int(value) for value in row))


def recorded_accounts(path: Path) -> set[str] | None:
    """The accounts of ``path``'s poll targets: empty for a file without tables, ``None`` for
    a SQLite database of something else (it has tables, but no ``poll_target``).

    Raises ``StoreUnavailable`` when ``path`` is not a SQLite database.
    """
    try:
        conn = _read_only(path)
        try:
            tables = {row[0] for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables and "poll_target" not in tables:
                return None
            return ({row[0] for row in conn.execute("SELECT DISTINCT account FROM poll_target")}
                    if tables else set())
        finally:
            conn.close()
    except sqlite3.Error as error:
        raise StoreUnavailable(f"{path} is not a SQLite database ({error})") from None
