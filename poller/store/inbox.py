"""The inbox of provider events: ``webhook_event`` rows, stored before a request is answered.

The receiver (``poller.daemon.webhooks``) calls :func:`store_event` for each event that passed
its checks; the request is answered only once the transaction has committed, so an event the
provider was told we have is on disk whatever happens next. A repeated delivery (same provider,
account and event key) adds nothing but one to ``deliveries``: storing is idempotent.

An event starts ``pending`` when poller applies its type and it names what it is about (its
conference, its time and, for a member's event, the call), else ``ignored`` with the reason in
``detail``: kept as evidence, never applied. :mod:`poller.store.reconcile` applies the pending
ones once polling has looked past them.

A new end event (Telnyx ``conference.ended``, Bandwidth ``conferenceCompleted``) also makes its
conference due now, in the same transaction, so the poll that brings the authoritative status,
end reason and completion time comes at once instead of at the next interval (an active target
that no daemon holds; one due sooner keeps its time).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, select, update

from poller.model import EventKind, ProviderEvent
from poller.store.database import insert_ignoring_duplicates, store_errors
from poller.store.schema import Base, PollTarget, WebhookEvent

PENDING = "pending"
IGNORED = "ignored"

_TABLE = Base.metadata.tables["webhook_event"]
SKEW_SECONDS = 2.0
"""How far the provider's clock may be from poller's: an event is applied once its conference
was polled this long after the event's time (``poller.store.reconcile``)."""
_UNIQUE = ("provider", "account", "event_key")
_MEMBER_KINDS = frozenset({EventKind.MEMBER_JOINED, EventKind.MEMBER_LEFT})


def first_outcome(event: ProviderEvent) -> tuple[str, str | None]:
    """``(outcome, detail)`` of a newly stored event (see the module docstring); a pending
    one's detail is what the parser noticed (a timestamp without a time zone …), if anything."""
    if event.kind is None:
        return IGNORED, f"{event.event_type}: not an event type poller applies"
    missing = [name for name, value in (("conference ID", event.conference_id),
                                        ("time", event.occurred_at)) if value is None]
    if event.kind in _MEMBER_KINDS and event.call_id is None:
        missing.append("call ID")
    if missing:
        return IGNORED, f"{event.event_type} without its {' or '.join(missing)}"
    return PENDING, "; ".join(event.warnings) or None


def store_event(engine: Engine, account: str, event: ProviderEvent, body: str,
                received_at: datetime) -> bool:
    """Store one event durably; ``True`` when it is new, ``False`` for a repeated delivery."""
    outcome, detail = first_outcome(event)
    with store_errors("storing a provider event"), engine.begin() as conn:
        inserted = conn.execute(insert_ignoring_duplicates(conn, _TABLE, _UNIQUE).values(
            provider=event.provider.value, account=account, event_key=event.key,
            event_type=event.event_type,
            kind=event.kind.value if event.kind is not None else None,
            conference_id=event.conference_id,
            call_id=event.call_id, occurred_at=event.occurred_at, received_at=received_at,
            apply_after=(event.occurred_at + timedelta(seconds=SKEW_SECONDS)
                         if outcome == PENDING and event.occurred_at is not None else None),
            deliveries=1, body=body, outcome=outcome, detail=detail
        ).returning(_TABLE.c.id)).first()
        if inserted is not None:
            if event.kind is EventKind.CONFERENCE_ENDED and outcome == PENDING:
                conn.execute(update(PollTarget).where(
                    PollTarget.account == account,
                    PollTarget.conference_id == event.conference_id,
                    PollTarget.state == "active", PollTarget.lease_owner.is_(None),
                    PollTarget.next_poll_at > received_at).values(next_poll_at=received_at))
            return True
        conn.execute(update(WebhookEvent).where(
            WebhookEvent.provider == event.provider.value, WebhookEvent.account == account,
            WebhookEvent.event_key == event.key).values(deliveries=WebhookEvent.deliveries + 1))
        return False


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One ``webhook_event`` row, as reports and tests read it."""

    provider: str
    account: str
    event_key: str
    event_type: str
    kind: str | None
    conference_id: str | None
    call_id: str | None
    occurred_at: datetime | None
    received_at: datetime
    deliveries: int
    body: str
    outcome: str
    detail: str | None


def stored_events(engine: Engine, account: str | None = None) -> list[StoredEvent]:
    """Every stored event (of ``account``), oldest received first."""
    query = select(WebhookEvent).order_by(WebhookEvent.id)
    if account is not None:
        query = query.where(WebhookEvent.account == account)
    with store_errors("reading provider events"), engine.connect() as conn:
        return [StoredEvent(row.provider, row.account, row.event_key, row.event_type, row.kind,
                            row.conference_id, row.call_id, row.occurred_at, row.received_at,
                            row.deliveries, row.body, row.outcome, row.detail)
                for row in conn.execute(query)]
