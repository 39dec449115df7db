"""Pure parsers for Telnyx Call Control conference responses (no I/O).

``GET /conferences/{id}`` answers ``{"data": Conference}`` and
``GET /conferences/{id}/participants`` answers ``{"data": [Participant], "meta": PaginationMeta}``
(schemas ``Conference``, ``Participant`` and ``PaginationMeta`` of the Telnyx OpenAPI spec). The
field-by-field mapping is in ``docs/providers.md``. These functions raise nothing but
``BadResponse``: a wrong shape, a field of another type than the spec's, an unreadable
timestamp, a participant of another conference (``poller.providers.fields``). What may grow
(an unknown enum value) and what is odd but readable (a timestamp without a zone) is appended
to the optional ``warnings`` list.
"""

from __future__ import annotations

from dataclasses import dataclass

from poller.model import JSON, KNOWN_STATUSES, ConferenceState, MemberState
from poller.providers.fields import FieldReader, bad_shape, require_id, require_object

PROVIDER = "telnyx"

UNKNOWN_STATUS = "unknown"
"""The normalised status of a Telnyx conference whose ``status`` is absent or not a string.

The schema does not require ``status``; poller invents no value for it, so such an observation
is stored with this marker (not one of the known statuses) and a warning.
"""

END_REASONS = frozenset({"all_left", "ended_via_api", "host_left", "time_exceeded"})
PARTICIPANT_STATUSES = frozenset({"joining", "joined", "left"})
CONFERENCE_RECORD_TYPES = frozenset({"conference"})
PARTICIPANT_RECORD_TYPES = frozenset({"participant"})


@dataclass(frozen=True, slots=True)
class ParticipantPage:
    """One page of ``GET /conferences/{id}/participants``: its members and paging metadata.

    Each metadata field is ``None`` when Telnyx left it out (or sent something unreadable).
    """

    members: tuple[MemberState, ...]
    page_number: int | None = None
    page_size: int | None = None
    total_pages: int | None = None
    total_results: int | None = None


def parse_telnyx_conference(document: JSON, *, warnings: list[str] | None = None
                            ) -> ConferenceState:
    """The conference state in a Telnyx ``{"data": Conference}`` response document."""
    notes: list[str] = [] if warnings is None else warnings
    envelope = require_object(PROVIDER, document, "response", document)
    data = require_object(PROVIDER, envelope.get("data"), "data", document)
    conference_id = require_id(PROVIDER, data, "id", "conference")
    fields = FieldReader(data, "conference", notes, provider=PROVIDER)

    raw_status = fields.text("status")
    if raw_status is not None:
        status = raw_status
        if raw_status not in KNOWN_STATUSES:
            notes.append(f"conference.status: unknown value {raw_status!r} kept as seen")
    else:
        status = UNKNOWN_STATUS
        notes.append("conference.status: not reported")

    ended_by = fields.child("ended_by")
    return ConferenceState(
        conference_id=conference_id,
        status=status,
        provider_status=raw_status,
        name=fields.text("name"),
        region=fields.text("region"),
        created_at=fields.time("created_at"),
        updated_at=fields.time("updated_at"),
        expires_at=fields.time("expires_at"),
        completed_at=None,
        end_reason=fields.enum("end_reason", END_REASONS),
        ended_by_call_control_id=ended_by.text("call_control_id") if ended_by else None,
        ended_by_call_session_id=ended_by.text("call_session_id") if ended_by else None,
        connection_id=fields.text("connection_id"),
        record_type=fields.enum("record_type", CONFERENCE_RECORD_TYPES),
        raw=data,
    )


def parse_telnyx_participants(document: JSON, *, warnings: list[str] | None = None,
                              conference_id: str | None = None) -> ParticipantPage:
    """The members and paging metadata in one Telnyx participants response document.

    With ``conference_id``, a participant whose ``conference.id`` names another conference is
    a ``BadResponse`` (it would be filed under the wrong conference).
    """
    notes: list[str] = [] if warnings is None else warnings
    envelope = require_object(PROVIDER, document, "response", document)
    data = envelope.get("data")
    if not isinstance(data, list):
        raise bad_shape(PROVIDER, "data is not a list", document)
    members = tuple(parse_telnyx_participant(item, warnings=notes, conference_id=conference_id)
                    for item in data)

    meta = envelope.get("meta")
    if meta is None:
        return ParticipantPage(members=members)
    if not isinstance(meta, dict):
        notes.append("participants.meta: not an object; paging metadata ignored")
        return ParticipantPage(members=members)
    paging = FieldReader(meta, "participants.meta", notes, provider=PROVIDER, strict=False)
    return ParticipantPage(
        members=members,
        page_number=paging.count("page_number"),
        page_size=paging.count("page_size"),
        total_pages=paging.count("total_pages"),
        total_results=paging.count("total_results"),
    )


def parse_telnyx_participant(item: JSON, *, warnings: list[str] | None = None,
                             conference_id: str | None = None) -> MemberState:
    """One Telnyx ``Participant`` object as a member (of ``conference_id``, when given)."""
    notes: list[str] = [] if warnings is None else warnings
    obj = require_object(PROVIDER, item, "participant", item)
    member_id = require_id(PROVIDER, obj, "id", "participant")
    fields = FieldReader(obj, f"participant[{member_id[:40]}]", notes, provider=PROVIDER)
    fields.enum("record_type", PARTICIPANT_RECORD_TYPES)
    conference = fields.child("conference")
    listed_in = conference.text("id") if conference is not None else None
    if conference_id is not None and listed_in not in (None, conference_id):
        raise bad_shape(PROVIDER, f"participant {member_id[:40]!r} belongs to conference "
                                  f"{listed_in[:40]!r}, not the one polled", obj)
    return MemberState(
        member_id=member_id,
        call_control_id=fields.text("call_control_id"),
        call_leg_id=fields.text("call_leg_id"),
        status=fields.enum("status", PARTICIPANT_STATUSES),
        muted=fields.flag("muted"),
        on_hold=fields.flag("on_hold"),
        coaching=fields.texts("whisper_call_control_ids"),
        end_conference_on_exit=fields.flag("end_conference_on_exit"),
        soft_end_conference_on_exit=fields.flag("soft_end_conference_on_exit"),
        created_at=fields.time("created_at"),
        updated_at=fields.time("updated_at"),
        member_url=None,
        raw=obj,
    )
