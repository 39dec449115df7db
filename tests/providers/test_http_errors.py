"""The error boundary: HTTP statuses, transport failures, size cap and unreadable bodies."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from poller.errors import (
    AuthFailed,
    BadResponse,
    NetworkError,
    NotFound,
    ProviderError,
    RateLimited,
    ServerError,
    Timeout,
    Transient,
)
from poller.providers import HttpSettings

from .fakes import (
    BW_ID,
    TELNYX_ID,
    FakeServer,
    bandwidth_client,
    bandwidth_conference,
    bandwidth_target,
    telnyx_client,
    telnyx_conference,
    telnyx_target,
)


def telnyx_error(code: str, title: str = "Error", detail: str = "It failed.") -> dict[str, Any]:
    return {"errors": [{"code": code, "title": title, "detail": detail}]}


def bandwidth_error(kind: str, description: str = "It failed.") -> dict[str, Any]:
    return {"type": kind, "description": description, "id": None}


async def telnyx_fails(response: httpx.Response | Exception) -> ProviderError:
    def handle(request: httpx.Request) -> httpx.Response:
        if isinstance(response, Exception):
            raise response
        return response

    async with telnyx_client(FakeServer(handle)) as client:
        with pytest.raises(ProviderError) as caught:
            await client.fetch(telnyx_target())
    return caught.value


async def bandwidth_fails(response: httpx.Response | Exception) -> ProviderError:
    def handle(request: httpx.Request) -> httpx.Response:
        if isinstance(response, Exception):
            raise response
        return response

    async with bandwidth_client(FakeServer(handle)) as client:
        with pytest.raises(ProviderError) as caught:
            await client.fetch(bandwidth_target())
    return caught.value


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "body", "kind", "code"),
    [
        (404, telnyx_error("90058", "Conference not found"), NotFound, "90058"),
        (401, telnyx_error("10009", "Authentication failed"), AuthFailed, "10009"),
        (403, telnyx_error("10010", "Authorization failed"), AuthFailed, "10010"),
        (429, telnyx_error("10011", "Too many requests"), RateLimited, "10011"),
        (500, telnyx_error("10007", "Unexpected error"), ServerError, "10007"),
        (502, None, ServerError, None),
        (503, {"errors": []}, ServerError, None),
        (422, telnyx_error("90001", "Invalid region"), BadResponse, "90001"),
        (400, {"errors": [{"code": 10015}]}, BadResponse, "10015"),
        (301, None, BadResponse, None),
        (404, {"errors": "nope"}, NotFound, None),
    ],
)
async def test_telnyx_status_mapping(status: int, body: Any, kind: type[ProviderError],
                                     code: str | None) -> None:
    """Each Telnyx HTTP error status becomes its error, with errors[0].code kept."""
    content = b"" if body is None else json.dumps(body).encode()
    error = await telnyx_fails(httpx.Response(status, content=content))
    assert type(error) is kind
    assert (error.http_status, error.provider_code) == (status, code)
    assert (error.provider, error.account, error.conference_id) == (
        "telnyx", "telnyx-main", TELNYX_ID)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "body", "kind", "code"),
    [
        (404, bandwidth_error("validation", "Conference not found"), NotFound, "validation"),
        (401, bandwidth_error("authentication-error"), AuthFailed, "authentication-error"),
        (403, bandwidth_error("authorization-error"), AuthFailed, "authorization-error"),
        (429, bandwidth_error("validation"), RateLimited, "validation"),
        (500, bandwidth_error("internal-server-error"), ServerError, "internal-server-error"),
        (503, bandwidth_error("system-overloaded"), ServerError, "system-overloaded"),
        (400, bandwidth_error("validation"), BadResponse, "validation"),
        (405, b"<html>Not allowed</html>", BadResponse, None),
        (404, ["not", "an", "object"], NotFound, None),
    ],
)
async def test_bandwidth_status_mapping(status: int, body: Any, kind: type[ProviderError],
                                        code: str | None) -> None:
    """Each Bandwidth HTTP error status becomes its error, with the error type kept."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    error = await bandwidth_fails(httpx.Response(status, content=content))
    assert type(error) is kind
    assert (error.http_status, error.provider_code) == (status, code)
    assert (error.provider, error.account, error.conference_id) == (
        "bandwidth", "bandwidth-main", BW_ID)


