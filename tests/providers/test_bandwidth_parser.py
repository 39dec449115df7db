"""The Bandwidth parser: every conference and conferenceMember field, derived status, shapes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from poller.errors import BadResponse
from poller.providers import parse_bandwidth_conference

from .fakes import BW_ID, bandwidth_conference, bandwidth_member

CALL_ID = "c-15ac29a2-1331029c-2cb0-4a07-b215-b22865662d85"


@pytest.mark.parametrize(
    ("attribute", "expected"),
    [
        ("conference_id", BW_ID),
        ("status", "in_progress"),
        ("provider_status", None),
        ("name", "my-conference-name"),
        ("region", None),
        ("created_at", datetime(2022, 6, 17, 22, 19, 40, 375000, tzinfo=UTC)),
        ("updated_at", None),
        ("expires_at", None),
        ("completed_at", None),
        ("end_reason", None),
        ("ended_by_call_control_id", None),
        ("ended_by_call_session_id", None),
        ("connection_id", None),
        ("tag", "my custom tag"),
        ("event_url", "https://myServer.example/bandwidth/webhooks/conferenceEvent"),
        ("event_method", "POST"),
        ("record_type", None),
    ],
)
def test_conference_field_mapping(attribute: str, expected: object) -> None:
    """Each documented conference field lands in its ConferenceState attribute."""
    warnings: list[str] = []
    state, _ = parse_bandwidth_conference(bandwidth_conference(), warnings=warnings)
    assert getattr(state, attribute) == expected
    assert warnings == []


@pytest.mark.parametrize(
    ("attribute", "expected"),
    [
        ("member_id", CALL_ID),
        ("call_control_id", CALL_ID),
        ("call_leg_id", None),
        ("status", None),
        ("muted", False),
        ("on_hold", True),
        ("coaching", ("c-coached-1",)),
        ("end_conference_on_exit", None),
        ("soft_end_conference_on_exit", None),
        ("created_at", None),
        ("updated_at", None),
        ("member_url", f"https://voice.bandwidth.com/api/v2/accounts/9900000/conferences/{BW_ID}"
                       f"/members/{CALL_ID}"),
    ],
)
def test_member_field_mapping(attribute: str, expected: object) -> None:
    """Each documented conferenceMember field lands in its MemberState attribute."""
    _, members = parse_bandwidth_conference(bandwidth_conference())
    assert getattr(members[0], attribute) == expected


@pytest.mark.parametrize(
    ("completed", "members", "status", "completed_at"),
    [
        ("2022-06-17T22:20:00.000Z", [], "completed",
         datetime(2022, 6, 17, 22, 20, tzinfo=UTC)),
        ("2022-06-17T22:20:00.000Z", [bandwidth_member()], "completed",
         datetime(2022, 6, 17, 22, 20, tzinfo=UTC)),
        (None, [bandwidth_member()], "in_progress", None),
        (None, [], "init", None),
        (None, None, "init", None),
        ("", [bandwidth_member()], "in_progress", None),
    ],
)
def test_status_derivation(completed: str | None, members: list[object] | None, status: str,
                           completed_at: datetime | None) -> None:
    """completedTime set ⇒ completed; else members present ⇒ in_progress; else init."""
    state, _ = parse_bandwidth_conference(
        bandwidth_conference(completedTime=completed, activeMembers=members))
    assert (state.status, state.completed_at, state.end_reason) == (status, completed_at, None)
    assert state.provider_status is None


@pytest.mark.parametrize("completed", ["garbage", [], 123, {}, True])
def test_a_completed_time_that_is_no_time_is_refused(completed: object) -> None:
    """``completedTime`` that is not null, empty or a timestamp does not say "completed": the
    response is refused rather than a completion invented for a live conference."""
    with pytest.raises(BadResponse, match="completedTime"):
        parse_bandwidth_conference(bandwidth_conference(completedTime=completed))


def test_absent_active_members_is_empty_with_warning() -> None:
    """A response without activeMembers has no members, and says so."""
    document = bandwidth_conference()
    del document["activeMembers"]
    warnings: list[str] = []
    state, members = parse_bandwidth_conference(document, warnings=warnings)
    assert (state.status, members) == ("init", ())
    assert any("activeMembers" in w for w in warnings)


@pytest.mark.parametrize(
    ("field", "value", "attribute", "expected"),
    [
        ("conferenceEventMethod", "PUT", "event_method", "PUT"),
        ("createdTime", "2022-06-17T22:19:40", "created_at",
         datetime(2022, 6, 17, 22, 19, 40, tzinfo=UTC)),
        ("createdTime", "0001-01-01T00:00:00Z", "created_at", datetime(1, 1, 1, tzinfo=UTC)),
    ],
)
def test_conference_oddities_warn(field: str, value: object, attribute: str,
                                  expected: object) -> None:
    """An unknown enum value, a timestamp without a zone and an implausible date are kept,
    each with one warning."""
    warnings: list[str] = []
    state, _ = parse_bandwidth_conference(bandwidth_conference(**{field: value}),
                                          warnings=warnings)
    assert getattr(state, attribute) == expected
    assert len(warnings) == 1
    assert field in warnings[0]


@pytest.mark.parametrize(
    ("field", "value"),
    [("conferenceEventUrl", 5), ("createdTime", "June 17th"), ("createdTime", 1655504380),
     ("name", ["x"]), ("tag", {"a": 1})],
)
def test_conference_fields_of_the_wrong_type_are_refused(field: str, value: object) -> None:
    """A field that is not what the spec says is never guessed at: ``BadResponse`` naming it."""
    with pytest.raises(BadResponse, match=f"conference.{field}: expected"):
        parse_bandwidth_conference(bandwidth_conference(**{field: value}))


@pytest.mark.parametrize(
    ("field", "value"),
    [("mute", "false"), ("hold", 0), ("callIdsToCoach", "c-1"), ("callIdsToCoach", [1]),
     ("memberUrl", 3)],
)
def test_member_fields_of_the_wrong_type_are_refused(field: str, value: object) -> None:
    """A member field of the wrong type fails the whole response, naming the field."""
    with pytest.raises(BadResponse, match=f"{field}: expected"):
        parse_bandwidth_conference(
            bandwidth_conference(activeMembers=[bandwidth_member(**{field: value})]))


def test_a_member_of_another_conference_is_refused() -> None:
    """A member whose conferenceId names another conference is never filed under this one."""
    with pytest.raises(BadResponse, match="belongs to conference 'conf-other'"):
        parse_bandwidth_conference(
            bandwidth_conference(activeMembers=[bandwidth_member(conferenceId="conf-other")]))


def test_null_coaching_list_is_none() -> None:
    """callIdsToCoach is nullable: null stays None, not an empty list."""
    _, members = parse_bandwidth_conference(
        bandwidth_conference(activeMembers=[bandwidth_member(callIdsToCoach=None)]))
    assert members[0].coaching is None


def test_raw_payloads_kept_whole() -> None:
    """The conference and member raw payloads are the provider's objects, unknown keys kept."""
    member = bandwidth_member(newThing=True)
    document = bandwidth_conference(activeMembers=[member], region="eu")
    state, members = parse_bandwidth_conference(document)
    assert state.raw == document
    assert members[0].raw == member


@pytest.mark.parametrize(
    "document",
    [None, [], "x", {}, {"id": None}, {"id": ""}, {"id": BW_ID, "activeMembers": {}},
     {"id": BW_ID, "activeMembers": "x"}, {"id": BW_ID, "activeMembers": [None]},
     {"id": BW_ID, "activeMembers": [{"mute": True}]},
     {"id": BW_ID, "activeMembers": [{"callId": 5}]}],
)
def test_wrong_shape_is_bad_response(document: object) -> None:
    """A document that is not a conference object with identified members is a BadResponse."""
    with pytest.raises(BadResponse) as caught:
        parse_bandwidth_conference(document)
    assert caught.value.provider == "bandwidth"
    assert caught.value.excerpt is not None
    assert len(caught.value.excerpt) <= 200
