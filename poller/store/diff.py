"""The pure core of the recorder: what one poll result changes in the stored history.

``plan_observation(conference, members, observation, last_seen=…)`` compares the stored view of a
conference (``None`` on first sight) and its members with a new observation, and returns a
:class:`HistoryPlan`: the new views, and the snapshot, status transitions and member events to
insert.
``last_seen`` is the target's ``poll_target.last_success_at``: the ``observed_at`` of the newest
observation recorded for it (``plan_target`` keeps it so). The rules (DESIGN §2, §3):

* an observation not newer than ``last_seen`` is ``STALE`` (replays and out-of-order results
  change nothing); one with the stored content hash is ``UNCHANGED`` and leaves the conference
  row as it is (write on change: only ``poll_target`` moves), unless it brings a conference
  marked gone back (``gone_at`` cleared, ``last_changed_at`` moved);
* every change of (status, provider_status) is a transition, the first sighting included, with
  the bracket ``(previous_observed_at, observed_at]`` where ``previous_observed_at`` is
  ``last_seen``, the last poll that saw the old state;
* ``conference.last_changed_at`` is the newest observation (or 404) that changed the row;
* completion time: Bandwidth ``completedTime`` ("provider"), else Telnyx ``updated_at`` of the
  first observation showing completed ("provider_updated_at"), else ``observed_at``;
* members join when first listed (time from Telnyx ``created_at``, else the observation), leave
  when Telnyx says ``left``, when they stop being listed in a complete member list
  ("disappeared"), or when the conference completes ("conference_completed"), and each ``left``
  event's ``detail`` names that source; a member listed again after leaving has "rejoined".
  ``joined`` and ``rejoined`` events carry the member's state at that moment in ``detail``
  (so mute and hold are not also reported as separate events then). Mute, hold, status and
  coaching changes are events too.

``plan_failure`` and ``plan_target`` cover failed polls (a 404 marks a seen conference gone,
nothing else is invented) and the per-target bookkeeping, poll and failure counters included.
A result not newer than the target's ``last_polled_at`` (``is_newer_poll``) is a replay or
arrived out of order: it counts nothing and changes no bookkeeping, except that an observation
newer than ``last_success_at`` (older than a failure recorded before it) is recorded and moves
``last_success_at``; a failure like that is ignored entirely. No I/O anywhere in this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from poller.model import (
    CompletedAtSource,
    ConferenceStatus,
    MemberState,
    Observation,
    PollFailure,
    PollResult,
)
from poller.store.rows import (
    ConferenceView,
    HistoryPlan,
    MemberView,
    Outcome,
    PlannedMemberEvent,
    PlannedSnapshot,
    PlannedTransition,
    TargetView,
)

LEFT = "left"
"""Telnyx participant status of a member who has left."""
MAX_ERROR_CHARS = 500


def plan_observation(conference: ConferenceView | None, members: Mapping[str, MemberView],
                     observation: Observation, *, last_seen: datetime | None,
                     content_hash: str | None = None) -> HistoryPlan:
    """What ``observation`` changes, given the stored ``conference`` and its ``members``.

    ``last_seen`` is the ``observed_at`` of the newest observation recorded for the target
    (``poll_target.last_success_at``; ``None`` before the first). ``content_hash`` may be passed
    when already computed (it is ``observation.content_hash()``).
    """
    at = observation.observed_at
    if conference is not None and last_seen is not None and at <= last_seen:
        return HistoryPlan(Outcome.STALE, conference, members)
    digest = content_hash or observation.content_hash()
    if conference is not None and digest == conference.content_hash:
        gone_at = _gone_at_after(conference, at)
        if gone_at != conference.gone_at:  # seen again after a 404: the row changes
            conference = replace(conference, gone_at=gone_at,
                                 last_changed_at=max(conference.last_changed_at, at))
        return HistoryPlan(Outcome.UNCHANGED, conference, members)

    view = _conference_view(conference, observation, digest)
    previous_at = last_seen if conference is not None else None
    transitions: tuple[PlannedTransition, ...] = ()
    if conference is None or (conference.status, conference.provider_status) != (
        view.status, view.provider_status
    ):
        transitions = (_transition(conference, view, observation, previous_at),)
    new_members, changed, events = _plan_members(view, members, observation, previous_at)
    snapshot = PlannedSnapshot(
        valid_from=observation.observed_at,
        content_hash=digest,
        status=view.status,
        member_count=sum(1 for m in new_members.values() if m.present),
        state=snapshot_state(observation),
        raw=observation.raw_payload(),
        warnings=observation.warnings,
    )
    return HistoryPlan(Outcome.CHANGED, view, new_members, changed, snapshot, transitions, events)


def _conference_view(previous: ConferenceView | None, observation: Observation, digest: str
                     ) -> ConferenceView:
    """The conference row after ``observation`` (completion fields included)."""
    state, at = observation.conference, observation.observed_at
    completed_at, source = None, None
    if state.is_completed:
        if previous is not None and previous.completed_at is not None:
            completed_at, source = previous.completed_at, previous.completed_at_source
        elif state.completed_at is not None:
            completed_at, source = state.completed_at, CompletedAtSource.PROVIDER.value
        elif state.updated_at is not None:
            completed_at, source = state.updated_at, CompletedAtSource.PROVIDER_UPDATED_AT.value
        else:
            completed_at, source = at, CompletedAtSource.OBSERVED.value
    duration = None
    if completed_at is not None and state.created_at is not None:
        duration = (completed_at - state.created_at).total_seconds()
    target = observation.target
    return ConferenceView(
        pk=previous.pk if previous is not None else None,
        provider=target.provider.value,
        account=target.account,
        conference_id=target.conference_id,
        name=state.name,
        status=state.status,
        provider_status=state.provider_status,
        region=state.region,
        created_at=state.created_at,
        updated_at=state.updated_at,
        expires_at=state.expires_at,
        completed_at=completed_at,
        completed_at_source=source,
        duration_seconds=duration,
        end_reason=state.end_reason,
        ended_by_call_control_id=state.ended_by_call_control_id,
        ended_by_call_session_id=state.ended_by_call_session_id,
        connection_id=state.connection_id,
        tag=state.tag,
        event_url=state.event_url,
        event_method=state.event_method,
        content_hash=digest,
        first_observed_at=previous.first_observed_at if previous is not None else at,
        last_changed_at=max(previous.last_changed_at, at) if previous is not None else at,
        gone_at=_gone_at_after(previous, at) if previous is not None else None,
    )


def _gone_at_after(conference: ConferenceView, at: datetime) -> datetime | None:
    """``gone_at`` once the conference is seen at ``at``: cleared, unless the 404 came later.

    A 404 newer than the observation (one delivered out of order) still stands.
    """
    if conference.gone_at is not None and conference.gone_at > at:
        return conference.gone_at
    return None


def _transition(previous: ConferenceView | None, view: ConferenceView, observation: Observation,
                previous_at: datetime | None) -> PlannedTransition:
    """The status transition from the stored status to the observed one."""
    state = observation.conference
    changed_at: datetime | None = None
    if view.status == ConferenceStatus.COMPLETED and state.completed_at is not None:
        changed_at = state.completed_at
    elif state.updated_at is not None and (
        previous is None or state.updated_at != previous.updated_at
    ):
        changed_at = state.updated_at
    elif previous is None and view.status == ConferenceStatus.INIT:
        changed_at = state.created_at
    return PlannedTransition(
        from_status=previous.status if previous is not None else None,
        to_status=view.status,
        from_provider_status=previous.provider_status if previous is not None else None,
        to_provider_status=view.provider_status,
        observed_at=observation.observed_at,
        previous_observed_at=previous_at,
        provider_changed_at=changed_at,
        end_reason=state.end_reason,
    )


def _plan_members(conference: ConferenceView, stored: Mapping[str, MemberView],
                  observation: Observation, previous_at: datetime | None
                  ) -> tuple[dict[str, MemberView], frozenset[str], tuple[PlannedMemberEvent, ...]]:
    """New member views, the members whose rows change, and their events in order."""
    at = observation.observed_at
    listed = observation.member_map()
    completed = conference.status == ConferenceStatus.COMPLETED
    views = dict(stored)
    changed: set[str] = set()
    events: list[PlannedMemberEvent] = []

    def event(member_id: str, kind: str, changed_at: datetime | None,
              detail: dict[str, Any] | None = None) -> None:
        events.append(PlannedMemberEvent(member_id, kind, at, previous_at, changed_at, detail))

    for member_id in sorted(set(listed) | set(stored)):
        old, new = stored.get(member_id), listed.get(member_id)
        if new is None:
            if old is not None and old.present and observation.members_complete:
                views[member_id] = replace(old, left_at=at, left_at_source="disappeared",
                                           last_observed_at=previous_at or old.last_observed_at)
                changed.add(member_id)
                event(member_id, "left", None, {"source": "disappeared"})
            continue
        provider_at = new.updated_at if old is None or new.updated_at != old.updated_at else None
        view = _member_view(old, new, at)
        rejoined = False
        if old is None:
            view = replace(view, joined_at=new.created_at or at,
                           joined_at_source="provider" if new.created_at else "observed")
            event(member_id, "joined", new.created_at, _initial_detail(new))
        elif not old.present and new.status != LEFT and not completed:
            view = replace(view, left_at=None, left_at_source=None)
            rejoined = True
            event(member_id, "rejoined", provider_at, _initial_detail(new))
        if old is not None and old.status != new.status and new.status != LEFT:
            event(member_id, "status_changed", provider_at, {"from": old.status, "to": new.status})
        # A rejoin's detail holds its mute and hold state, as a join's does: comparing with the
        # state it left in would add a second mute period, or miss one it rejoined in.
        _flag_events(old, new, provider_at, event, mute_and_hold=not rejoined)
        if new.status == LEFT and view.present:
            source = "provider" if new.updated_at else "observed"
            view = replace(view, left_at=new.updated_at or at, left_at_source=source)
            event(member_id, "left", new.updated_at, {"source": source})
        if old is None or view != old:
            views[member_id] = replace(view, last_observed_at=at)
            changed.add(member_id)

    if completed:
        closed_at = conference.completed_at or at
        provider_at = closed_at if conference.completed_at_source != "observed" else None
        for member_id, view in sorted(views.items()):
            if view.present:
                seen_at = at if member_id in listed else view.last_observed_at
                views[member_id] = replace(view, left_at=closed_at, last_observed_at=seen_at,
                                           left_at_source="conference_completed")
                changed.add(member_id)
                event(member_id, "left", provider_at, {"source": "conference_completed"})
    return views, frozenset(changed), tuple(events)


def _member_view(old: MemberView | None, new: MemberState, at: datetime) -> MemberView:
    """The member row with the observed fields (join/leave fields carried over)."""
    coaching = list(new.coaching) if new.coaching is not None else None
    observed: dict[str, Any] = {
        "call_control_id": new.call_control_id, "call_leg_id": new.call_leg_id,
        "status": new.status, "muted": new.muted, "on_hold": new.on_hold, "coaching": coaching,
        "end_conference_on_exit": new.end_conference_on_exit,
        "soft_end_conference_on_exit": new.soft_end_conference_on_exit,
        "member_url": new.member_url, "updated_at": new.updated_at,
    }
    if old is not None:
        if all(getattr(old, name) == value for name, value in observed.items()):
            return old
        return replace(old, **observed)
    return MemberView(pk=None, member_id=new.member_id, joined_at=None, joined_at_source=None,
                      left_at=None, left_at_source=None, first_observed_at=at,
                      last_observed_at=at, **observed)


def _flag_events(old: MemberView | None, new: MemberState, provider_at: datetime | None,
                 event: Any, *, mute_and_hold: bool = True) -> None:
    """Mute, hold and coaching events between the stored and the observed member.

    ``mute_and_hold=False`` (a rejoin) leaves out mute and hold: the ``rejoined`` event's
    ``detail`` already says what they are.
    """
    if old is None:
        return
    if mute_and_hold:
        if new.muted is True and old.muted is not True:
            event(new.member_id, "muted", provider_at)
        elif new.muted is False and old.muted is True:
            event(new.member_id, "unmuted", provider_at)
        if new.on_hold is True and old.on_hold is not True:
            event(new.member_id, "held", provider_at)
        elif new.on_hold is False and old.on_hold is True:
            event(new.member_id, "unheld", provider_at)
    before, after = list(old.coaching or ()), list(new.coaching or ())
    if before != after:
        event(new.member_id, "coaching_changed", provider_at, {"from": before, "to": after})


def _initial_detail(member: MemberState) -> dict[str, Any]:
    """What a member looked like when it (re)joined: its ``joined`` / ``rejoined`` detail."""
    return {"status": member.status, "muted": member.muted, "on_hold": member.on_hold,
            "coaching": list(member.coaching) if member.coaching is not None else None}


def snapshot_state(observation: Observation) -> dict[str, Any]:
    """The normalised state of an observation as a JSON document (times as ISO 8601)."""
    state = observation.conference
    members = sorted(observation.members, key=lambda m: m.member_id)
    return {
        "conference": _jsonable(state, exclude={"raw"}),
        "members": [_jsonable(m, exclude={"raw"}) for m in members],
        "members_complete": observation.members_complete,
    }


def _jsonable(value: object, *, exclude: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in value.__dataclass_fields__:  # type: ignore[attr-defined]
        if name in exclude:
            continue
        item = getattr(value, name)
        if isinstance(item, datetime):
            item = item.isoformat()
        elif isinstance(item, tuple):
            item = list(item)
        out[name] = item
    return out


def plan_failure(conference: ConferenceView | None, failure: PollFailure,
                 last_seen: datetime | None) -> ConferenceView | None:
    """The conference marked gone by a 404 after being seen, or ``None`` when nothing changes.

    ``last_seen`` is as in :func:`plan_observation`: a 404 older than the last observation
    marks nothing.
    """
    at = failure.observed_at
    if (
        failure.kind == "not_found"
        and conference is not None
        and conference.gone_at is None
        and (last_seen is None or at > last_seen)
    ):
        return replace(conference, gone_at=at, last_changed_at=max(conference.last_changed_at, at))
    return None


def is_newer_poll(target: TargetView, result: PollResult) -> bool:
    """True when ``result`` is newer than the target's last recorded poll (not a replay)."""
    return target.last_polled_at is None or result.observed_at > target.last_polled_at


