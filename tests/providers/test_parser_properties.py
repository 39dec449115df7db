"""Property tests: the parsers raise nothing but BadResponse on arbitrary JSON, and accept a
document exactly when every field it states has the type the spec gives it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poller.errors import BadResponse
from poller.providers import (
    parse_bandwidth_conference,
    parse_telnyx_conference,
    parse_telnyx_participants,
    parse_timestamp,
)

from .fakes import bandwidth_conference, bandwidth_member, telnyx_conference, telnyx_participant

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30))
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=20,
)


def mutated(base: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """The documented object with some of its fields replaced by arbitrary JSON."""
    keys = st.sampled_from(sorted(base))
    return st.dictionaries(keys, json_values, max_size=len(base)).map(lambda new: base | new)


def check(parse: Any, document: object) -> None:
    error: BadResponse | None = None
    try:
        result = parse(document, warnings=[])
    except BadResponse as exc:
        error = exc
    if error is None:
        assert result is not None
    else:
        assert error.excerpt is None or len(error.excerpt) <= 200


TIMESTAMPS = frozenset({"created_at", "updated_at", "expires_at", "createdTime", "completedTime"})


def conforms(value: object, example: object, key: str, *, nested: bool = False) -> bool:
    """Whether ``value`` has the type the spec gives field ``key`` (``example`` is the spec's
    example value): null is "not reported"; timestamps must be readable. Only the object's own
    ``id`` is required; a nested object's (a participant's ``conference.id``) is a plain
    string field."""
    if key == "id" and not nested:
        return isinstance(value, str) and value != ""
    if value is None:
        return True
    if key in TIMESTAMPS:
        return isinstance(value, str) and (
            (key == "completedTime" and value == "") or parse_timestamp(value, key, []) is not None)
    if isinstance(example, bool):
        return isinstance(value, bool)
    if isinstance(example, str):
        return isinstance(value, str)
    if isinstance(example, list):
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
    if isinstance(example, dict):
        return isinstance(value, dict) and all(conforms(value.get(k), v, k, nested=True)
                                               for k, v in example.items())
    return True


def all_conform(document: dict[str, Any], example: dict[str, Any]) -> bool:
    """Every field of ``example`` in ``document`` has the spec's type (``id`` is required)."""
    return conforms(document.get("id"), None, "id") and all(
        conforms(document.get(key), value, key) for key, value in example.items())


def aware_or_none(state: Any) -> None:
    for name in ("created_at", "updated_at", "expires_at", "completed_at"):
        value = getattr(state, name, None)
        assert value is None or value.utcoffset() == timedelta(0)


@given(json_values)
def test_telnyx_conference_on_arbitrary_json(document: object) -> None:
    """Any JSON value: a ConferenceState or a BadResponse, nothing else."""
    check(parse_telnyx_conference, document)
    check(parse_telnyx_conference, {"data": document})


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(mutated(telnyx_conference()))
def test_telnyx_conference_with_mutated_fields(data: dict[str, Any]) -> None:
    """Documented fields holding arbitrary JSON: refused exactly when one of them is not of
    the spec's type; accepted otherwise, never crashing."""
    try:
        state = parse_telnyx_conference({"data": data})
    except BadResponse:
        assert not all_conform(data, telnyx_conference())
        return
    assert all_conform(data, telnyx_conference())
    aware_or_none(state)
    assert state.raw == data


@given(json_values)
def test_telnyx_participants_on_arbitrary_json(document: object) -> None:
    """Any JSON value: a ParticipantPage or a BadResponse, nothing else."""
    check(parse_telnyx_participants, document)
    check(parse_telnyx_participants, {"data": document, "meta": document})


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutated(telnyx_participant()), max_size=3), json_values)
def test_telnyx_participants_with_mutated_fields(items: list[dict[str, Any]],
                                                 meta: object) -> None:
    """Participants with arbitrary field values and arbitrary meta (which only guides paging)
    never crash the parser; a page is refused exactly when a participant field is mistyped."""
    example = telnyx_participant()
    try:
        page = parse_telnyx_participants({"data": items, "meta": meta})
    except BadResponse:
        assert not all(all_conform(item, example) for item in items)
        return
    assert all(all_conform(item, example) for item in items)
    assert len(page.members) == len(items)
    for member in page.members:
        aware_or_none(member)


@given(json_values)
def test_bandwidth_on_arbitrary_json(document: object) -> None:
    """Any JSON value: a (ConferenceState, members) pair or a BadResponse, nothing else."""
    check(parse_bandwidth_conference, document)
    check(parse_bandwidth_conference, {"id": "c", "activeMembers": document})


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(mutated(bandwidth_conference()), st.lists(mutated(bandwidth_member()), max_size=3))
def test_bandwidth_with_mutated_fields(document: dict[str, Any],
                                       members: list[dict[str, Any]]) -> None:
    """A conference and members with arbitrary field values never crash the parser, and are
    refused exactly when a field is not of the spec's type or a member names another
    conference."""
    if isinstance(document.get("activeMembers"), list):
        document = document | {"activeMembers": members}
    example = bandwidth_conference() | {"activeMembers": None}
    listed = document.get("activeMembers")
    valid = (all_conform(document, example)
             and (listed is None or isinstance(listed, list))
             and all(isinstance(m, dict) and all_conform(m | {"id": m.get("callId")},
                                                         bandwidth_member())
                     and m.get("conferenceId") in (None, document.get("id"))
                     for m in (listed if isinstance(listed, list) else [])))
    try:
        state, parsed = parse_bandwidth_conference(document)
    except BadResponse:
        assert not valid
        return
    assert valid
    aware_or_none(state)
    assert state.status in {"init", "in_progress", "completed"}
    assert state.end_reason is None
    assert state.provider_status is None
    assert (state.status == "in_progress") == (bool(parsed) and state.status != "completed")
