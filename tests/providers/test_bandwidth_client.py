"""The Bandwidth client: request, Basic auth, and OAuth2 tokens (cache, refresh, 401 retry)."""

from __future__ import annotations

import asyncio
import base64
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from poller.config import OAuth2Credentials
from poller.errors import (
    AuthFailed,
    NetworkError,
    ProviderError,
    RateLimited,
    ServerError,
    Timeout,
)

from .fakes import (
    ACCESS_TOKEN,
    BW_ID,
    CLIENT_ID,
    CLIENT_SECRET,
    PASSWORD,
    START,
    USERNAME,
    FakeClock,
    FakeServer,
    bandwidth_client,
    bandwidth_conference,
    bandwidth_target,
    oauth2,
)

TOKEN_HOST = "api.bandwidth.com"
API_HOST = "voice.bandwidth.test"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class OAuthServer:
    """A token endpoint issuing numbered tokens, and an API accepting only the current one."""

    def __init__(self, expires_in: Any = 3600, token_status: int = 200,
                 token_body: Any = None, reject_api: int = 0) -> None:
        self.expires_in = expires_in
        self.token_status = token_status
        self.token_body = token_body
        self.issued = 0
        self.reject_api = reject_api
        """How many API requests to answer 401 regardless of the token."""
        self.server = FakeServer(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == TOKEN_HOST:
            return self.token(request)
        if self.reject_api > 0 or request.headers["Authorization"] != self.current():
            self.reject_api -= 1
            return httpx.Response(401, json={"type": "authentication-error",
                                             "description": "bad token"})
        return httpx.Response(200, json=bandwidth_conference())

    def current(self) -> str:
        return f"Bearer {ACCESS_TOKEN}-{self.issued}"

    def token(self, request: httpx.Request) -> httpx.Response:
        if self.token_status != 200 or self.token_body is not None:
            return httpx.Response(self.token_status, json=self.token_body)
        self.issued += 1
        body = {"access_token": f"{ACCESS_TOKEN}-{self.issued}", "token_type": "Bearer"}
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
        return httpx.Response(200, json=body)

    def token_requests(self) -> int:
        return self.server.count(TOKEN_HOST)

    def api_requests(self) -> int:
        return self.server.count(API_HOST)


@pytest.mark.anyio
async def test_basic_auth_request() -> None:
    """GET /accounts/{accountId}/conferences/{id} with HTTP Basic credentials."""
    server = FakeServer(lambda r: httpx.Response(200, json=bandwidth_conference()))
    clock = FakeClock()
    async with bandwidth_client(server, clock=clock) as client:
        observation = await client.fetch(bandwidth_target())
    (request,) = server.requests
    assert (request.method, request.url.path) == (
        "GET", f"/api/v2/accounts/9900000/conferences/{BW_ID}")
    assert request.headers["Authorization"] == basic(USERNAME, PASSWORD)
    assert observation.observed_at == START
    assert observation.members_complete
    assert len(observation.members) == 1
    assert observation.conference.status == "in_progress"


@pytest.mark.anyio
async def test_basic_auth_401_is_not_retried() -> None:
    """With Basic credentials a 401 is final: one request, AuthFailed."""
    server = FakeServer(lambda r: httpx.Response(401, json={"type": "authentication-error"}))
    async with bandwidth_client(server) as client:
        with pytest.raises(AuthFailed) as caught:
            await client.fetch(bandwidth_target())
    assert len(server.requests) == 1
    assert caught.value.provider_code == "authentication-error"


@pytest.mark.anyio
async def test_token_request_shape() -> None:
    """The token request is a Basic-authenticated client_credentials form POST."""
    oauth = OAuthServer()
    async with bandwidth_client(oauth.server, credentials=oauth2()) as client:
        await client.fetch(bandwidth_target())
    token_request, api_request = oauth.server.requests
    assert token_request.method == "POST"
    assert str(token_request.url) == "https://api.bandwidth.com/api/v1/oauth2/token"
    assert token_request.headers["Authorization"] == basic(CLIENT_ID, CLIENT_SECRET)
    assert token_request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(token_request.content.decode()) == {"grant_type": ["client_credentials"]}
    assert api_request.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}-1"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("expires_in", "advance_seconds", "token_requests"),
    [
        (3600, 0, 1),
        (3600, 3539, 1),
        (3600, 3540, 2),
        (3600, 4000, 2),
        (60, 29, 1),
        (60, 30, 2),
        ("3600", 3539, 1),
        (None, 10**6, 1),
        ("soon", 10**6, 1),
        (-5, 10**6, 1),
    ],
)
async def test_token_cached_until_margin_before_expiry(expires_in: Any, advance_seconds: float,
                                                       token_requests: int) -> None:
    """A token is reused until 60 s (or half its life) before expires_in; no lifetime: kept."""
    oauth = OAuthServer(expires_in=expires_in)
    clock = FakeClock()
    async with bandwidth_client(oauth.server, clock=clock, credentials=oauth2()) as client:
        await client.fetch(bandwidth_target())
        clock.advance(advance_seconds)
        await client.fetch(bandwidth_target())
    assert oauth.token_requests() == token_requests
    assert oauth.api_requests() == 2


