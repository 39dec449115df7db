"""Row values: stored rows as the diff and the scheduler see them, and planned changes.

``ConferenceView``, ``MemberView`` and ``TargetView`` mirror rows of ``conference``, ``member``
and ``poll_target``: their field names are the column names, so a row becomes a view with
``View.from_row(row)`` and a view becomes an UPDATE with ``view.values()``. The ``Planned*``
types are the history rows one observation produces, before the recorder numbers them (seq)
and gives them their foreign keys. ``TargetState`` is what a claim reads of a target for the
scheduling decision, and ``ScheduleUpdate`` that decision, written with the poll's rows.
Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from enum import StrEnum
from typing import Any, Self

from poller.model import JSON, require_utc


class Outcome(StrEnum):
    """What the recorder made of one observation."""

    CHANGED = "changed"
    """A new state: snapshot, maybe transitions and member events."""
    UNCHANGED = "unchanged"
    """Same content hash as the stored state: no history row, only ``poll_target`` moves."""
    STALE = "stale"
    """Not newer than what is stored (a replay, or out of order): ignored entirely."""


_COLUMNS: dict[type, tuple[str, ...]] = {}
"""Each view class's column names (:meth:`_Row.columns`)."""


class _Row:
    """Conversions between a view and the row of the same column names."""

    __slots__ = ()

    @classmethod
    def columns(cls) -> tuple[str, ...]:
        """The column names the view carries (its fields except ``pk``; worked out once per
        class: the recorder asks for every row it loads and writes)."""
        names = _COLUMNS.get(cls)
        if names is None:
            names = _COLUMNS[cls] = tuple(
                f.name for f in fields(cls) if f.name != "pk")  # type: ignore[arg-type]
        return names

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Self:
        """The view of a database row (``id`` becomes ``pk``)."""
        values = {name: row[name] for name in cls.columns()}
        factory: Any = cls  # the concrete dataclass, whose fields are the columns
        return factory(pk=row["id"], **values)  # type: ignore[no-any-return]

    def values(self) -> dict[str, Any]:
        """The column values to write (without ``pk``)."""
        return {name: getattr(self, name) for name in self.columns()}


@dataclass(frozen=True, slots=True)
class ConferenceView(_Row):
    """A ``conference`` row: the current view of one conference."""

    pk: int | None
    provider: str
    account: str
    conference_id: str
    name: str | None
    status: str
    provider_status: str | None
    region: str | None
    created_at: datetime | None
    updated_at: datetime | None
    expires_at: datetime | None
    completed_at: datetime | None
    completed_at_source: str | None
    duration_seconds: float | None
    end_reason: str | None
    ended_by_call_control_id: str | None
    ended_by_call_session_id: str | None
    connection_id: str | None
    tag: str | None
    event_url: str | None
    event_method: str | None
    content_hash: str | None
    first_observed_at: datetime
    last_changed_at: datetime
    gone_at: datetime | None


@dataclass(frozen=True, slots=True)
class MemberView(_Row):
    """A ``member`` row: the current view of one member of one conference."""

    pk: int | None
    member_id: str
    call_control_id: str | None
    call_leg_id: str | None
    status: str | None
    muted: bool | None
    on_hold: bool | None
    coaching: list[str] | None
    end_conference_on_exit: bool | None
    soft_end_conference_on_exit: bool | None
    member_url: str | None
    updated_at: datetime | None
    joined_at: datetime | None
    joined_at_source: str | None
    left_at: datetime | None
    left_at_source: str | None
    first_observed_at: datetime
    last_observed_at: datetime

    @property
    def present(self) -> bool:
        """True while the member is in the conference (no ``left_at``)."""
        return self.left_at is None


@dataclass(frozen=True, slots=True)
class TargetView(_Row):
    """The recorder's part of a ``poll_target`` row (the outcome of the latest poll).

    ``last_success_at`` is the ``observed_at`` of the newest observation recorded for the
    target: the staleness line for observations and the start of the next change's bracket.
    """

    pk: int | None
    last_polled_at: datetime | None
    last_success_at: datetime | None
    last_outcome: str | None
    consecutive_failures: int
    poll_count: int
    failure_count: int
    last_error: str | None
    not_found_since: datetime | None


class RetiredReason:
    """``poll_target.retired_reason`` values."""

    COMPLETED = "completed"
    GONE = "gone"
    NEVER_FOUND = "never_found"
    REMOVED = "removed"


@dataclass(frozen=True, slots=True)
class TargetState:
    """What the store knew of a target before a poll: the inputs of the next decision."""

    last_status: str | None = None
    """The conference's stored status (``None``: never seen)."""
    consecutive_failures: int = 0
    """Failed polls since the last success (any kind)."""
    not_found_since: datetime | None = None
    """First 404 of the current run of 404s (no success since)."""
    not_found_count: int = 0
    """404s recorded since ``not_found_since``."""

    def __post_init__(self) -> None:
        require_utc(self.not_found_since, "TargetState.not_found_since")

    @property
    def ever_seen(self) -> bool:
        """Whether the conference has been observed at least once."""
        return self.last_status is not None


@dataclass(frozen=True, slots=True)
class ScheduleUpdate:
    """The daemon's scheduling decision for a target, written with the poll's rows."""

    next_poll_at: datetime
    state: str | None = None
    """``active`` or ``retired``; ``None`` leaves it as it is."""
    retired_reason: str | None = None
    """completed / gone / never_found / removed (with ``state="retired"``)."""
    release_lease: bool = True
    """Clear ``lease_owner`` / ``lease_expires_at``: the poller that claimed the target is done
    with it, so another may claim it when it is next due."""


@dataclass(frozen=True, slots=True)
class PlannedSnapshot:
    """A new ``conference_snapshot`` row (the previous current one closes at ``valid_from``)."""

    valid_from: datetime
    content_hash: str
    status: str
    member_count: int
    state: dict[str, Any]
    raw: JSON
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PlannedTransition:
    """A new ``status_transition`` row, before numbering."""

    from_status: str | None
    to_status: str
    from_provider_status: str | None
    to_provider_status: str | None
    observed_at: datetime
    previous_observed_at: datetime | None
    provider_changed_at: datetime | None
    end_reason: str | None


@dataclass(frozen=True, slots=True)
class PlannedMemberEvent:
    """A new ``member_event`` row, before numbering."""

    member_id: str
    kind: str
    observed_at: datetime
    previous_observed_at: datetime | None
    provider_changed_at: datetime | None
    detail: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class HistoryPlan:
    """Everything one observation changes, given the stored state before it."""

    outcome: Outcome
    conference: ConferenceView
    """The conference's view after the observation (unchanged when ``STALE``)."""
    members: Mapping[str, MemberView]
    """Every member's view after the observation, by ``member_id``."""
    changed_members: frozenset[str] = frozenset()
    """Members whose row must be written (new ones included)."""
    snapshot: PlannedSnapshot | None = None
    transitions: tuple[PlannedTransition, ...] = ()
    member_events: tuple[PlannedMemberEvent, ...] = ()
