"""build_client: plain parameters in, a ProviderClient out; misfits are ConfigError."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from poller.config import ApiKeyCredentials, BasicCredentials, OAuth2Credentials
from poller.errors import ConfigError, NotFound
from poller.model import Provider, TargetKey
from poller.providers import (
    BandwidthClient,
    ProviderClient,
    TelnyxClient,
    build_client,
)

from .fakes import TELNYX_ID, telnyx_conference, telnyx_participant, telnyx_target


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("provider", "credentials", "account_id", "kind"),
    [
        ("telnyx", ApiKeyCredentials("k"), None, TelnyxClient),
        (Provider.TELNYX, ApiKeyCredentials("k"), None, TelnyxClient),
        ("bandwidth", BasicCredentials("u", "p"), "9900000", BandwidthClient),
        (Provider.BANDWIDTH, OAuth2Credentials("id", "s"), "9900000", BandwidthClient),
    ],
)
async def test_builds_the_right_client(provider: Any, credentials: Any,
                                       account_id: str | None, kind: type) -> None:
    """Each provider and credential kind gives its client, satisfying ProviderClient."""
    client = build_client(provider, account="acc", credentials=credentials,
                          account_id=account_id)
    assert isinstance(client, kind)
    assert isinstance(client, ProviderClient)
    assert client.account == "acc"
    assert client.provider == Provider(provider)
    await client.aclose()


@pytest.mark.parametrize(
    ("provider", "credentials", "account_id", "key"),
    [
        ("twilio", ApiKeyCredentials("k"), None, "provider"),
        ("telnyx", BasicCredentials("u", "p"), None, "api_key_env"),
        ("telnyx", ApiKeyCredentials(""), None, "api_key_env"),
        ("telnyx", ApiKeyCredentials("k"), "9900000", "account_id"),
        ("bandwidth", ApiKeyCredentials("k"), "9900000", "client_id_env"),
        ("bandwidth", BasicCredentials("u", "p"), None, "account_id"),
        ("bandwidth", BasicCredentials("u", ""), "9900000", "username_env"),
        ("bandwidth", OAuth2Credentials("id", ""), "9900000", "client_id_env"),
        ("bandwidth", BasicCredentials("u", "p"), "..", "account_id"),
    ],
)
def test_misfit_parameters_are_config_errors(provider: str, credentials: Any,
                                             account_id: str | None, key: str) -> None:
    """A provider/credential/account_id mismatch is a ConfigError naming the key."""
    with pytest.raises(ConfigError) as caught:
        build_client(provider, account="acc", credentials=credentials, account_id=account_id)
    assert caught.value.key == key


@pytest.mark.anyio
async def test_bandwidth_account_id_is_one_segment() -> None:
    """A Bandwidth account ID with reserved characters is encoded as one path segment."""
    paths: list[bytes] = []

    def handle(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.raw_path)
        return httpx.Response(404)

    client = build_client("bandwidth", account="a", credentials=BasicCredentials("u", "p"),
                          account_id="../99", transport=httpx.MockTransport(handle))
    with pytest.raises(NotFound):
        await client.fetch(TargetKey(Provider.BANDWIDTH, "a", "c1"))
    await client.aclose()
    assert paths == [b"/api/v2/accounts/..%2F99/conferences/c1"]


@pytest.mark.anyio
async def test_works_over_asgi_transport() -> None:
    """The client runs against an ASGI app through httpx.ASGITransport (the simulator's seam)."""
    async def conference(request: Request) -> JSONResponse:
        return JSONResponse({"data": telnyx_conference(id=request.path_params["id"])})

    async def participants(request: Request) -> JSONResponse:
        assert request.query_params["page[size]"] == "250"
        meta = {"page_number": 1, "page_size": 250, "total_pages": 1, "total_results": 1}
        return JSONResponse({"data": [telnyx_participant()], "meta": meta})

    app = Starlette(routes=[Route("/v2/conferences/{id}", conference),
                            Route("/v2/conferences/{id}/participants", participants)])
    client = build_client("telnyx", account="telnyx-main", credentials=ApiKeyCredentials("k"),
                          base_url="http://simulator/v2",
                          transport=httpx.ASGITransport(app=app))
    assert isinstance(client, TelnyxClient)
    async with client:
        observation = await client.fetch(telnyx_target())
    assert observation.conference.conference_id == TELNYX_ID
    assert len(observation.members) == 1
