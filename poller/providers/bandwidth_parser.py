"""Pure parser for Bandwidth Voice API v2 conference responses (no I/O).

``GET /accounts/{accountId}/conferences/{conferenceId}`` answers a bare ``conference`` object
whose ``activeMembers`` holds the ``conferenceMember`` objects present right now. Bandwidth
reports no status: it is derived (``completedTime`` set ⇒ ``completed``, else members present ⇒
``in_progress``, else ``init``), ``provider_status`` and ``end_reason`` are always ``None``. The
field-by-field mapping is in ``docs/providers.md``. Raises nothing but ``BadResponse``: a wrong
shape, a field of another type than the spec's (``completedTime: []`` is not "completed"), an
unreadable timestamp, a member of another conference.
"""

from __future__ import annotations

from poller.model import JSON, ConferenceState, ConferenceStatus, MemberState
from poller.providers.fields import FieldReader, bad_shape, require_id, require_object

PROVIDER = "bandwidth"

EVENT_METHODS = frozenset({"GET", "POST"})


def parse_bandwidth_conference(document: JSON, *, warnings: list[str] | None = None
                               ) -> tuple[ConferenceState, tuple[MemberState, ...]]:
    """The conference state and its active members in a Bandwidth ``conference`` document."""
    notes: list[str] = [] if warnings is None else warnings
    obj = require_object(PROVIDER, document, "response", document)
    conference_id = require_id(PROVIDER, obj, "id", "conference")
    fields = FieldReader(obj, "conference", notes, provider=PROVIDER)

    active = obj.get("activeMembers")
    if active is None:
        if "activeMembers" not in obj:
            notes.append("conference.activeMembers: not reported; assumed empty")
        active = []
    elif not isinstance(active, list):
        raise bad_shape(PROVIDER, "activeMembers is not a list", document)
    members = tuple(
        parse_bandwidth_member(item, conference_id=conference_id, warnings=notes)
        for item in active
    )

    completed_raw = obj.get("completedTime")
    if completed_raw == "":
        notes.append("conference.completedTime: empty string read as not set")
        completed_raw = None
    completed_at = fields.time("completedTime") if completed_raw is not None else None
    if completed_raw is not None:
        status = ConferenceStatus.COMPLETED
    elif members:
        status = ConferenceStatus.IN_PROGRESS
    else:
        status = ConferenceStatus.INIT

    return ConferenceState(
        conference_id=conference_id,
        status=status.value,
        provider_status=None,
        name=fields.text("name"),
        created_at=fields.time("createdTime"),
        completed_at=completed_at,
        end_reason=None,
        tag=fields.text("tag"),
        event_url=fields.text("conferenceEventUrl"),
        event_method=fields.enum("conferenceEventMethod", EVENT_METHODS),
        raw=obj,
    ), members


def parse_bandwidth_member(item: JSON, *, conference_id: str | None = None,
                           warnings: list[str] | None = None) -> MemberState:
    """One Bandwidth ``conferenceMember`` object as a member (identified by its ``callId``)."""
    notes: list[str] = [] if warnings is None else warnings
    obj = require_object(PROVIDER, item, "activeMembers item", item)
    call_id = require_id(PROVIDER, obj, "callId", "active member")
    fields = FieldReader(obj, f"member[{call_id[:40]}]", notes, provider=PROVIDER)
    member_conference = fields.text("conferenceId")
    if conference_id is not None and member_conference not in (None, conference_id):
        raise bad_shape(PROVIDER, f"member {call_id[:40]!r} belongs to conference "
                                  f"{member_conference[:40]!r}, not this one", obj)
    return MemberState(
        member_id=call_id,
        call_control_id=call_id,
        muted=fields.flag("mute"),
        on_hold=fields.flag("hold"),
        coaching=fields.texts("callIdsToCoach"),
        member_url=fields.text("memberUrl"),
        raw=obj,
    )
