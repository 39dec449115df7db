"""The simulated list endpoints (Telnyx ``GET /conferences``, Bandwidth ``GET /accounts/{id}/
conferences``), validated against the providers' OpenAPI specs, with their paging and filters."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from poller.model import Provider
from poller.simulator import Simulator, VirtualClock

TELNYX_LIST = "/conferences"
BANDWIDTH_LIST = "/accounts/{accountId}/conferences"
ACCOUNT = "9900000"
LINK = re.compile(r'^<(?P<url>[^>]+)>; rel="next"$')


def _existing(sim: Simulator, provider: Provider, at_ms: int) -> list[Any]:
    return [t for t in sim.timelines(provider) if t.exists_at(at_ms)]


def _busy_moment(sim: Simulator) -> int:
    """The moment (ms) when the most Telnyx conferences exist at once."""
    moments = [t.created_ms for t in sim.timelines()]
    return max(moments, key=lambda at: len(_existing(sim, Provider.TELNYX, at))
               + len(_existing(sim, Provider.BANDWIDTH, at)))


@pytest.mark.anyio
async def test_telnyx_list_matches_spec_and_pages_add_up(
        client: httpx.AsyncClient, simulator: Simulator, clock: VirtualClock,
        telnyx_spec: Any, telnyx_auth: dict[str, str]) -> None:
    """Each region's list is spec-valid, holds exactly its existing conferences (completed
    ones too), newest expiry first, and its pages add up to the whole list."""
    at_ms = _busy_moment(simulator)
    clock.set(simulator.to_datetime(at_ms))
    listed_everywhere: set[str] = set()
    statuses: set[str] = set()
    for region in ("US", "Europe", "Australia", "Middle East"):
        response = await client.get("/v2/conferences", headers=telnyx_auth,
                                    params={"region": region, "page[size]": 250})
        assert response.status_code == 200
        telnyx_spec.validate_response(response.json(), TELNYX_LIST, "get", 200)
        data = response.json()["data"]
        expected = {t.conference_id for t in _existing(simulator, Provider.TELNYX, at_ms)
                    if t.region == region}
        assert {c["id"] for c in data} == expected
        expiries = [c["expires_at"] for c in data]
        assert expiries == sorted(expiries, reverse=True)
        listed_everywhere |= expected
        statuses |= {c["status"] for c in data}
        if len(data) >= 3:
            paged: list[str] = []
            number = 1
            while True:
                page = await client.get("/v2/conferences", headers=telnyx_auth, params={
                    "region": region, "page[size]": 2, "page[number]": number})
                telnyx_spec.validate_response(page.json(), TELNYX_LIST, "get", 200)
                meta = page.json()["meta"]
                assert meta == {"page_number": number, "page_size": 2,
                                "total_pages": -(-len(data) // 2), "total_results": len(data)}
                paged += [c["id"] for c in page.json()["data"]]
                if number >= meta["total_pages"]:
                    break
                number += 1
            assert paged == [c["id"] for c in data]
    assert listed_everywhere == {t.conference_id
                                 for t in _existing(simulator, Provider.TELNYX, at_ms)}
    assert len(statuses) >= 2, statuses


@pytest.mark.anyio
async def test_telnyx_list_filters_status_and_name(
        client: httpx.AsyncClient, simulator: Simulator, clock: VirtualClock,
        telnyx_spec: Any, telnyx_auth: dict[str, str]) -> None:
    """``filter[status]`` and ``filter[name]`` narrow the list; a bad status is 422."""
    at_ms = _busy_moment(simulator)
    clock.set(simulator.to_datetime(at_ms))
    everyone = [t for t in _existing(simulator, Provider.TELNYX, at_ms) if t.region == "US"]
    for status in ("init", "in_progress", "completed"):
        response = await client.get("/v2/conferences", headers=telnyx_auth,
                                    params={"filter[status]": status, "page[size]": 250})
        telnyx_spec.validate_response(response.json(), TELNYX_LIST, "get", 200)
        assert {c["id"] for c in response.json()["data"]} == {
            t.conference_id for t in everyone if t.status_at(at_ms).value == status}
    named = everyone[0]
    response = await client.get("/v2/conferences", headers=telnyx_auth,
                                params={"filter[name]": named.name})
    assert [c["id"] for c in response.json()["data"]] == [
        t.conference_id for t in everyone if t.name == named.name]
    response = await client.get("/v2/conferences", headers=telnyx_auth,
                                params={"filter[name]": named.name.upper() + "x"})
    assert response.json()["data"] == []
    bad = await client.get("/v2/conferences", headers=telnyx_auth,
                           params={"filter[status]": "over"})
    assert bad.status_code == 422
    telnyx_spec.validate_response(bad.json(), TELNYX_LIST, "get", 422)
    assert bad.json()["errors"][0]["source"]["parameter"] == "filter[status]"
    too_big = await client.get("/v2/conferences", headers=telnyx_auth,
                               params={"page[size]": 251})
    assert too_big.status_code == 422
    unauthorized = await client.get("/v2/conferences")
    assert unauthorized.status_code == 401
    telnyx_spec.validate_response(unauthorized.json(), TELNYX_LIST, "get", 401)


@pytest.mark.anyio
async def test_bandwidth_list_matches_spec_oldest_first_with_link_paging(
        client: httpx.AsyncClient, simulator: Simulator, clock: VirtualClock,
        bandwidth_spec: Any, bandwidth_basic: httpx.BasicAuth) -> None:
    """The list is a spec-valid array without ``activeMembers``, oldest first; following
    ``Link: <…>; rel="next"`` pages through all of it, filters kept."""
    at_ms = _busy_moment(simulator)
    clock.set(simulator.to_datetime(at_ms))
    url = f"/api/v2/accounts/{ACCOUNT}/conferences"
    whole = await client.get(url, auth=bandwidth_basic)
    assert whole.status_code == 200
    assert "Link" not in whole.headers
    bandwidth_spec.validate_response(whole.json(), BANDWIDTH_LIST, "get", 200)
    body = whole.json()
    expected = sorted(_existing(simulator, Provider.BANDWIDTH, at_ms),
                      key=lambda t: (t.created_ms, t.conference_id))
    assert [c["id"] for c in body] == [t.conference_id for t in expected]
    assert len(body) >= 3
    assert all("activeMembers" not in c for c in body)
    assert any(c["completedTime"] is not None for c in body)
    assert any(c["completedTime"] is None for c in body)

    pages: list[str] = []
    next_url: str | None = f"{url}?pageSize=2"
    while next_url is not None:
        page = await client.get(next_url, auth=bandwidth_basic)
        assert page.status_code == 200
        bandwidth_spec.validate_response(page.json(), BANDWIDTH_LIST, "get", 200)
        assert len(page.json()) <= 2
        pages += [c["id"] for c in page.json()]
        link = page.headers.get("Link")
        match = LINK.match(link) if link is not None else None
        assert link is None or match is not None, link
        next_url = match["url"] if match else None
        if next_url is not None:
            assert "pageSize=2" in next_url
            assert next_url.startswith("http://sim.test/")
    assert pages == [c["id"] for c in body]

    middle = expected[len(expected) // 2]
    since = simulator.iso(middle.created_ms)
    newer = await client.get(url, auth=bandwidth_basic, params={"minCreatedTime": since})
    assert [c["id"] for c in newer.json()] == [
        t.conference_id for t in expected if t.created_ms >= middle.created_ms]
    named = await client.get(url, auth=bandwidth_basic, params={"name": middle.name})
    assert [c["id"] for c in named.json()] == [middle.conference_id]


@pytest.mark.parametrize(("params", "status"), [
    ({"minCreatedTime": "yesterday"}, 400),
    ({"maxCreatedTime": "2022-06-21T19:13:21"}, 400),
    ({"pageSize": "0"}, 400),
    ({"pageSize": "1001"}, 400),
    ({"pageToken": "not-a-token"}, 400),
])
@pytest.mark.anyio
async def test_bandwidth_list_refuses_bad_parameters(
        client: httpx.AsyncClient, bandwidth_spec: Any, bandwidth_basic: httpx.BasicAuth,
        params: dict[str, str], status: int) -> None:
    """Bad times, sizes and tokens answer a spec-valid 400 ``validation`` error."""
    response = await client.get(f"/api/v2/accounts/{ACCOUNT}/conferences",
                                auth=bandwidth_basic, params=params)
    assert response.status_code == status
    bandwidth_spec.validate_response(response.json(), BANDWIDTH_LIST, "get", status)
    assert response.json()["type"] == "validation"


@pytest.mark.anyio
async def test_bandwidth_list_checks_credentials_and_account(
        client: httpx.AsyncClient, bandwidth_spec: Any, bandwidth_basic: httpx.BasicAuth
) -> None:
    """No credentials is 401, another account 403, both spec-valid."""
    none = await client.get(f"/api/v2/accounts/{ACCOUNT}/conferences")
    assert none.status_code == 401
    bandwidth_spec.validate_response(none.json(), BANDWIDTH_LIST, "get", 401)
    other = await client.get("/api/v2/accounts/1234567/conferences", auth=bandwidth_basic)
    assert other.status_code == 403
    bandwidth_spec.validate_response(other.json(), BANDWIDTH_LIST, "get", 403)