@pytest.mark.anyio
async def test_concurrent_polls_share_one_token_fetch() -> None:
    """Many polls at once make a single token request (one fetch in flight)."""
    oauth = OAuthServer()
    async with bandwidth_client(oauth.server, credentials=oauth2()) as client:
        await asyncio.gather(*(client.fetch(bandwidth_target()) for _ in range(10)))
    assert oauth.token_requests() == 1
    assert oauth.api_requests() == 10


@pytest.mark.anyio
async def test_401_refreshes_once_and_retries_once() -> None:
    """A revoked token: the 401 fetches a new token and the request is retried once."""
    oauth = OAuthServer()
    async with bandwidth_client(oauth.server, credentials=oauth2()) as client:
        await client.fetch(bandwidth_target())
        oauth.issued += 100  # the server forgets the token it issued
        observation = await client.fetch(bandwidth_target())
    assert observation.conference.conference_id == BW_ID
    assert oauth.token_requests() == 2
    assert oauth.api_requests() == 3


@pytest.mark.anyio
async def test_second_401_is_final() -> None:
    """A 401 after the refresh is AuthFailed: one refresh, one retry, no loop."""
    oauth = OAuthServer(reject_api=10)
    async with bandwidth_client(oauth.server, credentials=oauth2()) as client:
        with pytest.raises(AuthFailed) as caught:
            await client.fetch(bandwidth_target())
    assert caught.value.http_status == 401
    assert oauth.token_requests() == 2
    assert oauth.api_requests() == 2


@pytest.mark.anyio
async def test_403_does_not_refresh() -> None:
    """A 403 (forbidden, not expired) is AuthFailed straight away."""
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.host == TOKEN_HOST:
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
        return httpx.Response(403, json={"type": "authorization-error"})

    server = FakeServer(handle)
    async with bandwidth_client(server, credentials=oauth2()) as client:
        with pytest.raises(AuthFailed):
            await client.fetch(bandwidth_target())
    assert server.count(TOKEN_HOST) == 1
    assert server.count(API_HOST) == 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "body", "kind", "code"),
    [
        (400, {"error": "invalid_client", "error_description": "unknown client"}, AuthFailed,
         "invalid_client"),
        (401, {"error": "invalid_client"}, AuthFailed, "invalid_client"),
        (403, None, AuthFailed, None),
        (404, None, AuthFailed, None),
        (200, {"token_type": "Bearer"}, AuthFailed, None),
        (200, {"access_token": ""}, AuthFailed, None),
        (200, ["access_token"], AuthFailed, None),
        (429, {"error": "slow_down"}, RateLimited, None),
        (500, None, ServerError, None),
        (503, None, ServerError, None),
    ],
)
async def test_token_endpoint_errors(status: int, body: Any, kind: type[Exception],
                                     code: str | None) -> None:
    """Token endpoint refusals are AuthFailed; 429 and 5xx are rate limit / server errors;
    each says it came from the token endpoint, not the API."""
    oauth = OAuthServer(token_status=status, token_body=body if body is not None else {})
    async with bandwidth_client(oauth.server, credentials=oauth2()) as client:
        with pytest.raises(kind) as caught:
            await client.fetch(bandwidth_target())
    assert getattr(caught.value, "provider_code", None) == code
    assert isinstance(caught.value, ProviderError)
    assert caught.value.message.startswith("token endpoint"), caught.value.message
    assert caught.value.http_status == status
    assert oauth.api_requests() == 0


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("exception", "kind"),
    [(httpx.ConnectTimeout("slow"), Timeout), (httpx.ConnectError("refused"), NetworkError)],
)
async def test_token_endpoint_transport_errors(exception: Exception,
                                               kind: type[Exception]) -> None:
    """A token endpoint that cannot be reached gives Timeout / NetworkError (transient)."""
    def handle(request: httpx.Request) -> httpx.Response:
        raise exception

    async with bandwidth_client(FakeServer(handle), credentials=oauth2()) as client:
        with pytest.raises(kind) as caught:
            await client.fetch(bandwidth_target())
    assert "POST /api/v1/oauth2/token" in str(caught.value)


@pytest.mark.anyio
async def test_failed_token_fetch_is_retried_next_poll() -> None:
    """After a token failure the next poll asks again rather than reuse nothing."""
    oauth = OAuthServer(token_status=503, token_body={})
    async with bandwidth_client(oauth.server, credentials=oauth2()) as client:
        with pytest.raises(ServerError):
            await client.fetch(bandwidth_target())
        oauth.token_status, oauth.token_body = 200, None
        await client.fetch(bandwidth_target())
    assert oauth.token_requests() == 2
    assert oauth.api_requests() == 1


@pytest.mark.anyio
async def test_custom_token_url() -> None:
    """OAuth2Credentials.token_url is where tokens are fetched."""
    hosts: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        if request.method == "POST":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
        return httpx.Response(200, json=bandwidth_conference())

    credentials = OAuth2Credentials(CLIENT_ID, CLIENT_SECRET, token_url="http://sim.test/token")
    async with bandwidth_client(FakeServer(handle), credentials=credentials) as client:
        await client.fetch(bandwidth_target())
    assert hosts == ["sim.test", API_HOST]