def plan_target(target: TargetView, result: PollResult, outcome: Outcome | None
                ) -> TargetView | None:
    """The target's bookkeeping after ``result``; ``None`` when nothing of it changes.

    ``outcome`` is the observation's outcome (``None`` for failures). Every result newer than
    the last poll counts in ``poll_count``, a failure in ``failure_count`` too; one that is not
    newer (a replay, or out of order) counts nothing. ``last_success_at`` always follows the
    newest recorded observation, even one older than a failure recorded before it (out of
    order, but newer than the last success, so its changes were recorded): it is the staleness
    line and the bracket start of :func:`plan_observation`.
    """
    at = result.observed_at
    if not is_newer_poll(target, result):
        if isinstance(result, Observation) and outcome not in (None, Outcome.STALE) and (
            target.last_success_at is None or at > target.last_success_at
        ):
            return replace(target, last_success_at=at)
        return None
    if isinstance(result, Observation):
        label = "unchanged" if outcome is Outcome.UNCHANGED else "ok"
        return replace(target, last_polled_at=at, last_success_at=at, last_outcome=label,
                       consecutive_failures=0, last_error=None, not_found_since=None,
                       poll_count=target.poll_count + 1)
    not_found_since = target.not_found_since
    if result.kind == "not_found" and not_found_since is None:
        not_found_since = at
    return replace(target, last_polled_at=at, last_outcome=result.kind,
                   consecutive_failures=target.consecutive_failures + 1,
                   poll_count=target.poll_count + 1, failure_count=target.failure_count + 1,
                   last_error=f"{result.kind}: {result.message}"[:MAX_ERROR_CHARS],
                   not_found_since=not_found_since)
