"""The Telnyx client: requests, auth header, paging rules and the Observation it builds."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from poller.errors import BadResponse
from poller.model import Provider, TargetKey

from .fakes import (
    API_KEY,
    START,
    TELNYX_ID,
    FakeClock,
    FakeServer,
    telnyx_client,
    telnyx_conference,
    telnyx_ok,
    telnyx_participant,
    telnyx_target,
)


def people(start: int, count: int) -> list[dict[str, Any]]:
    return [telnyx_participant(id=f"p{n}") for n in range(start, start + count)]


def paged(total: int, page_size: int = 250, *, meta: bool = True, total_pages: bool = True,
          echo_page: int | None = None, ignore_page: bool = False) -> FakeServer:
    """A server with ``total`` participants served page by page, with optional misbehaviour."""
    everyone = people(0, total)

    def handle(request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/participants"):
            return httpx.Response(200, json={"data": telnyx_conference(status="in_progress")})
        size = int(request.url.params["page[size]"])
        number = 1 if ignore_page else int(request.url.params["page[number]"])
        answered = number if echo_page is None else echo_page
        rows = everyone[(number - 1) * size: number * size]
        body: dict[str, Any] = {"data": rows}
        if meta:
            body["meta"] = {"page_number": answered, "page_size": size,
                            "total_results": total}
            if total_pages:
                body["meta"]["total_pages"] = -(-total // size)
        return httpx.Response(200, json=body)

    return FakeServer(handle)


def participant_pages(server: FakeServer) -> list[str]:
    return [r.url.params["page[number]"] for r in server.requests
            if r.url.path.endswith("/participants")]


@pytest.mark.anyio
async def test_requests_and_auth_header() -> None:
    """One conference GET and one participants GET, both with the Bearer API key."""
    server = FakeServer(telnyx_ok())
    async with telnyx_client(server) as client:
        await client.fetch(telnyx_target())
    first, second = server.requests
    assert (first.method, first.url.path) == ("GET", f"/v2/conferences/{TELNYX_ID}")
    assert second.url.path == f"/v2/conferences/{TELNYX_ID}/participants"
    assert second.url.params["page[size]"] == "250"
    assert second.url.params["page[number]"] == "1"
    assert all(r.headers["Authorization"] == f"Bearer {API_KEY}" for r in server.requests)
    assert all(r.headers["Accept"] == "application/json" for r in server.requests)


@pytest.mark.anyio
async def test_region_sent_on_both_requests() -> None:
    """The target's region goes to the conference and the participants requests."""
    server = FakeServer(telnyx_ok())
    async with telnyx_client(server) as client:
        await client.fetch(telnyx_target(region="Europe"))
    assert [r.url.params["region"] for r in server.requests] == ["Europe", "Europe"]


@pytest.mark.anyio
async def test_observation_from_injected_clock() -> None:
    """The Observation carries the target, the clock's time, state and members."""
    clock = FakeClock()
    server = FakeServer(telnyx_ok(participants=people(0, 3)))
    async with telnyx_client(server, clock=clock) as client:
        observation = await client.fetch(telnyx_target())
    assert observation.observed_at == START
    assert observation.target == telnyx_target()
    assert observation.conference.conference_id == TELNYX_ID
    assert [m.member_id for m in observation.members] == ["p0", "p1", "p2"]
    assert observation.members_complete
    assert observation.warnings == ()


@pytest.mark.anyio
async def test_an_answer_about_another_conference_is_refused() -> None:
    """A conference answering with another id is never filed under the one polled: the poll
    fails as ``BadResponse`` naming both, before the participants are asked for."""
    server = FakeServer(telnyx_ok(telnyx_conference(id="someone-else")))
    async with telnyx_client(server) as client:
        with pytest.raises(BadResponse, match="about conference 'someone-else', not the one "
                                              "polled") as caught:
            await client.fetch(telnyx_target())
    assert (caught.value.conference_id, caught.value.http_status) == (TELNYX_ID, 200)
    assert len(server.requests) == 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("total", "requested", "count"),
    [
        (0, ["1"], 0),
        (1, ["1"], 1),
        (250, ["1"], 250),
        (251, ["1", "2"], 251),
        (600, ["1", "2", "3"], 600),
    ],
)
async def test_pages_until_total_pages(total: int, requested: list[str], count: int) -> None:
    """Participants are fetched page by page until meta.total_pages."""
    server = paged(total)
    async with telnyx_client(server) as client:
        observation = await client.fetch(telnyx_target())
    assert participant_pages(server) == requested
    assert len(observation.members) == count
    assert observation.members_complete
    assert observation.warnings == ()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("total", "max_pages", "requested", "complete"),
    [
        (10_001, 40, 40, False),
        (10_000, 40, 40, True),
        (751, 3, 3, False),
        (750, 3, 3, True),
        (300, 1, 1, False),
    ],
)
async def test_page_cap(total: int, max_pages: int, requested: int, complete: bool) -> None:
    """At most max_pages requests; stopping with pages left marks the members incomplete."""
    server = paged(total)
    async with telnyx_client(server, max_pages=max_pages) as client:
        observation = await client.fetch(telnyx_target())
    assert len(participant_pages(server)) == requested
    assert observation.members_complete is complete
    assert any("cap" in w for w in observation.warnings) is not complete


