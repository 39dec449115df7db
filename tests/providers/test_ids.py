"""Conference IDs reach the server as exactly one path segment, or are refused."""

from __future__ import annotations

import httpx
import pytest

from poller.errors import InvalidConferenceId
from poller.model import MAX_ID_LENGTH, path_segment

from .fakes import (
    FakeServer,
    bandwidth_client,
    bandwidth_conference,
    bandwidth_target,
    telnyx_client,
    telnyx_conference,
    telnyx_ok,
    telnyx_target,
)

ENCODED = [
    ("../calls", b"..%2Fcalls"),
    ("a/b", b"a%2Fb"),
    ("a?b=c", b"a%3Fb%3Dc"),
    ("%2F", b"%252F"),
    ("#", b"%23"),
    ("a#frag", b"a%23frag"),
    ("é会議", b"%C3%A9%E4%BC%9A%E8%AD%B0"),
    ("with space", b"with%20space"),
    ("...", b"..."),
    ("a\\b", b"a%5Cb"),
    ("x" * MAX_ID_LENGTH, b"x" * MAX_ID_LENGTH),
    ("3fa85f64-5717-4562-b3fc-2c963f66afa6", b"3fa85f64-5717-4562-b3fc-2c963f66afa6"),
    ("conf-fe23a767_a~b.c", b"conf-fe23a767_a~b.c"),
]

REFUSED = [
    ("", "empty"),
    (".", "dot segment"),
    ("..", "dot segment"),
    ("x" * 300, "at most 256"),
    ("x" * (MAX_ID_LENGTH + 1), "at most 256"),
    ("a\nb", "control character"),
    ("a\x00b", "control character"),
    ("a\u2028b", "control character"),
    ("\ud800", "control character"),
]


@pytest.mark.parametrize(("conference_id", "segment"), ENCODED)
def test_path_segment_encoding(conference_id: str, segment: bytes) -> None:
    """Reserved and non-ASCII characters are percent-encoded into one segment."""
    assert path_segment(conference_id).encode() == segment


@pytest.mark.parametrize(("conference_id", "reason"), REFUSED)
def test_path_segment_refusals(conference_id: str, reason: str) -> None:
    """Empty, dot, overlong and non-printable IDs are refused with a clear message."""
    with pytest.raises(InvalidConferenceId, match=reason):
        path_segment(conference_id)


@pytest.mark.anyio
@pytest.mark.parametrize(("conference_id", "segment"), ENCODED)
async def test_telnyx_request_paths(conference_id: str, segment: bytes) -> None:
    """The Telnyx transport sees /v2/conferences/<one segment> and …/participants."""
    server = FakeServer(telnyx_ok(telnyx_conference(id=conference_id)))
    async with telnyx_client(server) as client:
        await client.fetch(telnyx_target(conference_id))
    assert [r.url.raw_path.split(b"?")[0] for r in server.requests] == [
        b"/v2/conferences/" + segment,
        b"/v2/conferences/" + segment + b"/participants",
    ]
    assert all(r.url.fragment == "" for r in server.requests)


@pytest.mark.anyio
@pytest.mark.parametrize(("conference_id", "segment"), ENCODED)
async def test_bandwidth_request_paths(conference_id: str, segment: bytes) -> None:
    """The Bandwidth transport sees /api/v2/accounts/<id>/conferences/<one segment>."""
    server = FakeServer(lambda r: httpx.Response(200, json=bandwidth_conference(id=conference_id)))
    async with bandwidth_client(server) as client:
        await client.fetch(bandwidth_target(conference_id))
    assert server.paths() == [b"/api/v2/accounts/9900000/conferences/" + segment]
    assert server.requests[0].url.query == b""


@pytest.mark.anyio
@pytest.mark.parametrize(("conference_id", "reason"), REFUSED)
async def test_refused_ids_send_nothing(conference_id: str, reason: str) -> None:
    """A refused ID raises InvalidConferenceId before any request is made."""
    server = FakeServer(telnyx_ok())
    async with telnyx_client(server) as telnyx, bandwidth_client(server) as bandwidth:
        with pytest.raises(InvalidConferenceId, match=reason):
            await telnyx.fetch(telnyx_target(conference_id))
        with pytest.raises(InvalidConferenceId, match=reason):
            await bandwidth.fetch(bandwidth_target(conference_id))
    assert server.requests == []


@pytest.mark.anyio
async def test_region_is_a_query_value_not_a_path() -> None:
    """A region with spaces or reserved characters is encoded in the query only."""
    server = FakeServer(telnyx_ok())
    async with telnyx_client(server) as client:
        await client.fetch(telnyx_target(region="Middle East&x=/y"))
    for request in server.requests:
        assert request.url.params["region"] == "Middle East&x=/y"
        assert b"/y" not in request.url.raw_path.split(b"?")[0]


@pytest.mark.anyio
async def test_no_region_no_query_value() -> None:
    """Without a target region no region parameter is sent."""
    server = FakeServer(telnyx_ok())
    async with telnyx_client(server) as client:
        await client.fetch(telnyx_target())
    assert all("region" not in r.url.params for r in server.requests)
