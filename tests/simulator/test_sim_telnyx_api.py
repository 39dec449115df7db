"""The simulated Telnyx endpoints, success and error, validated against the Telnyx OpenAPI spec."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from poller.model import Provider
from poller.simulator import FaultConfig, FaultKind, Simulator, VirtualClock, create_app
from poller.simulator.timeline import ConferenceTimeline

CONFERENCE = "/conferences/{id}"
PARTICIPANTS = "/conferences/{conference_id}/participants"
TELNYX_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _move(clock: VirtualClock, sim: Simulator, at_ms: int) -> None:
    clock.set(sim.to_datetime(at_ms))


def _busiest(sim: Simulator) -> ConferenceTimeline:
    return max(sim.timelines(Provider.TELNYX), key=lambda t: len(t.members))


async def _get(client: httpx.AsyncClient, path: str, headers: dict[str, str],
               **params: Any) -> httpx.Response:
    return await client.get(f"/v2{path}", params=params, headers=headers)


@pytest.mark.anyio
async def test_conference_matches_spec_in_every_status(
        client: httpx.AsyncClient, simulator: Simulator, clock: VirtualClock,
        telnyx_spec: Any, telnyx_auth: dict[str, str]) -> None:
    """Every conference, at each status it passes through, is a spec-valid Conference."""
    seen = set()
    for life in simulator.timelines(Provider.TELNYX):
        for at_ms in (life.created_ms, life.in_progress_ms, life.ended_ms, life.gone_ms - 1):
            _move(clock, simulator, at_ms)
            response = await _get(client, f"/conferences/{life.conference_id}", telnyx_auth,
                                  region=life.region)
            assert response.status_code == 200
            telnyx_spec.validate_response(response.json(), CONFERENCE, "get", 200)
            data = response.json()["data"]
            seen.add(data["status"])
            for name in ("created_at", "updated_at", "expires_at"):
                assert TELNYX_TIME.match(data[name]), data[name]
            assert ("end_reason" in data) == (data["status"] == "completed")
            if "ended_by" in data:
                assert set(data["ended_by"]) == {"call_control_id", "call_session_id"}
    assert seen == {"init", "in_progress", "completed"}


@pytest.mark.anyio
async def test_participants_match_spec_and_pages_add_up(
        client: httpx.AsyncClient, simulator: Simulator, clock: VirtualClock,
        telnyx_spec: Any, telnyx_auth: dict[str, str]) -> None:
    """Participant pages are spec-valid, their meta is coherent and together they list all."""
    life = _busiest(simulator)
    _move(clock, simulator, life.ended_ms - 1)
    path = f"/conferences/{life.conference_id}/participants"
    whole = await _get(client, path, telnyx_auth, region=life.region, **{"page[size]": 250})
    telnyx_spec.validate_response(whole.json(), PARTICIPANTS, "get", 200)
    everyone = whole.json()["data"]
    assert len(everyone) == len(life.members) > 3
    assert {p["status"] for p in everyone} <= {"joining", "joined", "left"}

    default = await _get(client, path, telnyx_auth, region=life.region)
    assert default.json()["meta"]["page_size"] == 20
    paged: list[dict[str, Any]] = []
    page_number = 1
    while True:
        page = await _get(client, path, telnyx_auth, region=life.region,
                          **{"page[number]": page_number, "page[size]": 3})
        telnyx_spec.validate_response(page.json(), PARTICIPANTS, "get", 200)
        meta = page.json()["meta"]
        assert meta == {"page_number": page_number, "page_size": 3,
                        "total_pages": -(-len(everyone) // 3), "total_results": len(everyone)}
        paged += page.json()["data"]
        if page_number >= meta["total_pages"]:
            break
        page_number += 1
    assert paged == everyone
    for participant in everyone:
        assert participant["conference"] == {"id": life.conference_id, "name": life.name}
        assert TELNYX_TIME.match(participant["created_at"])
        assert TELNYX_TIME.match(participant["updated_at"])


@pytest.mark.anyio
async def test_participants_that_left_stay_listed(
        client: httpx.AsyncClient, simulator: Simulator, clock: VirtualClock,
        telnyx_auth: dict[str, str]) -> None:
    """After a conference ends every participant is still listed, with status ``left``."""
    life = _busiest(simulator)
    _move(clock, simulator, life.ended_ms)
    response = await _get(client, f"/conferences/{life.conference_id}/participants",
                          telnyx_auth, region=life.region, **{"page[size]": 250})
    assert [p["status"] for p in response.json()["data"]] == ["left"] * len(life.members)


@pytest.mark.parametrize(
    ("headers", "path", "params", "status", "code", "spec_status"),
    [
        pytest.param({}, "conference", {}, 401, "10009", 401, id="no-credentials"),
        pytest.param({"Authorization": "Bearer wrong"}, "participants", {}, 401, "10009", 401,
                     id="wrong-key"),
        pytest.param({"Authorization": "Basic Zm9vOmJhcg=="}, "conference", {}, 401, "10009",
                     401, id="basic-instead-of-bearer"),
        pytest.param({"Authorization": "Bearer KEYSIMULATOR0000FORBIDDEN"}, "conference", {},
                     403, "10010", None, id="forbidden-key"),
        pytest.param(None, "unknown", {}, 404, "90058", 404, id="unknown-conference"),
        pytest.param(None, "unknown-participants", {}, 404, "90058", 404,
                     id="unknown-conference-participants"),
        pytest.param(None, "participants", {"region": "Mars"}, 422, "10032", 422,
                     id="region-not-in-enum"),
        pytest.param(None, "conference", {"region": "us"}, 422, "10032", 422,
                     id="region-case-matters"),
        pytest.param(None, "participants", {"page[size]": "251"}, 422, "10033", 422,
                     id="page-size-over-250"),
        pytest.param(None, "participants", {"page[number]": "0"}, 422, "10033", 422,
                     id="page-number-zero"),
        pytest.param(None, "participants", {"page[size]": "ten"}, 422, "10015", 422,
                     id="page-size-not-a-number"),
    ],
)
@pytest.mark.anyio
async def test_errors_match_spec(
        client: httpx.AsyncClient, simulator: Simulator, clock: VirtualClock,
        telnyx_spec: Any, telnyx_auth: dict[str, str], headers: dict[str, str] | None,
        path: str, params: dict[str, str], status: int, code: str,
        spec_status: int | None) -> None:
    """Each failure answers the Telnyx status, error code and ``errors[]`` body."""
    life = next(t for t in simulator.timelines(Provider.TELNYX) if t.region == "US")
    _move(clock, simulator, life.in_progress_ms)
    urls = {
        "conference": f"/conferences/{life.conference_id}",
        "participants": f"/conferences/{life.conference_id}/participants",
        "unknown": "/conferences/3fa85f64-5717-4562-b3fc-2c963f66afa6",
        "unknown-participants": "/conferences/3fa85f64-5717-4562-b3fc-2c963f66afa6/participants",
    }
    response = await _get(client, urls[path], telnyx_auth if headers is None else headers,
                          **params)
    assert response.status_code == status
    body = response.json()
    assert body["errors"][0]["code"] == code
    if status == 422:
        assert body["errors"][0]["source"]["parameter"] in params
    if spec_status is None:
        telnyx_spec.validate_schema(body, "call-control_Errors")
    else:
        # GET /conferences/{id} declares only 200 and 404; its siblings declare 401 and 422.
        operation = CONFERENCE if path in ("conference", "unknown") else PARTICIPANTS
        if not telnyx_spec.declares(operation, "get", spec_status):
            operation = PARTICIPANTS
        telnyx_spec.validate_response(body, operation, "get", spec_status)


@pytest.mark.anyio
async def test_conference_outside_default_region_needs_its_region(
        client: httpx.AsyncClient, simulator: Simulator, clock: VirtualClock,
        telnyx_auth: dict[str, str]) -> None:
    """A conference held outside ``US`` is 404 unless the request names its region."""
    life = next(t for t in simulator.timelines(Provider.TELNYX) if t.region != "US")
    _move(clock, simulator, life.in_progress_ms)
    path = f"/conferences/{life.conference_id}"
    assert (await _get(client, path, telnyx_auth)).status_code == 404
    assert (await _get(client, path, telnyx_auth, region=life.region)).status_code == 200


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [(FaultKind.RATE_LIMITED, 429, "10011"), (FaultKind.SERVER_ERROR, 500, "10007"),
     (FaultKind.UNAVAILABLE, 503, "10007")],
)
@pytest.mark.anyio
async def test_injected_http_errors_match_spec(
        clock: VirtualClock, telnyx_spec: Any, telnyx_auth: dict[str, str], fault: FaultKind,
        status: int, code: str) -> None:
    """Injected 429 / 500 / 503 carry Telnyx error bodies; 429 has the rate-limit headers."""
    sim = Simulator(seed=3, clock=clock, faults=FaultConfig(rates={fault: 1.0},
                                                            retry_after_seconds=7))
    transport = httpx.ASGITransport(app=create_app(sim))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim.test") as client:
        conference_id = sim.conference_ids(Provider.TELNYX)[0]
        response = await _get(client, f"/conferences/{conference_id}", telnyx_auth)
    assert response.status_code == status
    telnyx_spec.validate_schema(response.json(), "call-control_Errors")
    assert response.json()["errors"][0]["code"] == code
    if status == 429:
        assert response.headers["x-ratelimit-remaining"] == "0"
        assert response.headers["x-ratelimit-reset"] == "7"
        assert int(response.headers["x-ratelimit-limit"]) > 0


@pytest.mark.parametrize("path", ["/v2/no-such-resource", "/v2/conferences/x/y/z"])
@pytest.mark.anyio
async def test_unknown_path_is_the_specs_generic_not_found(
        client: httpx.AsyncClient, telnyx_spec: Any, telnyx_auth: dict[str, str],
        path: str) -> None:
    """An unknown ``/v2`` path answers the spec's ``resource_not_found`` example (10007)."""
    response = await client.get(path, headers=telnyx_auth)
    assert response.status_code == 404
    example = telnyx_spec.response(CONFERENCE, "get", 404)["content"]["application/json"][
        "examples"]["resource_not_found"]["value"]["errors"][0]
    error = response.json()["errors"][0]
    assert {key: error[key] for key in ("code", "title", "detail")} == example
    telnyx_spec.validate_response(response.json(), CONFERENCE, "get", 404)
