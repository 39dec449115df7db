"""Ground truth: it agrees with what the endpoints serve, and its export endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest

from poller.model import Provider
from poller.simulator import Simulator, VirtualClock, ground_truth, served_conferences

TELNYX_AUTH = {"Authorization": "Bearer KEYSIMULATOR0000TELNYX"}
BANDWIDTH_AUTH = httpx.BasicAuth("sim-api-user", "sim-api-password")


async def _served(client: httpx.AsyncClient, conference: dict[str, Any]
                  ) -> tuple[int, str | None, dict[str, Any], dict[str, dict[str, Any]]]:
    """(HTTP status, normalised status, conference JSON, members by id) as served now."""
    conference_id = conference["conference_id"]
    if conference["provider"] == "telnyx":
        params = {"region": conference["region"]}
        response = await client.get(f"/v2/conferences/{conference_id}", params=params,
                                    headers=TELNYX_AUTH)
        if response.status_code != 200:
            return response.status_code, None, {}, {}
        data = response.json()["data"]
        participants = await client.get(f"/v2/conferences/{conference_id}/participants",
                                        params={**params, "page[size]": 250},
                                        headers=TELNYX_AUTH)
        members = {p["id"]: p for p in participants.json()["data"]}
        return 200, data["status"], data, members
    response = await client.get(f"/api/v2/accounts/9900000/conferences/{conference_id}",
                                auth=BANDWIDTH_AUTH)
    if response.status_code != 200:
        return response.status_code, None, {}, {}
    data = response.json()
    members = {m["callId"]: m for m in data["activeMembers"]}
    if data["completedTime"] is not None:
        status = "completed"
    else:
        status = "in_progress" if members else "init"
    return 200, status, data, members


def _check_member(provider: str, event: dict[str, Any], members: dict[str, dict[str, Any]],
                  iso_at: str) -> None:
    member = members.get(event["member_id"])
    if provider == "bandwidth":
        if event["kind"] == "left":
            assert member is None
            return
        assert member is not None
        assert (member["mute"], member["hold"], member["callIdsToCoach"]) == (
            event["muted"], event["on_hold"], event["coaching"])
        return
    assert member is not None
    expected_status = {"joining": "joining", "left": "left"}.get(event["kind"], "joined")
    assert member["status"] == expected_status
    assert (member["muted"], member["on_hold"], member["whisper_call_control_ids"]) == (
        event["muted"], event["on_hold"], event["coaching"])
    assert member["updated_at"] == iso_at


@pytest.mark.anyio
async def test_truth_agrees_with_what_the_endpoints_serve(
        client: httpx.AsyncClient, simulator: Simulator, clock: VirtualClock) -> None:
    """At every truth event's time, both providers' endpoints show exactly that event's state."""
    truth = ground_truth(simulator, None)
    checked = 0
    for conference in truth["conferences"]:
        for change in conference["status_changes"]:
            at = simulator.to_ms(_parse(change["at"]))
            clock.set(simulator.to_datetime(at - 1))
            before = await _served(client, conference)
            assert before[1] == change["from"], (conference["conference_id"], change)
            assert before[0] == (404 if change["from"] is None else 200)
            clock.set(simulator.to_datetime(at))
            status_code, status, data, _ = await _served(client, conference)
            assert (status_code, status) == (200, change["to"])
            if conference["provider"] == "telnyx":
                assert data["updated_at"] == change["at"]
                if status == "completed":
                    assert data["end_reason"] == change["end_reason"] == change["end_cause"]
                    assert data.get("ended_by") == change["ended_by"]
            elif status == "completed":
                assert data["completedTime"] == change["at"]
                assert change["end_reason"] is None
        for event in conference["member_events"]:
            clock.set(_parse(event["at"]))
            _, _, _, members = await _served(client, conference)
            _check_member(conference["provider"], event, members, event["at"])
            checked += 1
        gone_at = simulator.to_ms(_parse(conference["gone_at"]))
        clock.set(simulator.to_datetime(gone_at))
        assert (await _served(client, conference))[0] == 404
    kinds = {event["kind"] for c in truth["conferences"] for event in c["member_events"]}
    assert kinds == {"joining", "joined", "muted", "unmuted", "held", "unheld",
                     "coaching_changed", "left"}
    assert checked > 200


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_truth_until_now_holds_only_the_past(simulator: Simulator, clock: VirtualClock) -> None:
    """Truth up to a moment lists no later event, no later conference and no later ending."""
    clock.advance(600)
    now = simulator.now_ms()
    truth = ground_truth(simulator, now)
    whole = ground_truth(simulator, None)
    assert 0 < len(truth["conferences"]) < len(whole["conferences"])
    for conference in truth["conferences"]:
        times = [c["at"] for c in conference["status_changes"]]
        times += [e["at"] for e in conference["member_events"]]
        assert all(simulator.to_ms(_parse(at)) <= now for at in times)
        if conference["completed_at"] is None:
            assert conference["end_reason"] is None
            assert conference["end_cause"] is None
    assert any(c["completed_at"] is None for c in truth["conferences"])


@pytest.mark.anyio
async def test_sim_endpoints_export_truth_ids_and_clock(
        client: httpx.AsyncClient, simulator: Simulator, clock: VirtualClock) -> None:
    """``/_sim/truth``, ``/_sim/conferences`` and ``/_sim/clock`` serve what the methods say."""
    everything = await client.get("/_sim/truth", params={"until": "all"})
    assert everything.json() == ground_truth(simulator, None)
    until_now = await client.get("/_sim/truth")
    assert until_now.json() == ground_truth(simulator, simulator.now_ms())
    listed = (await client.get("/_sim/conferences")).json()
    assert listed == served_conferences(simulator)
    assert [c["id"] for c in listed["telnyx"]["conferences"]] == list(
        simulator.conference_ids(Provider.TELNYX))
    assert listed["bandwidth"]["account_id"] == "9900000"
    before = clock.now()
    moved = await client.post("/_sim/clock", json={"advance_seconds": 90})
    assert moved.status_code == 200
    assert (clock.now() - before).total_seconds() == 90
    assert moved.json()["now"] == simulator.iso(simulator.now_ms())
    assert (await client.post("/_sim/clock", json={"advance_seconds": -5})).status_code == 400
    assert (await client.get("/_sim/truth", params={"until": "yesterday"})).status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        b'{"advance_seconds": 1e308}',
        b'{"advance_seconds": 1e13}',
        b'{"advance_seconds": Infinity}',
        b'{"advance_seconds": -Infinity}',
        b'{"advance_seconds": NaN}',
        b'{"advance_seconds": "soon"}',
        b'{"advance_seconds": -5}',
        b'{"seconds": 5}',
        b"[5]",
        b"not json",
    ],
)
@pytest.mark.anyio
async def test_clock_refuses_unusable_advances(
        client: httpx.AsyncClient, clock: VirtualClock, body: bytes) -> None:
    """Non-finite, negative, overflowing or missing ``advance_seconds`` is a 400, clock kept."""
    before = clock.now()
    response = await client.post("/_sim/clock", content=body,
                                 headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert "error" in response.json()
    assert clock.now() == before
