"""Retention: forget what is only worth keeping for a while.

Three things grow without bound and lose their value with age:

* ``poll_error`` rows (one per failed poll): :func:`prune` deletes those older than
  ``poll_error_days``;
* ``webhook_event`` rows (the provider events received): with ``webhook_event_days`` set,
  those received longer ago than that are deleted once they have an outcome (what they did to
  the history stays; a ``pending`` one is never deleted);
* the raw provider payloads on ``conference_snapshot.raw``: with ``raw_payload_days`` set,
  :func:`prune` sets ``raw`` to NULL on *closed* snapshots (``valid_to`` set) that closed longer
  ago than that. The normalised ``state`` and every other history row stay, so reports are
  unaffected; the current snapshot of each conference always keeps its payload.

Work is done in batches of ``batch_size`` rows, each in its own short transaction, so pruning a
big table never holds locks for long (the daemon keeps writing meanwhile) and a crash loses at
most one batch of progress. ``poll_error`` is walked through its ``occurred_at`` index; snapshots
are walked in primary-key order from where the previous batch stopped, so every row is read
once however many batches there are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Engine, delete, null, select, update
from sqlalchemy.orm import InstrumentedAttribute

from poller.model import require_utc
from poller.store.database import store_errors
from poller.store.schema import ConferenceSnapshot, PollError, WebhookEvent

DEFAULT_BATCH_SIZE = 5_000
"""Rows per transaction: large enough to be quick, small enough to keep locks short."""


@dataclass(frozen=True, slots=True)
class PruneStats:
    """What one :func:`prune` run did."""

    poll_errors_deleted: int
    """``poll_error`` rows deleted."""
    raw_payloads_cleared: int
    """``conference_snapshot.raw`` payloads set to NULL (0 when raw pruning is off)."""
    poll_error_cutoff: datetime
    """Errors that occurred before this moment were deleted."""
    raw_payload_cutoff: datetime | None
    """Closed snapshots whose ``valid_to`` is before this lost their payload (None: off)."""
    webhook_events_deleted: int = 0
    """``webhook_event`` rows deleted (0 when event pruning is off)."""


def prune(
    engine: Engine,
    *,
    poll_error_days: float,
    raw_payload_days: float | None,
    now: datetime,
    batch_size: int = DEFAULT_BATCH_SIZE,
    webhook_event_days: float | None = None,
) -> PruneStats:
    """Delete old ``poll_error`` rows and, if asked, old raw snapshot payloads (see the module).

    ``now`` is an aware UTC datetime (the caller's clock); ages are in days and may be
    fractional. Raises ``ValueError`` for negative ages or a non-positive batch size, and
    ``StoreUnavailable`` when the database cannot be reached.
    """
    require_utc(now, "now")
    if poll_error_days < 0:
        raise ValueError(f"poll_error_days must be >= 0, got {poll_error_days}")
    if raw_payload_days is not None and raw_payload_days < 0:
        raise ValueError(f"raw_payload_days must be >= 0, got {raw_payload_days}")
    if webhook_event_days is not None and webhook_event_days < 0:
        raise ValueError(f"webhook_event_days must be >= 0, got {webhook_event_days}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")

    error_cutoff = now - timedelta(days=poll_error_days)
    raw_cutoff = None if raw_payload_days is None else now - timedelta(days=raw_payload_days)
    with store_errors("pruning old history"):
        deleted = _delete_poll_errors(engine, error_cutoff, batch_size)
        cleared = 0 if raw_cutoff is None else _clear_raw_payloads(engine, raw_cutoff, batch_size)
        events = 0 if webhook_event_days is None else _delete_events(
            engine, now - timedelta(days=webhook_event_days), batch_size)
    return PruneStats(
        poll_errors_deleted=deleted,
        raw_payloads_cleared=cleared,
        poll_error_cutoff=error_cutoff,
        raw_payload_cutoff=raw_cutoff,
        webhook_events_deleted=events,
    )


def _delete_events(engine: Engine, cutoff: datetime, batch_size: int) -> int:
    """Delete ``webhook_event`` rows received before ``cutoff`` that have an outcome."""
    return _delete_oldest(engine, WebhookEvent, WebhookEvent.received_at, batch_size,
                          WebhookEvent.received_at < cutoff, WebhookEvent.outcome != "pending")


def _delete_poll_errors(engine: Engine, cutoff: datetime, batch_size: int) -> int:
    """Delete ``poll_error`` rows older than ``cutoff``, oldest first, a batch at a time."""
    return _delete_oldest(engine, PollError, PollError.occurred_at, batch_size,
                          PollError.occurred_at < cutoff)


def _delete_oldest(engine: Engine, model: type[PollError] | type[WebhookEvent],
                   age: InstrumentedAttribute[datetime], batch_size: int,
                   *where: ColumnElement[bool]) -> int:
    """Delete the rows of ``model`` matching ``where``, oldest (by ``age``) first, a batch
    per transaction; how many."""
    total = 0
    while True:
        oldest = select(model.id).where(*where).order_by(age).limit(batch_size)
        with engine.begin() as conn:
            ids = list(conn.scalars(oldest))
            if ids:
                conn.execute(delete(model).where(model.id.in_(ids)))
        total += len(ids)
        if len(ids) < batch_size:
            return total


def _clear_raw_payloads(engine: Engine, cutoff: datetime, batch_size: int) -> int:
    """NULL the raw payload of snapshots closed before ``cutoff``, walking ids in order."""
    total = 0
    after_id = 0
    while True:
        batch = (
            select(ConferenceSnapshot.id)
            .where(
                ConferenceSnapshot.id > after_id,
                ConferenceSnapshot.valid_to.is_not(None),
                ConferenceSnapshot.valid_to < cutoff,
                ConferenceSnapshot.raw.is_not(None),
            )
            .order_by(ConferenceSnapshot.id)
            .limit(batch_size)
        )
        with engine.begin() as conn:
            ids = list(conn.scalars(batch))
            if ids:
                # null(), not None: the JSON type would store None as the JSON text 'null'.
                conn.execute(
                    update(ConferenceSnapshot)
                    .where(ConferenceSnapshot.id.in_(ids))
                    .values(raw=null())
                )
        total += len(ids)
        if len(ids) < batch_size:
            return total
        after_id = ids[-1]
