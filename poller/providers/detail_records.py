"""Telnyx detail records of conference participants: exact stays, after the fact (pure).

``GET /detail_records?filter[record_type]=conference-participant&filter[conference_id]=…``
answers ``{"data": [ConferenceParticipantDetailRecord], "meta": PaginationMeta}`` (Telnyx spec,
schema ``ConferenceParticipantDetailRecord``): per participant its ``id`` (the REST
participant's), ``call_leg_id``, ``joined_at`` and ``left_at``. Telnyx makes them available
some time after the conference ends; until then the list is empty.

:func:`parse_participant_records` raises nothing but ``BadResponse``: a wrong shape, a field of
another type than the spec's, a record of another conference. A record without ``joined_at``
says nothing exact, so it is left out with a warning.
"""

from __future__ import annotations

from poller.model import JSON, ParticipantRecord
from poller.providers.fields import FieldReader, bad_shape, require_id, require_object

PROVIDER = "telnyx"
RECORD_TYPE = "conference_participant_detail_record"


def parse_participant_records(document: JSON, *, conference_id: str,
                              warnings: list[str] | None = None
                              ) -> tuple[list[ParticipantRecord], int | None]:
    """The records of one page, and the ``meta.total_pages`` it reports (``None``: not said)."""
    notes: list[str] = [] if warnings is None else warnings
    envelope = require_object(PROVIDER, document, "detail records", document)
    data = envelope.get("data")
    if not isinstance(data, list):
        raise bad_shape(PROVIDER, "detail records: data is not a list", document)
    records = []
    for index, item in enumerate(data):
        obj = require_object(PROVIDER, item, f"detail record {index}", document)
        fields = FieldReader(obj, f"detail record {index}", notes, provider=PROVIDER)
        if fields.text("record_type") not in (None, RECORD_TYPE):
            raise bad_shape(PROVIDER, f"detail record {index} is not a conference participant's",
                            document)
        if fields.text("conference_id") not in (None, conference_id):
            raise bad_shape(PROVIDER, f"detail record {index} is of another conference",
                            document)
        member_id = require_id(PROVIDER, obj, "id", f"detail record {index}")
        joined_at, left_at = fields.time("joined_at"), fields.time("left_at")
        if joined_at is None:
            notes.append(f"detail record {index} ({member_id}): no joined_at; left out")
            continue
        records.append(ParticipantRecord(member_id, fields.text("call_leg_id"), joined_at,
                                         left_at))
    meta = envelope.get("meta")
    pages = meta.get("total_pages") if isinstance(meta, dict) else None
    total = pages if isinstance(pages, int) and not isinstance(pages, bool) else None
    return records, total