@pytest.mark.anyio
async def test_not_found_message_carries_provider_detail() -> None:
    """The NotFound message says what the provider said, and str() adds the context."""
    error = await telnyx_fails(httpx.Response(
        404, json=telnyx_error("90058", detail="The conference does not exist.")))
    assert "The conference does not exist." in error.message
    assert "code=90058" in str(error)
    assert "http_status=404" in str(error)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("exception", "kind"),
    [
        (httpx.ConnectTimeout("connect timed out"), Timeout),
        (httpx.ReadTimeout("read timed out"), Timeout),
        (httpx.WriteTimeout("write timed out"), Timeout),
        (httpx.PoolTimeout("pool timed out"), Timeout),
        (httpx.ConnectError("connection refused"), NetworkError),
        (httpx.ReadError("connection reset by peer"), NetworkError),
        (httpx.WriteError("broken pipe"), NetworkError),
        (httpx.RemoteProtocolError("peer closed connection"), NetworkError),
        (httpx.LocalProtocolError("bad request line"), NetworkError),
        (httpx.ProxyError("proxy said no"), NetworkError),
        (ConnectionResetError(104, "Connection reset by peer"), NetworkError),
        (httpx.DecodingError("bad gzip"), BadResponse),
    ],
)
@pytest.mark.parametrize("fails", [telnyx_fails, bandwidth_fails])
async def test_transport_errors_are_translated(
        exception: Exception, kind: type[ProviderError],
        fails: Callable[[Exception], Any]) -> None:
    """httpx and socket errors become Timeout / NetworkError / BadResponse, unchained (the
    library error holds the request and its Authorization header) but naming it."""
    error = await fails(exception)
    assert type(error) is kind
    assert error.__cause__ is None
    assert error.__context__ is None
    assert type(exception).__name__ in error.message
    assert error.account is not None
    assert error.conference_id is not None


def test_transient_errors_share_a_base() -> None:
    """ServerError, Timeout and NetworkError are all Transient (retry with backoff)."""
    assert issubclass(ServerError, Transient)
    assert issubclass(Timeout, Transient)
    assert issubclass(NetworkError, Transient)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "content",
    [b"", b"<html>502 Bad Gateway</html>", b"{\"data\": ", b"\xff\xfe\x00garbage",
     b"[" * 100_000 + b"]" * 100_000, b"null"],
)
async def test_unreadable_ok_bodies_are_bad_response(content: bytes) -> None:
    """A 200 whose body is not the documented JSON is a BadResponse with a short excerpt."""
    error = await telnyx_fails(httpx.Response(200, content=content))
    assert type(error) is BadResponse
    assert error.excerpt is not None
    assert len(error.excerpt) <= 200
    assert error.http_status == 200


@pytest.mark.anyio
async def test_wrong_shape_bad_response_carries_context() -> None:
    """A parser's BadResponse comes out with provider, account, conference and status."""
    error = await bandwidth_fails(httpx.Response(200, json={"activeMembers": []}))
    assert type(error) is BadResponse
    assert (error.provider, error.account, error.conference_id, error.http_status) == (
        "bandwidth", "bandwidth-main", BW_ID, 200)
    assert error.excerpt == '{"activeMembers":[]}'


@pytest.mark.anyio
@pytest.mark.parametrize("declare_length", [True, False])
async def test_response_size_cap(declare_length: bool) -> None:
    """A body past max_response_bytes is abandoned as BadResponse, declared or streamed."""
    big = json.dumps(bandwidth_conference(tag="x" * 5000)).encode()

    async def chunks() -> Any:
        for start in range(0, len(big), 1000):
            yield big[start:start + 1000]

    def handle(request: httpx.Request) -> httpx.Response:
        if declare_length:
            return httpx.Response(200, content=big)
        return httpx.Response(200, content=chunks())

    settings = HttpSettings(max_response_bytes=4096)
    async with bandwidth_client(FakeServer(handle), settings=settings) as client:
        with pytest.raises(BadResponse, match="4096-byte cap") as caught:
            await client.fetch(bandwidth_target())
    assert caught.value.excerpt is None or len(caught.value.excerpt) <= 200


@pytest.mark.anyio
async def test_body_just_under_the_cap_is_read() -> None:
    """A body exactly at the cap is accepted."""
    body = json.dumps(bandwidth_conference()).encode()
    settings = HttpSettings(max_response_bytes=len(body))
    server = FakeServer(lambda r: httpx.Response(200, content=body))
    async with bandwidth_client(server, settings=settings) as client:
        observation = await client.fetch(bandwidth_target())
    assert observation.conference.conference_id == BW_ID


@pytest.mark.anyio
async def test_default_cap_is_four_mebibytes() -> None:
    """The default cap is 4 MiB."""
    assert HttpSettings().max_response_bytes == 4 * 1024 * 1024
    big = b'{"data": {"id": "' + b"x" * (4 * 1024 * 1024) + b'"}}'
    error = await telnyx_fails(httpx.Response(200, content=big))
    assert type(error) is BadResponse
    assert "cap" in error.message


@pytest.mark.anyio
async def test_participants_error_fails_the_poll() -> None:
    """A failure on the participants list fails the whole poll: nothing is fabricated."""
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/participants"):
            return httpx.Response(404, json=telnyx_error("90058"))
        return httpx.Response(200, json={"data": telnyx_conference()})

    async with telnyx_client(FakeServer(handle)) as client:
        with pytest.raises(NotFound):
            await client.fetch(telnyx_target())
