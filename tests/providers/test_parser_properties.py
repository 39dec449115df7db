"""Property tests: the parsers raise nothing but BadResponse on arbitrary JSON."""

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
    """Documented fields holding arbitrary JSON never crash the parser."""
    try:
        state = parse_telnyx_conference({"data": data})
    except BadResponse:
        assert not (isinstance(data.get("id"), str) and data["id"])
        return
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
    """Participants with arbitrary field values and arbitrary meta never crash the parser."""
    try:
        page = parse_telnyx_participants({"data": items, "meta": meta})
    except BadResponse:
        assert any(not (isinstance(i.get("id"), str) and i["id"]) for i in items)
        return
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
    """A conference and members with arbitrary field values never crash the parser."""
    if isinstance(document.get("activeMembers"), list):
        document = document | {"activeMembers": members}
    try:
        state, parsed = parse_bandwidth_conference(document)
    except BadResponse:
        return
    aware_or_none(state)
    assert state.status in {"init", "in_progress", "completed"}
    assert state.end_reason is None
    assert state.provider_status is None
    assert (state.status == "in_progress") == (bool(parsed) and state.status != "completed")
