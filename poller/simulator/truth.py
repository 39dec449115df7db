"""Ground truth: what really happened in the simulated world, as JSON-ready dicts.

``ground_truth(sim, until_ms)`` lists, for every conference created by ``until_ms``, each status
change and each member event up to ``until_ms`` (``None``: whole lives, future included)::

    {"seed": 1, "epoch": "…Z", "now": "…Z", "until": "…Z" | null,
     "conferences": [{
        "provider": "telnyx", "account_id": null, "conference_id": "…", "name": "…",
        "region": "US", "created_at": "…Z",
        "end_cause": "host_left",            # what happened (also for Bandwidth)
        "end_reason": "host_left",           # what the provider reports (Bandwidth: null)
        "ended_by": {"call_control_id": "v3:…", "call_session_id": "…"} | null,
        "completed_at": "…Z" | null, "gone_at": "…Z" | null,
        "status_changes": [{"at": "…Z", "from": null, "to": "init"},
                           {"at": "…Z", "from": "init", "to": "in_progress"},
                           {"at": "…Z", "from": "in_progress", "to": "completed",
                            "end_cause": "host_left", "end_reason": "host_left",
                            "ended_by": {…} | null}],
        "members": [{"member_id": "…", "call_control_id": "…", "call_leg_id": "…",
                     "call_session_id": "…", "end_conference_on_exit": true,
                     "soft_end_conference_on_exit": false}],
        "member_events": [{"at": "…Z", "member_id": "…", "kind": "joining" | "joined" |
                           "muted" | "unmuted" | "held" | "unheld" | "coaching_changed" |
                           "left", "muted": false, "on_hold": false, "coaching": [] | null,
                           "cause": "hung_up" | "conference_ended"   # "left" only
                          }, …]}]}

``completed_at`` / ``gone_at`` are null until they happen. Member events are in time order; at
equal times a member's ``left`` follows the conference's ``completed`` change. ``coaching`` is
Telnyx's ``whisper_call_control_ids`` / Bandwidth's ``callIdsToCoach`` (null: never set).
Bandwidth has no ``joining`` phase and no ``call_leg_id`` / ``call_session_id``.
"""

from __future__ import annotations

from typing import Any

from poller.model import ConferenceStatus, Provider
from poller.simulator.timeline import ConferenceTimeline, MemberTimeline
from poller.simulator.world import Simulator


def ground_truth(sim: Simulator, until_ms: int | None) -> dict[str, Any]:
    """Everything that happened by ``until_ms`` (``None``: everything, ever)."""
    return {
        "seed": sim.seed,
        "epoch": sim.iso(0),
        "now": sim.iso(sim.now_ms()),
        "until": sim.iso(until_ms) if until_ms is not None else None,
        "conferences": [
            conference_truth(sim, conference, until_ms)
            for conference in sim.timelines()
            if until_ms is None or conference.created_ms <= until_ms
        ],
    }


def _ended_by(conference: ConferenceTimeline) -> dict[str, str | None] | None:
    if conference.ended_by is None:
        return None
    return {"call_control_id": conference.ended_by.call_id,
            "call_session_id": conference.ended_by.call_session_id}


def conference_truth(sim: Simulator, conference: ConferenceTimeline, until_ms: int | None
                     ) -> dict[str, Any]:
    """One conference's truth up to ``until_ms``."""
    def happened(at_ms: int) -> bool:
        return until_ms is None or at_ms <= until_ms

    telnyx = conference.provider is Provider.TELNYX
    completed = happened(conference.ended_ms)
    end_reason = conference.end_cause.value if telnyx else None
    ending: dict[str, Any] = {
        "end_cause": conference.end_cause.value if completed else None,
        "end_reason": end_reason if completed else None,
        "ended_by": _ended_by(conference) if completed else None,
    }
    changes: list[dict[str, Any]] = [
        {"at": sim.iso(conference.created_ms), "from": None, "to": ConferenceStatus.INIT.value},
    ]
    if happened(conference.in_progress_ms):
        changes.append({"at": sim.iso(conference.in_progress_ms), "from": "init",
                        "to": ConferenceStatus.IN_PROGRESS.value})
    if completed:
        changes.append({"at": sim.iso(conference.ended_ms), "from": "in_progress",
                        "to": ConferenceStatus.COMPLETED.value, **ending})
    events = [event for member in conference.members
              for event in _member_events(sim, member, telnyx)
              if happened(event[0])]
    events.sort(key=lambda event: event[0])
    return {
        "provider": conference.provider.value,
        "account_id": None if telnyx else sim.credentials.bandwidth_account_id,
        "conference_id": conference.conference_id,
        "name": conference.name,
        "region": conference.region,
        "created_at": sim.iso(conference.created_ms),
        **ending,
        "completed_at": sim.iso(conference.ended_ms) if completed else None,
        "gone_at": sim.iso(conference.gone_ms) if happened(conference.gone_ms) else None,
        "status_changes": changes,
        "members": [_member_identity(member, telnyx) for member in conference.members
                    if happened(member.joined_ms)],
        "member_events": [event for _, event in events],
    }


def _member_identity(member: MemberTimeline, telnyx: bool) -> dict[str, Any]:
    identity: dict[str, Any] = {"member_id": member.member_id}
    if telnyx:
        identity |= {
            "call_control_id": member.call_id,
            "call_leg_id": member.call_leg_id,
            "call_session_id": member.call_session_id,
            "end_conference_on_exit": member.end_conference_on_exit,
            "soft_end_conference_on_exit": member.soft_end_conference_on_exit,
        }
    else:
        identity["call_id"] = member.call_id
    return identity


def _member_events(sim: Simulator, member: MemberTimeline, telnyx: bool
                   ) -> list[tuple[int, dict[str, Any]]]:
    def event(at_ms: int, kind: str, muted: bool, on_hold: bool,
              coaching: tuple[str, ...] | None, **extra: str) -> tuple[int, dict[str, Any]]:
        return at_ms, {"at": sim.iso(at_ms), "member_id": member.member_id, "kind": kind,
                       "muted": muted, "on_hold": on_hold,
                       "coaching": list(coaching) if coaching is not None else None, **extra}

    initial = (member.muted, member.on_hold, member.coaching)
    events = []
    if telnyx:
        events.append(event(member.joined_ms, "joining", *initial))
    events.append(event(member.connected_ms, "joined", *initial))
    last = initial
    for change in member.changes:
        last = (change.muted, change.on_hold, change.coaching)
        events.append(event(change.at_ms, change.kind.value, *last))
    cause = "conference_ended" if member.left_because_ended else "hung_up"
    events.append(event(member.left_ms, "left", *last, cause=cause))
    return events


def served_conferences(sim: Simulator) -> dict[str, Any]:
    """The conference IDs served, per provider (``GET /_sim/conferences``)."""
    telnyx = []
    for conference_id in sim.conference_ids(Provider.TELNYX):
        timeline = sim.timeline(Provider.TELNYX, conference_id)
        assert timeline is not None
        telnyx.append({"id": conference_id, "region": timeline.region})
    return {
        "telnyx": {"conferences": telnyx},
        "bandwidth": {"account_id": sim.credentials.bandwidth_account_id,
                      "conferences": [{"id": cid}
                                      for cid in sim.conference_ids(Provider.BANDWIDTH)]},
    }