@pytest.mark.anyio
async def test_same_page_number_stops_the_loop() -> None:
    """A server answering page 1 to every request is not followed: stop, incomplete, warn."""
    server = paged(600, echo_page=1)
    async with telnyx_client(server) as client:
        observation = await client.fetch(telnyx_target())
    assert participant_pages(server) == ["1", "2"]
    assert len(observation.members) == 250
    assert not observation.members_complete
    assert any("repeats a page" in w for w in observation.warnings)


@pytest.mark.anyio
async def test_server_ignoring_page_parameter_stops_the_loop() -> None:
    """A server ignoring page[number] (same members, no page_number) is not followed."""
    server = paged(600, meta=False, ignore_page=True)
    async with telnyx_client(server) as client:
        observation = await client.fetch(telnyx_target())
    assert participant_pages(server) == ["1", "2"]
    assert len(observation.members) == 250
    assert not observation.members_complete


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("total", "meta", "requested", "count"),
    [
        (10, True, ["1"], 10),
        (10, False, ["1"], 10),
        (250, True, ["1", "2"], 250),
        (600, True, ["1", "2", "3"], 600),
        (600, False, ["1", "2", "3"], 600),
    ],
)
async def test_missing_total_pages(total: int, meta: bool, requested: list[str],
                                   count: int) -> None:
    """Without total_pages, full pages are followed and the first short page ends the list."""
    server = paged(total, meta=meta, total_pages=False)
    async with telnyx_client(server) as client:
        observation = await client.fetch(telnyx_target())
    assert participant_pages(server) == requested
    assert len(observation.members) == count
    assert observation.members_complete
    assert any("total_pages: not reported" in w for w in observation.warnings)


@pytest.mark.anyio
async def test_missing_total_pages_still_capped() -> None:
    """An endless run of full pages without total_pages stops at the cap, incomplete."""
    server = paged(100_000, total_pages=False)
    async with telnyx_client(server, max_pages=5) as client:
        observation = await client.fetch(telnyx_target())
    assert len(participant_pages(server)) == 5
    assert not observation.members_complete


@pytest.mark.anyio
async def test_member_listed_twice_is_kept_once() -> None:
    """The same participant on two pages is one member (the later listing wins)."""
    pages = {"1": [telnyx_participant(id="a", muted=False), *people(0, 249)],
             "2": [telnyx_participant(id="a", muted=True), telnyx_participant(id="z")]}

    def handle(request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/participants"):
            return httpx.Response(200, json={"data": telnyx_conference()})
        number = request.url.params["page[number]"]
        meta = {"page_number": int(number), "total_pages": 2}
        return httpx.Response(200, json={"data": pages[number], "meta": meta})

    async with telnyx_client(FakeServer(handle)) as client:
        observation = await client.fetch(telnyx_target())
    assert len(observation.members) == 251
    assert observation.member_map()["a"].muted is True
    assert observation.members_complete


@pytest.mark.anyio
async def test_target_of_another_account_is_refused() -> None:
    """A target for another account or provider is a caller bug: ValueError, no request."""
    server = FakeServer(telnyx_ok())
    async with telnyx_client(server) as client:
        with pytest.raises(ValueError, match="does not belong"):
            await client.fetch(TargetKey(Provider.TELNYX, "other-account", TELNYX_ID))
        with pytest.raises(ValueError, match="does not belong"):
            await client.fetch(TargetKey(Provider.BANDWIDTH, "telnyx-main", TELNYX_ID))
    assert server.requests == []


def test_bad_paging_settings_are_refused() -> None:
    """max_pages below 1 or page_size above Telnyx's 250 are refused."""
    with pytest.raises(ValueError, match="max_pages"):
        telnyx_client(FakeServer(telnyx_ok()), max_pages=0)


@pytest.mark.anyio
@pytest.mark.parametrize("base_url", ["https://api.telnyx.test", "https://api.telnyx.test/",
                                      "https://api.telnyx.test/v2", "https://api.telnyx.test/v2/"])
async def test_base_url_with_or_without_a_path_or_slash(base_url: str) -> None:
    """A base URL works with or without a path and a trailing slash: the conference path is
    always one segment below it."""
    server = FakeServer(telnyx_ok())
    async with telnyx_client(server, base_url=base_url) as client:
        await client.fetch(telnyx_target())
    prefix = base_url.rstrip("/").removeprefix("https://api.telnyx.test")
    assert server.paths()[0] == f"{prefix}/conferences/{TELNYX_ID}".encode()
