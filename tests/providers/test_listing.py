"""The clients' ``list_conferences`` against the simulator (every page, both providers' paging)
and against odd list responses (strange items skipped with a warning, bad links not followed)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from poller.config import BasicCredentials, OAuth2Credentials
from poller.errors import BadResponse
from poller.model import Provider
from poller.providers import (
    BandwidthClient,
    TelnyxClient,
    build_client,
)
from poller.providers.listing import next_link
from poller.simulator import ScenarioConfig, Simulator, VirtualClock, create_app

SIM_KEY = "KEYSIMULATOR0000TELNYX"


def _world(conferences: int = 30) -> tuple[Simulator, VirtualClock, httpx.ASGITransport]:
    clock = VirtualClock()
    sim = Simulator(seed=5, clock=clock, scenario=ScenarioConfig.lively(conferences))
    return sim, clock, httpx.ASGITransport(app=create_app(sim))


def _busiest(sim: Simulator, provider: Provider) -> int:
    lives = list(sim.timelines(provider))
    return max((t.created_ms for t in lives),
               key=lambda at: sum(t.exists_at(at) for t in lives))


def _telnyx(transport: httpx.AsyncBaseTransport, clock: VirtualClock, page_size: int = 250
            ) -> TelnyxClient:
    return TelnyxClient(account="tx", api_key=SIM_KEY, base_url="http://sim/v2",
                        transport=transport, clock=clock.now, page_size=page_size)


def _bandwidth(transport: httpx.AsyncBaseTransport, clock: VirtualClock) -> BandwidthClient:
    client = build_client(
        Provider.BANDWIDTH, account="bw", account_id="9900000", base_url="http://sim/api/v2",
        transport=transport, clock=clock.now,
        credentials=OAuth2Credentials("sim-client-id", "sim-client-secret",
                                      token_url="http://sim/api/v1/oauth2/token"))
    assert isinstance(client, BandwidthClient)
    return client


@pytest.mark.anyio
async def test_telnyx_listing_walks_every_page_of_each_region() -> None:
    """Small pages add up to every existing conference of the region, each parsed, paced once
    per request."""
    sim, clock, transport = _world()
    at_ms = _busiest(sim, Provider.TELNYX)
    clock.set(sim.to_datetime(at_ms))
    paced: list[int] = []

    async def pace() -> None:
        paced.append(1)

    requests = 0
    async with _telnyx(transport, clock, page_size=2) as client:
        for region in ("US", "Europe"):
            listing = await client.list_conferences(region=region, pace=pace)
            requests += listing.requests
            expected = {t.conference_id: t for t in sim.timelines(Provider.TELNYX)
                        if t.exists_at(at_ms) and t.region == region}
            assert set(listing.by_id()) == set(expected)
            assert listing.complete
            assert listing.requests == max(1, -(-len(expected) // 2))
            assert listing.region == (None if region == "US" else region)
            for item in listing.conferences:
                life = expected[item.conference_id]
                assert item.conference.status == life.status_at(at_ms).value
                assert item.conference.name == life.name
                if item.is_completed:
                    assert item.conference.end_reason == life.end_cause.value
    assert len(paced) == requests > 2


@pytest.mark.anyio
async def test_bandwidth_listing_follows_link_headers() -> None:
    """Every page is read through ``Link`` (the first request's ``pageSize`` set to 3 on the
    way, as a server with a smaller default would page), oldest first, ``minCreatedTime``
    honoured."""
    sim, clock, transport = _world(conferences=30)
    at_ms = _busiest(sim, Provider.BANDWIDTH)
    clock.set(sim.to_datetime(at_ms))
    expected = sorted((t for t in sim.timelines(Provider.BANDWIDTH) if t.exists_at(at_ms)),
                      key=lambda t: (t.created_ms, t.conference_id))
    requests: list[httpx.Request] = []

    class SmallPages(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/conferences") and "pageSize" not in str(request.url):
                request = httpx.Request(request.method, request.url.copy_add_param(
                    "pageSize", "3"), headers=request.headers)
            requests.append(request)
            return await transport.handle_async_request(request)

    async with _bandwidth(SmallPages(), clock) as client:
        listing = await client.list_conferences()
        assert [c.conference_id for c in listing.conferences] == [
            t.conference_id for t in expected]
        assert listing.complete
        assert listing.requests == -(-len(expected) // 3) > 1
        assert all(not c.members_known for c in listing.conferences)
        assert {c.is_completed for c in listing.conferences} == {True, False}
        assert not [w for w in listing.warnings if "activeMembers" in w]
        middle = expected[len(expected) // 2]
        newer = await client.list_conferences(min_created_time=sim.to_datetime(
            middle.created_ms))
        assert [c.conference_id for c in newer.conferences] == [
            t.conference_id for t in expected if t.created_ms >= middle.created_ms]
    listed = [r for r in requests if r.url.path.endswith("/conferences")]
    assert all(r.headers["Authorization"].startswith("Bearer ") for r in listed)


def _mock(handler: Any) -> httpx.MockTransport:
    return httpx.MockTransport(handler)


@pytest.mark.anyio
async def test_strange_telnyx_items_are_skipped_with_a_warning() -> None:
    """An item that is not an object, has no ID or a field of the wrong type is left out and
    noted; the rest is kept."""
    good = {"record_type": "conference", "id": "c-1", "name": "a", "status": "weird_new",
            "created_at": "2019-01-23T18:10:02Z"}
    mistyped = {"record_type": "conference", "id": "c-2", "created_at": "not a time"}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": [good, 42, {"name": "no id"}, mistyped],
                                         "meta": {"page_number": 1, "total_pages": 1}})

    clock = VirtualClock()
    client = TelnyxClient(account="tx", api_key="KEYsecret-abc", base_url="http://t/v2",
                          transport=_mock(handler), clock=clock.now)
    async with client:
        listing = await client.list_conferences()
    assert [c.conference_id for c in listing.conferences] == ["c-1"]
    assert listing.conferences[0].conference.status == "weird_new"
    assert len([w for w in listing.warnings if "skipped" in w]) == 3
    assert any("created_at: expected an ISO 8601 timestamp" in w for w in listing.warnings)
    assert any("unknown value 'weird_new'" in w for w in listing.warnings)
    assert "KEYsecret-abc" not in json.dumps(listing.warnings)


@pytest.mark.anyio
async def test_a_list_that_is_not_a_list_is_a_bad_response() -> None:
    """A page whose ``data`` is not an array fails the listing as ``BadResponse``."""
    client = TelnyxClient(account="tx", api_key="KEYsecret-abc", base_url="http://t/v2",
                          transport=_mock(lambda r: httpx.Response(200, json={"data": {}})))
    async with client:
        with pytest.raises(BadResponse):
            await client.list_conferences()


@pytest.mark.anyio
async def test_telnyx_repeated_page_stops_the_walk() -> None:
    """A server that answers page 1 for every page number is not followed forever."""
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": [{"id": "c-1"}], "meta": {
            "page_number": 1, "total_pages": 5, "page_size": 1}})

    client = TelnyxClient(account="tx", api_key="KEYsecret-abc", base_url="http://t/v2",
                          transport=_mock(handler))
    async with client:
        listing = await client.list_conferences()
    assert not listing.complete
    assert listing.requests == 2
    assert [c.conference_id for c in listing.conferences] == ["c-1"]


@pytest.mark.parametrize(("link", "followed"), [
    ('<http://bw/api/v2/accounts/9900000/conferences?pageToken=abc>; rel="next"', True),
    ('<https://evil.example/api/v2/accounts/9900000/conferences?x=1>; rel="next"', False),
    ('<http://bw/api/v2/accounts/9900000/calls?pageToken=abc>; rel="next"', False),
])
@pytest.mark.anyio
async def test_bandwidth_next_link_only_within_the_account_list(link: str, followed: bool
                                                                ) -> None:
    """Credentials go only to the account's own conference list: other links are not
    followed and the listing says it is incomplete."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if "pageToken" in str(request.url):
            return httpx.Response(200, json=[{"id": "c-2", "completedTime": None}])
        return httpx.Response(200, json=[{"id": "c-1"}], headers={"Link": link})

    client = BandwidthClient(account="bw", account_id="9900000", base_url="http://bw/api/v2",
                             credentials=BasicCredentials("u", "p"), transport=_mock(handler))
    async with client:
        listing = await client.list_conferences()
    assert listing.complete is followed
    assert [c.conference_id for c in listing.conferences] == (
        ["c-1", "c-2"] if followed else ["c-1"])
    assert len(seen) == (2 if followed else 1)


@pytest.mark.parametrize(("header", "expected"), [
    (None, None),
    ('<https://a/x?p=1>; rel="next"', "https://a/x?p=1"),
    ('<https://a/prev>; rel="prev", <https://a/n,ext>; rel="next"', "https://a/n,ext"),
    ("<https://a/x>; rel=next", "https://a/x"),
    ('<https://a/x>; rel="first"', None),
    ("garbage", None),
])
def test_next_link_parsing(header: str | None, expected: str | None) -> None:
    """RFC 8288 ``Link`` values: the ``next`` target, commas inside URLs kept."""
    assert next_link(header) == expected
