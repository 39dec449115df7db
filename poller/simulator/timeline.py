"""Precomputed lives of simulated conferences, and their state at any moment.

A conference's whole life (creation, members' joins, changes and leaves, its ending) is drawn
once by ``poller.simulator.scenario`` into the frozen objects below. Every question the HTTP
layer asks — "what does this conference look like at time t?" — is then a pure function of the
timeline and ``t``, answered with a few binary searches: any moment can be queried in any order,
no stepping, no mutable state.

Times are integer milliseconds after the scenario epoch (``*_ms``), so equal instants compare
equal and render identically.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from enum import StrEnum

from poller.model import ConferenceStatus, Provider
from poller.simulator.config import EndCause


class MemberStatus(StrEnum):
    """A member's presence: the Telnyx participant ``status`` values."""

    JOINING = "joining"
    JOINED = "joined"
    LEFT = "left"


class ChangeKind(StrEnum):
    """What a member change did (ground-truth event kinds, besides joins and leaves)."""

    MUTED = "muted"
    UNMUTED = "unmuted"
    HELD = "held"
    UNHELD = "unheld"
    COACHING_CHANGED = "coaching_changed"


Coaching = tuple[str, ...] | None
"""Call IDs a member coaches / whispers to; ``None`` is Bandwidth's "never set" (JSON null)."""


@dataclass(frozen=True, slots=True)
class MemberChange:
    """One change of a present member, with the member's whole resulting state."""

    at_ms: int
    kind: ChangeKind
    muted: bool
    on_hold: bool
    coaching: Coaching


@dataclass(frozen=True, slots=True)
class MemberSnapshot:
    """A member as the provider shows it at one moment."""

    status: MemberStatus
    muted: bool
    on_hold: bool
    coaching: Coaching
    updated_ms: int
    """Time of the member's latest change (Telnyx participant ``updated_at``)."""


@dataclass(frozen=True, slots=True)
class MemberTimeline:
    """One member's stay in one conference."""

    member_id: str
    """Telnyx participant ``id``; Bandwidth ``callId``."""
    call_id: str
    """Telnyx ``call_control_id``; Bandwidth ``callId`` (what other members coach by)."""
    call_leg_id: str | None
    call_session_id: str | None
    joined_ms: int
    """The member appears (Telnyx ``created_at``, status ``joining``)."""
    connected_ms: int
    """Telnyx status becomes ``joined``; equals ``joined_ms`` for Bandwidth."""
    left_ms: int
    left_because_ended: bool
    """True when the member was still there when the conference ended (and was removed)."""
    muted: bool
    on_hold: bool
    coaching: Coaching
    """Initial state on joining."""
    end_conference_on_exit: bool
    soft_end_conference_on_exit: bool
    changes: tuple[MemberChange, ...]
    """Changes strictly between ``connected_ms`` and ``left_ms``, in time order."""

    def present_at(self, at_ms: int) -> bool:
        """Whether the member is in the conference (joining or joined) at ``at_ms``."""
        return self.joined_ms <= at_ms < self.left_ms

    def snapshot_at(self, at_ms: int) -> MemberSnapshot | None:
        """The member at ``at_ms``: ``None`` before it joined; status ``left`` after it left."""
        if at_ms < self.joined_ms:
            return None
        if at_ms < self.connected_ms:
            return MemberSnapshot(MemberStatus.JOINING, self.muted, self.on_hold,
                                  self.coaching, self.joined_ms)
        status = MemberStatus.JOINED if at_ms < self.left_ms else MemberStatus.LEFT
        position = bisect.bisect_right(self.changes, at_ms, key=_change_time)
        if position == 0:
            muted, on_hold, coaching, updated_ms = (
                self.muted, self.on_hold, self.coaching, self.connected_ms)
        else:
            change = self.changes[position - 1]
            muted, on_hold, coaching, updated_ms = (
                change.muted, change.on_hold, change.coaching, change.at_ms)
        if status is MemberStatus.LEFT:
            updated_ms = self.left_ms
        return MemberSnapshot(status, muted, on_hold, coaching, updated_ms)


def _change_time(change: MemberChange) -> int:
    return change.at_ms


def _join_time(member: MemberTimeline) -> int:
    return member.joined_ms


@dataclass(frozen=True, slots=True)
class ConferenceTimeline:
    """One conference's whole life at one provider."""

    provider: Provider
    conference_id: str
    name: str
    created_ms: int
    in_progress_ms: int
    """The first member is ``joined`` (Telnyx ``in_progress``)."""
    ended_ms: int
    end_cause: EndCause
    ended_by: MemberTimeline | None
    """The member whose leaving ended it (``all_left``: the last one; ``host_left``: the host)."""
    gone_ms: int
    """From here on the provider answers 404."""
    members: tuple[MemberTimeline, ...]
    """In joining order."""
    region: str | None = None
    """Telnyx data region (``US``, ``Europe``, …); ``None`` for Bandwidth."""
    tag: str | None = None

    def exists_at(self, at_ms: int) -> bool:
        """Whether the provider knows the conference at ``at_ms`` (created, not yet gone)."""
        return self.created_ms <= at_ms < self.gone_ms

    def status_at(self, at_ms: int) -> ConferenceStatus:
        """The normalised status at ``at_ms`` (meaningful while ``exists_at``)."""
        if at_ms < self.in_progress_ms:
            return ConferenceStatus.INIT
        if at_ms < self.ended_ms:
            return ConferenceStatus.IN_PROGRESS
        return ConferenceStatus.COMPLETED

    def updated_ms_at(self, at_ms: int) -> int:
        """Time of the conference's latest status change at ``at_ms`` (Telnyx ``updated_at``)."""
        if at_ms < self.in_progress_ms:
            return self.created_ms
        if at_ms < self.ended_ms:
            return self.in_progress_ms
        return self.ended_ms

    def listed_members_at(self, at_ms: int) -> tuple[MemberTimeline, ...]:
        """Members that joined by ``at_ms``, those that left included (Telnyx participants)."""
        return self.members[: bisect.bisect_right(self.members, at_ms, key=_join_time)]

    def active_members_at(self, at_ms: int) -> list[MemberTimeline]:
        """Members present at ``at_ms`` (Bandwidth ``activeMembers``)."""
        return [m for m in self.listed_members_at(at_ms) if at_ms < m.left_ms]
