"""The Telnyx parsers: every Conference and Participant field, statuses, and wrong shapes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from poller.errors import BadResponse
from poller.providers import parse_telnyx_conference, parse_telnyx_participants
from poller.providers.telnyx_parser import UNKNOWN_STATUS

from .fakes import TELNYX_ID, telnyx_conference, telnyx_participant


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("attribute", "expected"),
    [
        ("conference_id", TELNYX_ID),
        ("status", "completed"),
        ("provider_status", "completed"),
        ("name", "All hands meeting"),
        ("region", "sv1"),
        ("created_at", at("2019-01-23T18:10:02.574")),
        ("updated_at", at("2019-01-23T18:20:02.574")),
        ("expires_at", at("2019-01-23T22:10:02.574")),
        ("completed_at", None),
        ("end_reason", "all_left"),
        ("ended_by_call_control_id",
         "v2:T02llQxIyaRkhfRKxgAP8nY511EhFLizdvdUKJiSw8d6A9BborherQczRr"),
        ("ended_by_call_session_id", "428c31b6-abf3-3bc1-b7f4-5013ef9657c1"),
        ("connection_id", "3fa85f64-9191-4567-b3fc-2c963f66afa6"),
        ("record_type", "conference"),
        ("tag", None),
        ("event_url", None),
        ("event_method", None),
    ],
)
def test_conference_field_mapping(attribute: str, expected: object) -> None:
    """Each documented Conference field lands in its ConferenceState attribute."""
    warnings: list[str] = []
    state = parse_telnyx_conference({"data": telnyx_conference()}, warnings=warnings)
    assert getattr(state, attribute) == expected
    assert warnings == []


def test_conference_raw_is_the_data_object_with_unknown_fields() -> None:
    """The raw payload is the data object, unknown fields included."""
    data = telnyx_conference(brand_new_field={"x": 1})
    state = parse_telnyx_conference({"data": data, "extra": 1})
    assert state.raw == data


@pytest.mark.parametrize("status", ["init", "in_progress", "completed"])
def test_known_statuses_are_kept(status: str) -> None:
    """A documented status is the normalised status and the provider status."""
    state = parse_telnyx_conference({"data": telnyx_conference(status=status)})
    assert (state.status, state.provider_status, state.status_known) == (status, status, True)


@pytest.mark.parametrize(
    ("raw", "status", "provider_status", "warning"),
    [
        ("paused", "paused", "paused", "unknown value 'paused'"),
        (None, UNKNOWN_STATUS, None, "not reported"),
    ],
)
def test_odd_statuses_are_kept_and_noted(raw: object, status: str,
                                         provider_status: str | None, warning: str) -> None:
    """An unknown status value (the enum may grow) is stored as seen; a missing one gets a
    marker; both are noted."""
    warnings: list[str] = []
    state = parse_telnyx_conference({"data": telnyx_conference(status=raw)}, warnings=warnings)
    assert (state.status, state.provider_status) == (status, provider_status)
    assert not state.status_known
    assert any(warning in w for w in warnings)


@pytest.mark.parametrize(
    ("field", "value", "attribute", "expected"),
    [
        ("end_reason", "power_cut", "end_reason", "power_cut"),
        ("record_type", "meeting", "record_type", "meeting"),
        ("updated_at", "2019-01-23T18:20:02", "updated_at", at("2019-01-23T18:20:02")),
        ("expires_at", "9999-12-31T23:59:59Z", "expires_at", at("9999-12-31T23:59:59")),
    ],
)
def test_tolerated_oddities_warn(field: str, value: object, attribute: str,
                                 expected: object) -> None:
    """Unknown enum values, a timestamp without a zone and an implausible date are kept, each
    with one warning."""
    warnings: list[str] = []
    data = telnyx_conference(**{field: value})
    state = parse_telnyx_conference({"data": data}, warnings=warnings)
    assert getattr(state, attribute) == expected
    assert len(warnings) == 1
    assert field in warnings[0]


@pytest.mark.parametrize(
    ("field", "value"),
    [("status", 7), ("name", 12), ("ended_by", "someone"), ("created_at", "not a time"),
     ("updated_at", 1548267602), ("end_reason", ["all_left"]), ("region", False)],
)
def test_conference_fields_of_the_wrong_type_are_refused(field: str, value: object) -> None:
    """A field that is not what the spec says is never guessed at: ``BadResponse`` naming it."""
    with pytest.raises(BadResponse, match=f"conference.{field}: expected"):
        parse_telnyx_conference({"data": telnyx_conference(**{field: value})})


def test_minimal_conference_needs_only_an_id() -> None:
    """Every field but id may be absent or null."""
    data: dict[str, Any] = {k: None for k in telnyx_conference()} | {"id": "c1"}
    data["status"] = "init"
    state = parse_telnyx_conference({"data": data})
    assert state.conference_id == "c1"
    assert state.name is None
    assert state.created_at is None
    assert state.end_reason is None


@pytest.mark.parametrize(
    "document",
    [None, [], "text", 3, {}, {"data": None}, {"data": []}, {"data": "x"},
     {"data": {"name": "no id"}}, {"data": {"id": ""}}, {"data": {"id": 5}}],
)
def test_wrong_conference_shape_is_bad_response(document: object) -> None:
    """A document that is not {"data": {"id": ...}} is a BadResponse with a short excerpt."""
    with pytest.raises(BadResponse) as caught:
        parse_telnyx_conference(document)
    assert caught.value.excerpt is not None
    assert len(caught.value.excerpt) <= 200
    assert caught.value.provider == "telnyx"


def test_bad_response_excerpt_is_short_for_large_documents() -> None:
    """The excerpt of a huge wrong document is cut to 200 characters."""
    with pytest.raises(BadResponse) as caught:
        parse_telnyx_conference({"data": ["x" * 10_000]})
    assert caught.value.excerpt is not None
    assert len(caught.value.excerpt) == 200


@pytest.mark.parametrize(
    ("attribute", "expected"),
    [
        ("member_id", "dfadada7-af74-47bc-83a4-554275f55f5c"),
        ("call_control_id", "v3:MdI91X4lWFEs7IgbBEOT9M4AigoY08M0WWZFISt1Yw2axZ_IiE4pqg"),
        ("call_leg_id", "3a15df2d-c801-4729-adf5-b56dd42e2abb"),
        ("status", "joining"),
        ("muted", False),
        ("on_hold", True),
        ("coaching", ("v2:Sg1xxxQ_U3ixxxyXT", "v2:qqpb0mmvd-ovhhBr0BUQQ")),
        ("end_conference_on_exit", True),
        ("soft_end_conference_on_exit", True),
        ("created_at", at("2019-01-23T18:10:02.574")),
        ("updated_at", at("2019-01-23T18:11:02.574")),
        ("member_url", None),
    ],
)
def test_participant_field_mapping(attribute: str, expected: object) -> None:
    """Each documented Participant field lands in its MemberState attribute."""
    warnings: list[str] = []
    page = parse_telnyx_participants({"data": [telnyx_participant()]}, warnings=warnings)
    assert getattr(page.members[0], attribute) == expected
    assert warnings == []


@pytest.mark.parametrize(
    ("field", "value", "attribute", "expected"),
    [
        ("status", "kicked", "status", "kicked"),
        ("record_type", "participant_v2", "member_id", "dfadada7-af74-47bc-83a4-554275f55f5c"),
        ("created_at", "2019-01-23T18:10:02", "created_at", at("2019-01-23T18:10:02")),
    ],
)
def test_participant_oddities_warn(field: str, value: object, attribute: str,
                                   expected: object) -> None:
    """Participant oddities that may be right (a new enum value, no time zone) are kept with
    one warning naming the field."""
    warnings: list[str] = []
    page = parse_telnyx_participants({"data": [telnyx_participant(**{field: value})]},
                                     warnings=warnings)
    assert getattr(page.members[0], attribute) == expected
    assert len(warnings) == 1
    assert field in warnings[0]


@pytest.mark.parametrize(
    ("field", "value"),
    [("muted", "yes"), ("on_hold", 1), ("whisper_call_control_ids", "v2:one"),
     ("whisper_call_control_ids", ["v2:a", 3, None]), ("updated_at", "yesterday"),
     ("conference", "c1")],
)
def test_participant_fields_of_the_wrong_type_are_refused(field: str, value: object) -> None:
    """A participant field of the wrong type fails the page, naming the field."""
    with pytest.raises(BadResponse, match=f"{field}: expected"):
        parse_telnyx_participants({"data": [telnyx_participant(**{field: value})]})


def test_a_participant_of_another_conference_is_refused() -> None:
    """A participant whose ``conference.id`` names another conference than the one polled is
    never filed under it; without an expected ID it is read as usual."""
    other = telnyx_participant(conference={"id": "another", "name": "x"})
    with pytest.raises(BadResponse, match="belongs to conference 'another'"):
        parse_telnyx_participants({"data": [other]}, conference_id=TELNYX_ID)
    assert parse_telnyx_participants({"data": [other]}).members[0].member_id == other["id"]


def test_empty_whisper_list_is_empty_coaching() -> None:
    """An empty whisper list is an empty tuple, a null one is None."""
    page = parse_telnyx_participants({"data": [
        telnyx_participant(id="a", whisper_call_control_ids=[]),
        telnyx_participant(id="b", whisper_call_control_ids=None),
    ]})
    assert [m.coaching for m in page.members] == [(), None]


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ({"page_number": 2, "page_size": 250, "total_pages": 3, "total_results": 600},
         (2, 250, 3, 600)),
        (None, (None, None, None, None)),
        ({}, (None, None, None, None)),
        ({"page_number": "2", "total_pages": -1, "page_size": True}, (None, None, None, None)),
        ("meta", (None, None, None, None)),
    ],
)
def test_pagination_meta(meta: object, expected: tuple[int | None, ...]) -> None:
    """PaginationMeta integers are read; missing or odd values are None."""
    page = parse_telnyx_participants({"data": [], "meta": meta})
    assert (page.page_number, page.page_size, page.total_pages, page.total_results) == expected


@pytest.mark.parametrize(
    "document",
    [None, [], {"data": None}, {"data": {}}, {"data": "x"}, {"data": [1]}, {"data": [None]},
     {"data": [{"status": "joined"}]}, {"data": [{"id": None}]}],
)
def test_wrong_participants_shape_is_bad_response(document: object) -> None:
    """A participants document without a list of identified objects is a BadResponse."""
    with pytest.raises(BadResponse):
        parse_telnyx_participants(document)
