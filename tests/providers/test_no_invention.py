"""Property test: a mutated provider body never invents history.

Spec-valid Telnyx and Bandwidth bodies are mutated (fields of the wrong type, missing and extra
fields, odd timestamps, another conference's ID) and served to the real clients through a
``MockTransport``. Whatever comes back is planned against a stored in-progress state with the
recorder's own pure core (``poller.store.diff``): either the poll fails (and changes nothing),
or every status transition and member event it plans is one the body states.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poller.errors import ProviderError
from poller.model import Observation
from poller.providers import parse_timestamp
from poller.store.diff import plan_observation

from .fakes import (
    BW_ID,
    START,
    TELNYX_ID,
    FakeClock,
    FakeServer,
    bandwidth_client,
    bandwidth_conference,
    bandwidth_member,
    bandwidth_target,
    telnyx_client,
    telnyx_conference,
    telnyx_participant,
    telnyx_target,
)

ODD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.lists(st.text(max_size=5), max_size=2), st.dictionaries(st.text(max_size=5),
                                                               st.integers(), max_size=2),
    st.sampled_from(["", "2024-05-01T12:00:00", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
                     "2024-02-30T00:00:00Z", "yesterday", "another-conference", "completed",
                     "left", "joined", "init"]),
)


def mutations(base: dict[str, Any], extra_keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """``base`` with some fields replaced by odd values, some removed, some added."""
    keys = st.sampled_from(sorted(base) + extra_keys)
    replaced = st.dictionaries(keys, ODD_VALUES, max_size=4)
    removed = st.sets(st.sampled_from(sorted(base)), max_size=3)
    return st.tuples(replaced, removed).map(
        lambda change: {k: v for k, v in (base | change[0]).items() if k not in change[1]})


def serve(handler: Any) -> FakeServer:
    return FakeServer(handler)


def fetch(client_factory: Any, target: Any, handler: Any, at: float) -> Observation | None:
    """The observation the real client makes of what ``handler`` serves, or ``None`` when
    the poll fails (a ``ProviderError``: nothing is recorded from it)."""
    async def run() -> Observation | None:
        async with client_factory(serve(handler), FakeClock(START + timedelta(seconds=at))
                                  ) as client:
            try:
                observation: Observation = await client.fetch(target)
            except ProviderError:
                return None
            return observation
    return asyncio.run(run())


def planned_after_baseline(baseline: Observation, observation: Observation) -> Any:
    """What the recorder would write for ``observation`` after ``baseline`` was recorded."""
    first = plan_observation(None, {}, baseline, last_seen=None)
    return plan_observation(first.conference, first.members, observation,
                            last_seen=baseline.observed_at)


def telnyx_handler(conference: dict[str, Any], participants: list[Any]) -> Any:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/participants"):
            return httpx.Response(200, json={"data": participants, "meta": {
                "page_number": 1, "total_pages": 1, "page_size": 250}})
        return httpx.Response(200, json={"data": conference})
    return handle


BASE_PARTICIPANT = telnyx_participant(status="joined", conference={"id": TELNYX_ID, "name": "1"})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations(telnyx_conference(status="in_progress", end_reason=None, ended_by=None),
                 ["surprise"]),
       st.lists(mutations(BASE_PARTICIPANT, ["surprise"]), max_size=2))
def test_telnyx_bodies_never_invent_history(conference: dict[str, Any],
                                            participants: list[dict[str, Any]]) -> None:
    """Every transition a mutated Telnyx body leads to is to the status it states; every member
    event is about a participant it lists, or one it no longer lists (left)."""
    base = {"id": TELNYX_ID, **telnyx_conference(status="in_progress", end_reason=None,
                                                 ended_by=None)}
    baseline = fetch(telnyx_client, telnyx_target(), telnyx_handler(base, [BASE_PARTICIPANT]), 0)
    observation = fetch(telnyx_client, telnyx_target(),
                        telnyx_handler(conference, participants), 10)
    assert baseline is not None
    if observation is None:
        return
    assert conference.get("id") == TELNYX_ID, "an answer about another conference is refused"
    plan = planned_after_baseline(baseline, observation)
    stated_status = conference.get("status")
    for transition in plan.transitions:
        assert transition.to_status == (stated_status if isinstance(stated_status, str)
                                        else "unknown")
    listed = {p["id"] for p in participants}
    for event in plan.member_events:
        assert event.member_id in listed or (
            event.kind == "left" and event.member_id == BASE_PARTICIPANT["id"]), event


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations(bandwidth_conference(), ["surprise"]),
       st.lists(mutations(bandwidth_member(), ["surprise"]), max_size=2))
def test_bandwidth_bodies_never_invent_history(document: dict[str, Any],
                                               members: list[dict[str, Any]]) -> None:
    """A mutated Bandwidth body completes a conference only when it states a readable
    ``completedTime``, is in progress only with members listed, and its member events are
    about members it lists (or no longer lists)."""
    if isinstance(document.get("activeMembers"), list):
        document = document | {"activeMembers": members}
    base = bandwidth_conference()
    baseline = fetch(bandwidth_client, bandwidth_target(),
                     lambda r: httpx.Response(200, json=base), 0)
    observation = fetch(bandwidth_client, bandwidth_target(),
                        lambda r: httpx.Response(200, json=document), 10)
    assert baseline is not None
    if observation is None:
        return
    assert document.get("id") == BW_ID, "an answer about another conference is refused"
    completed = document.get("completedTime")
    states_completion = (isinstance(completed, str) and completed != ""
                         and parse_timestamp(completed, "completedTime", []) is not None)
    listed_members = document.get("activeMembers") or []
    plan = planned_after_baseline(baseline, observation)
    for transition in plan.transitions:
        if transition.to_status == "completed":
            assert states_completion
        elif transition.to_status == "in_progress":
            assert listed_members
            assert not states_completion
        else:
            assert transition.to_status == "init"
            assert not listed_members
    listed = {m["callId"] for m in listed_members}
    for event in plan.member_events:
        assert event.member_id in listed or (
            event.kind == "left" and event.member_id == base["activeMembers"][0]["callId"]), event
