"""The events each provider would push for a simulated conference, with their spec's bodies.

For every ground-truth moment of a conference's life the simulator builds the request its
provider would send (``../shared/research/webhooks.md``):

* **Telnyx** (Call Control webhooks, API v2): ``conference.created`` at creation,
  ``conference.participant.joined`` when a participant is joined (its status turns ``joined``),
  ``conference.participant.left`` when it leaves (those removed by the end too), and
  ``conference.ended`` with ``reason`` ``all_left`` / ``host_left`` / ``time_exceeded`` (the
  webhook's enum has no ``ended_via_api``: such an end comes without a reason). The envelope is
  ``{"data": {"record_type": "event", "id", "event_type", "occurred_at", "payload"}, "meta"}``
  with ``occurred_at`` beside the payload for participant events and inside it for the others,
  as the spec's examples have it; ``data.id`` is a UUID derived from the event, so a repeated
  delivery repeats it.
* **Bandwidth** (conference callbacks): ``conferenceCreated``, ``conferenceMemberJoin``,
  ``conferenceMemberExit`` and ``conferenceCompleted`` (when the last member leaves), flat JSON
  with ``eventType``, ``eventTime``, ``conferenceId``, ``name`` and, for members, ``callId``,
  ``from`` and ``to``.

Times are the timeline's, to the millisecond: exactly what the ground truth says.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from poller.model import EventKind, Provider
from poller.simulator.config import EndCause
from poller.simulator.timeline import ConferenceTimeline, MemberTimeline
from poller.simulator.world import Simulator

_NAMESPACE = uuid.UUID("6f1c1e0e-58a4-4d53-9b0e-6c1cf1b2a0d1")
TELNYX_TYPES = {
    EventKind.CONFERENCE_CREATED: "conference.created",
    EventKind.MEMBER_JOINED: "conference.participant.joined",
    EventKind.MEMBER_LEFT: "conference.participant.left",
    EventKind.CONFERENCE_ENDED: "conference.ended",
}
BANDWIDTH_TYPES = {
    EventKind.CONFERENCE_CREATED: "conferenceCreated",
    EventKind.MEMBER_JOINED: "conferenceMemberJoin",
    EventKind.MEMBER_LEFT: "conferenceMemberExit",
    EventKind.CONFERENCE_ENDED: "conferenceCompleted",
}
TELNYX_END_REASONS = frozenset({EndCause.ALL_LEFT, EndCause.HOST_LEFT, EndCause.TIME_EXCEEDED})


@dataclass(frozen=True, slots=True)
class SimEvent:
    """One event a provider pushes: when, about what, and the body it sends."""

    at_ms: int
    provider: Provider
    conference_id: str
    kind: EventKind
    call_id: str | None
    body: bytes

    @property
    def key(self) -> tuple[str, str, str, str | None, int]:
        """What identifies it (the same for every delivery of it)."""
        return (self.provider.value, self.conference_id, self.kind.value, self.call_id,
                self.at_ms)


def conference_events(sim: Simulator, conference: ConferenceTimeline) -> list[SimEvent]:
    """Every event of ``conference``'s whole life, in time order."""
    build = _telnyx if conference.provider is Provider.TELNYX else _bandwidth
    moments: list[tuple[int, EventKind, MemberTimeline | None]] = [
        (conference.created_ms, EventKind.CONFERENCE_CREATED, None)]
    for member in conference.members:
        moments.append((member.connected_ms, EventKind.MEMBER_JOINED, member))
        moments.append((member.left_ms, EventKind.MEMBER_LEFT, member))
    moments.append((conference.ended_ms, EventKind.CONFERENCE_ENDED, None))
    moments.sort(key=lambda moment: moment[0])
    return [SimEvent(at_ms, conference.provider, conference.conference_id, kind,
                     member.call_id if member is not None else None,
                     json.dumps(build(sim, conference, at_ms, kind, member)).encode())
            for at_ms, kind, member in moments]


def _telnyx(sim: Simulator, conference: ConferenceTimeline, at_ms: int, kind: EventKind,
            member: MemberTimeline | None) -> dict[str, Any]:
    event_type = TELNYX_TYPES[kind]
    event_id = uuid.uuid5(_NAMESPACE, f"{conference.conference_id}|{event_type}|"
                                      f"{member.member_id if member else ''}|{at_ms}")
    payload: dict[str, Any] = {"conference_id": conference.conference_id,
                               "connection_id": "7267000000000000000"}
    data: dict[str, Any] = {"record_type": "event", "id": str(event_id),
                            "event_type": event_type}
    if member is not None:
        payload |= {"call_control_id": member.call_id, "call_leg_id": member.call_leg_id,
                    "call_session_id": member.call_session_id}
        data["occurred_at"] = sim.iso(at_ms)
    else:
        payload["occurred_at"] = sim.iso(at_ms)
        if kind is EventKind.CONFERENCE_ENDED and conference.end_cause in TELNYX_END_REASONS:
            payload["reason"] = conference.end_cause.value
    data["payload"] = payload
    return {"data": data, "meta": {"attempt": 1, "delivered_to": "poller"}}


def _bandwidth(sim: Simulator, conference: ConferenceTimeline, at_ms: int, kind: EventKind,
               member: MemberTimeline | None) -> dict[str, Any]:
    body: dict[str, Any] = {"eventType": BANDWIDTH_TYPES[kind], "eventTime": sim.iso(at_ms),
                            "conferenceId": conference.conference_id, "name": conference.name}
    if conference.tag is not None:
        body["tag"] = conference.tag
    if member is not None:
        body |= {"from": "+15554440000", "to": "+15553330000", "callId": member.call_id}
    return body
