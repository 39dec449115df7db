"""Builders of normalised model objects for tests (``from factories import …``).

Times are offsets in seconds from ``T0`` so tests read as a timeline::

    obs = telnyx_observation(at=10, status="in_progress", members=[telnyx_member("p1")])

Every builder returns the frozen model objects of ``poller.model``, with ``raw`` payloads shaped
like the provider's JSON, so they go straight into ``Recorder.record``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from poller.model import (
    ConferenceState,
    MemberState,
    Observation,
    PollFailure,
    Provider,
    TargetKey,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
"""The start of every test timeline."""

TELNYX_ACCOUNT = "telnyx-main"
BANDWIDTH_ACCOUNT = "bandwidth-main"


def at(seconds: float) -> datetime:
    """``T0`` plus ``seconds``."""
    return T0 + timedelta(seconds=seconds)


def _time(value: float | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return at(value)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def telnyx_target(conference_id: str = "conf-1", account: str = TELNYX_ACCOUNT,
                  region: str | None = None) -> TargetKey:
    """A Telnyx poll target."""
    return TargetKey(Provider.TELNYX, account, conference_id, region)


def bandwidth_target(conference_id: str = "conf-bw-1", account: str = BANDWIDTH_ACCOUNT
                     ) -> TargetKey:
    """A Bandwidth poll target."""
    return TargetKey(Provider.BANDWIDTH, account, conference_id)


def telnyx_member(member_id: str, *, status: str | None = "joined", muted: bool = False,
                  on_hold: bool = False, coaching: Iterable[str] = (),
                  created_at: float | datetime | None = None,
                  updated_at: float | datetime | None = None) -> MemberState:
    """A Telnyx participant."""
    created, updated = _time(created_at), _time(updated_at)
    whisper = tuple(coaching)
    raw = {
        "record_type": "participant", "id": member_id, "call_control_id": f"cc-{member_id}",
        "call_leg_id": f"leg-{member_id}", "status": status, "muted": muted,
        "on_hold": on_hold, "whisper_call_control_ids": list(whisper),
        "end_conference_on_exit": False, "soft_end_conference_on_exit": False,
        "created_at": _iso(created), "updated_at": _iso(updated),
    }
    return MemberState(
        member_id=member_id, call_control_id=f"cc-{member_id}", call_leg_id=f"leg-{member_id}",
        status=status, muted=muted, on_hold=on_hold, coaching=whisper,
        end_conference_on_exit=False, soft_end_conference_on_exit=False,
        created_at=created, updated_at=updated, raw=raw,
    )


def bandwidth_member(call_id: str, *, mute: bool = False, hold: bool = False,
                     coaching: Iterable[str] | None = None, conference_id: str = "conf-bw-1"
                     ) -> MemberState:
    """A Bandwidth active member (no status, no times)."""
    coach = tuple(coaching) if coaching is not None else None
    url = f"https://voice.example/conferences/{conference_id}/members/{call_id}"
    raw = {"callId": call_id, "conferenceId": conference_id, "memberUrl": url, "mute": mute,
           "hold": hold, "callIdsToCoach": list(coach) if coach is not None else None}
    return MemberState(member_id=call_id, call_control_id=call_id, muted=mute, on_hold=hold,
                       coaching=coach, member_url=url, raw=raw)


def telnyx_observation(*, at: float | datetime = 0, target: TargetKey | None = None,
                       status: str = "in_progress", members: Iterable[MemberState] = (),
                       created_at: float | datetime | None = -60,
                       updated_at: float | datetime | None = None,
                       end_reason: str | None = None, members_complete: bool = True,
                       **extra: Any) -> Observation:
    """One successful Telnyx poll (``at`` is the observation time)."""
    target = target or telnyx_target()
    observed, created, updated = _time(at), _time(created_at), _time(updated_at)
    assert observed is not None
    raw = {"record_type": "conference", "id": target.conference_id, "name": "standup",
           "status": status, "created_at": _iso(created), "updated_at": _iso(updated),
           "end_reason": end_reason, "region": "sv1"}
    state = ConferenceState(
        conference_id=target.conference_id, status=status, provider_status=status,
        name="standup", region="sv1", created_at=created, updated_at=updated,
        end_reason=end_reason, record_type="conference", raw=raw, **extra,
    )
    return Observation(target=target, observed_at=observed, conference=state,
                       members=tuple(members), members_complete=members_complete)


def bandwidth_observation(*, at: float | datetime = 0, target: TargetKey | None = None,
                          members: Iterable[MemberState] = (),
                          created_at: float | datetime | None = -60,
                          completed_at: float | datetime | None = None) -> Observation:
    """One successful Bandwidth poll; the status follows the provider mapping."""
    target = target or bandwidth_target()
    members = tuple(members)
    observed, created, completed = _time(at), _time(created_at), _time(completed_at)
    assert observed is not None
    status = "completed" if completed else ("in_progress" if members else "init")
    raw = {"id": target.conference_id, "name": "daily", "createdTime": _iso(created),
           "completedTime": _iso(completed), "activeMembers": [m.raw for m in members]}
    state = ConferenceState(conference_id=target.conference_id, status=status, name="daily",
                            created_at=created, completed_at=completed, raw=raw)
    return Observation(target=target, observed_at=observed, conference=state, members=members)


def failure(*, at: float | datetime = 0, target: TargetKey | None = None,
            kind: str = "not_found", http_status: int | None = 404,
            message: str = "conference not found") -> PollFailure:
    """One failed poll."""
    observed = _time(at)
    assert observed is not None
    return PollFailure(target=target or telnyx_target(), observed_at=observed, kind=kind,
                       message=message, http_status=http_status)
