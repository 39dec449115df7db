"""The recorder: the only module that writes conference history.

``Recorder(engine).record(batch)`` applies a batch of poll results (observations and failures)
in **one transaction** and returns :class:`RecordStats`. What it writes (DESIGN §3):

* ``conference``: the current view, inserted on first sight and updated only when it changes
  (a new state, ``gone_at`` when a seen conference answers 404 or cleared when it is seen
  again; completion time, its source and ``duration_seconds`` on completion), with
  ``last_changed_at``; an unchanged poll does not touch it;
* ``conference_snapshot``, ``status_transition``, ``member``, ``member_event``: only when the
  observation's content hash differs from the stored one (rules in ``poller.store.diff``);
* ``poll_target`` bookkeeping for every result (the row is created if missing), the
  ``poll_count`` / ``failure_count`` counters in that same row update, plus the daemon's
  scheduling decision when given, and a ``poll_error`` row per failure. Its
  ``last_success_at`` (the newest recorded observation) is where the next change's bracket
  ``(previous_observed_at, observed_at]`` starts. A batch of unchanged polls therefore costs
  one batched UPDATE of ``poll_target`` and nothing else (DESIGN §3, invariant 1).

Unchanged polls of targets this recorder wrote before take a fast path: one guarded UPDATE
each, in one executemany, with nothing read back (:mod:`poller.store.unchanged`); when a guard
finds its target not as this recorder left it, the transaction is rolled back and the batch
goes the full path (:mod:`poller.store.batch`), which loads and locks what it touches.

Exactly-once: results are applied in (account, conference_id, observed_at) order; an
observation not newer than the target's ``last_success_at`` is ignored (replays, out-of-order
delivery, two pollers), and a result not newer than its ``last_polled_at`` counts in no
counter (a failure like that leaves no trace at all); rows are locked in one global order
(targets first) within each path, the fast path's before the full path's, and a transaction
that loses a race (unique violation, serialization failure, deadlock, an insert conflict) is
retried whole, a few times, before
:class:`poller.errors.StoreDown` is raised. Unreachable databases raise it at once.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, exc

from poller.errors import StoreDown
from poller.model import Observation, PollResult, TargetKey, utc_now
from poller.store.batch import BatchWriter, InsertConflict
from poller.store.database import store_errors
from poller.store.rows import ScheduleUpdate
from poller.store.unchanged import FastPathMissed, UnchangedPolls

log = logging.getLogger(__name__)

WAITED_OUT_SECONDS = 1.0
"""A SQLite lock error after this long came after the busy timeout: another process holds
the file (a lock error at once is a lost race between two transactions, worth retrying)."""

RETRYABLE_SQLSTATES = frozenset({
    "23505",  # unique_violation: a racing transaction inserted the same row first
    "40001",  # serialization_failure
    "40P01",  # deadlock_detected
})


@dataclass(slots=True)
class RecordStats:
    """What one ``record`` call did: rows written per table, and what each result was."""

    inserted: Counter[str] = field(default_factory=Counter)
    """Rows inserted, by table name."""
    updated: Counter[str] = field(default_factory=Counter)
    """Rows updated, by table name (one per parameter set of a batched UPDATE)."""
    outcomes: Counter[str] = field(default_factory=Counter)
    """Results by outcome: ``changed``, ``unchanged``, ``stale`` (ignored), ``failure``."""
    attempts: int = 1
    """Transactions it took (more than one after a lost race)."""
    unchanged_by_provider: Counter[str] = field(default_factory=Counter)
    """``unchanged`` outcomes by provider (``Provider.value``)."""
    transitions_by_status: Counter[str] = field(default_factory=Counter)
    """Status transitions recorded, by ``to_status``."""
    member_events_by_kind: Counter[str] = field(default_factory=Counter)
    """Member events recorded, by ``kind``."""
    warnings: list[tuple[TargetKey, str]] = field(default_factory=list)
    """The parser warnings stored with new snapshots (``conference_snapshot.warnings``)."""

    @property
    def transitions(self) -> int:
        """Status transitions recorded."""
        return self.inserted["status_transition"]

    @property
    def member_events(self) -> int:
        """Member events recorded."""
        return self.inserted["member_event"]

    @property
    def unchanged(self) -> int:
        """Observations equal to the stored state (no history written)."""
        return self.outcomes["unchanged"]

    @property
    def history_rows(self) -> int:
        """Rows inserted into the history tables (everything but targets and errors)."""
        return sum(n for table, n in self.inserted.items()
                   if table not in ("poll_target", "poll_error"))


class Recorder:
    """Writes batches of poll results into the history tables (see the module docstring)."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utc_now,
                 max_attempts: int = 5, fast_unchanged: bool = True) -> None:
        self.engine = engine
        self.clock = clock
        """Stamps rows the recorder creates itself (``poll_target.created_at``)."""
        self.max_attempts = max_attempts
        self.unchanged = UnchangedPolls(enabled=fast_unchanged)
        """The fast path for unchanged polls (:mod:`poller.store.unchanged`; off: every
        poll takes the full path, as the tests that compare the two do)."""

    def record(self, batch: Sequence[PollResult],
               schedule: Mapping[TargetKey, ScheduleUpdate] | None = None, *,
               owner: str | None = None) -> RecordStats:
        """Apply ``batch`` in one transaction.

        ``schedule`` carries the daemon's decision per result target (next poll time, retirement,
        lease release); it is written in the same transaction, but only to targets ``owner``
        still leases (or no one does): a daemon that stalled past its lease never moves or
        frees a target another daemon has taken over (``owner=None``: to any target). Raises
        ``StoreUnavailable`` when the database cannot be reached, or the batch still loses
        races after ``max_attempts`` tries.
        """
        ordered = sorted(batch, key=lambda r: (r.target.account, r.target.conference_id,
                                               r.observed_at))
        if not ordered:
            return RecordStats()
        schedule = schedule or {}
        fast, rest = self.unchanged.split(ordered, schedule)
        with store_errors("recording poll results"):  # translates what is not retried
            for attempt in range(1, self.max_attempts + 1):
                started = time.monotonic()
                try:
                    with self.engine.begin() as conn:
                        writer = BatchWriter(conn, self.clock(), schedule, owner)
                        self.unchanged.write(conn, fast, schedule, owner)
                        if rest:
                            writer.apply(rest)
                    self.unchanged.learned(fast, rest, writer.final_targets,
                                           writer.final_conferences, schedule)
                    return self._stats(writer, fast, attempt)
                except FastPathMissed as missed:
                    log.debug("recording poll results on the full path: %s", missed)
                    self.unchanged.forget(fast)
                    fast, rest = [], ordered
                except (InsertConflict, exc.DBAPIError) as error:
                    waited = time.monotonic() - started >= WAITED_OUT_SECONDS
                    if not is_retryable(error) or (waited and is_sqlite_busy(error)):
                        raise  # a lock held past the busy timeout: the store is away
                    if attempt == self.max_attempts:
                        raise StoreDown(
                            f"recording poll results: still conflicting after {attempt} attempts"
                        ) from error
            raise StoreDown(f"recording poll results: no transaction in {self.max_attempts} "
                            "attempts")  # a miss of the fast path took the last one

    @staticmethod
    def _stats(writer: BatchWriter, fast: Sequence[Observation], attempt: int) -> RecordStats:
        """The full path's counts, plus the polls the fast path recorded as unchanged."""
        if fast:
            writer.outcomes["unchanged"] += len(fast)
            writer.updated["poll_target"] += len(fast)
            writer.unchanged_by_provider.update(r.target.provider.value for r in fast)
        return RecordStats(writer.inserted, writer.updated, writer.outcomes, attempt,
                           writer.unchanged_by_provider, writer.transitions_by_status,
                           writer.member_events_by_kind, writer.warnings)


def is_sqlite_busy(error: BaseException) -> bool:
    """True for SQLite's "database is locked" / "busy"."""
    original = getattr(error, "orig", None)
    return isinstance(original, sqlite3.OperationalError) and (
        "locked" in str(original) or "busy" in str(original))


def is_retryable(error: BaseException) -> bool:
    """True for errors a fresh transaction can overcome: lost races and lock conflicts."""
    if isinstance(error, InsertConflict):
        return True
    if not isinstance(error, exc.DBAPIError):
        return False
    original = error.orig
    if getattr(original, "sqlstate", None) in RETRYABLE_SQLSTATES:
        return True
    if isinstance(original, sqlite3.IntegrityError):
        return "UNIQUE" in str(original)
    return is_sqlite_busy(error)
