"""Secrets (API key, password, client secret, tokens) never reach errors, excerpts or logs."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable

import httpx
import pytest

from poller.config import ApiKeyCredentials, BasicCredentials, Credentials, OAuth2Credentials
from poller.errors import ProviderError
from poller.model import PollFailure
from poller.providers import (
    build_client,
)
from poller.providers.redaction import MASK, Redactor

from .fakes import (
    ACCESS_TOKEN,
    API_KEY,
    CLIENT_ID,
    CLIENT_SECRET,
    PASSWORD,
    START,
    USERNAME,
    FakeServer,
    bandwidth_client,
    bandwidth_target,
    oauth2,
    telnyx_client,
    telnyx_target,
)

SECRETS = [API_KEY, PASSWORD, CLIENT_SECRET, ACCESS_TOKEN,
           base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode(),
           base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()]


def echo(status: int, shape: Callable[[str], bytes]) -> Callable[[httpx.Request], httpx.Response]:
    """A hostile server echoing the Authorization header (and a token) into its body."""
    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(200, json={"access_token": ACCESS_TOKEN, "expires_in": 3600})
        return httpx.Response(status, content=shape(request.headers["Authorization"]))

    return handle


SHAPES: dict[str, Callable[[str], bytes]] = {
    "plain text": lambda auth: f"you sent {auth}".encode(),
    "telnyx error": lambda auth: (
        '{"errors":[{"code":"' + auth + '","title":"x","detail":"bad ' + auth + '"}]}').encode(),
    "bandwidth error": lambda auth: (
        '{"type":"' + auth + '","description":"header ' + auth + '"}').encode(),
    "wrong shape": lambda auth: ('{"data":["' + auth + '"],"why":"' + auth + '"}').encode(),
    "secret straddles the cut": lambda auth: (
        '{"pad":"' + "p" * 180 + auth + '"}').encode(),
}


def everything_said(error: ProviderError) -> str:
    failure = PollFailure.from_error(telnyx_target(), START, error)
    return " ".join([str(error), repr(error), error.message, error.excerpt or "",
                     error.provider_code or "", failure.message, repr(failure)])


def leaked(text: str) -> list[str]:
    found = [s for s in SECRETS if s in text]
    # also no long fragment (a cut-off secret)
    found += [s for s in SECRETS for n in range(8, len(s)) if s[:n] in text and s not in found]
    return found


@pytest.mark.anyio
@pytest.mark.parametrize("status", [200, 400, 401, 404, 429, 500])
@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("credentials", ["telnyx", "basic", "oauth2"])
async def test_echoed_secrets_are_redacted(status: int, shape: str, credentials: str,
                                           caplog: pytest.LogCaptureFixture) -> None:
    """Whatever a server echoes back, no error text or log line contains a secret."""
    caplog.set_level(logging.DEBUG)
    server = FakeServer(echo(status, SHAPES[shape]))
    if credentials == "telnyx":
        client = telnyx_client(server)
        target = telnyx_target()
    else:
        creds = oauth2() if credentials == "oauth2" else BasicCredentials(USERNAME, PASSWORD)
        client = bandwidth_client(server, credentials=creds)
        target = bandwidth_target()
    async with client:
        with pytest.raises(ProviderError) as caught:
            await client.fetch(target)
    said = everything_said(caught.value) + caplog.text
    assert leaked(said) == []
    if shape in ("plain text", "wrong shape") and status == 200:
        assert MASK in (caught.value.excerpt or "")


@pytest.mark.anyio
async def test_transport_error_messages_are_redacted() -> None:
    """A library error quoting the key is redacted in the translated error."""
    def handle(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"refused while sending {request.headers['Authorization']}")

    async with telnyx_client(FakeServer(handle)) as client:
        with pytest.raises(ProviderError) as caught:
            await client.fetch(telnyx_target())
    assert leaked(everything_said(caught.value)) == []


@pytest.mark.anyio
async def test_unreadable_token_response_never_excerpted() -> None:
    """A token response that is not JSON is AuthFailed without any excerpt of its body."""
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=f"access_token={ACCESS_TOKEN}".encode())

    async with bandwidth_client(FakeServer(handle), credentials=oauth2()) as client:
        with pytest.raises(ProviderError) as caught:
            await client.fetch(bandwidth_target())
    assert caught.value.excerpt is None
    assert leaked(everything_said(caught.value)) == []


@pytest.mark.parametrize(
    "credentials",
    [ApiKeyCredentials(API_KEY), BasicCredentials(USERNAME, PASSWORD), oauth2()],
)
@pytest.mark.anyio
async def test_credentials_repr_hides_secrets(credentials: Credentials) -> None:
    """repr() of credentials, of the clients and of their attributes shows no secret."""
    assert leaked(repr(credentials)) == []
    provider = "telnyx" if isinstance(credentials, ApiKeyCredentials) else "bandwidth"
    client = build_client(provider, account="a", credentials=credentials,
                          account_id=None if provider == "telnyx" else "1")
    assert leaked(repr(client)) == []
    assert leaked(repr(vars(client))) == []
    await client.aclose()


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("abc SECRET def", 100, f"abc {MASK} def"),
        ("abc SECRET def", 7, "abc [re"),
        ("abc SECRET def", 6, "abc [r"),
        ("abc SECRETSECRET", 100, f"abc {MASK}{MASK}"),
        ("abc SE", 6, "abc SE"),
        ("abc SEC", 7, f"abc {MASK}"),
        ("nothing", 3, "not"),
    ],
)
def test_redactor_cut(text: str, limit: int, expected: str) -> None:
    """Cutting never leaves the start of a secret visible (3+ characters are masked)."""
    assert Redactor(("SECRET",)).cut(text, limit) == expected


def test_empty_secret_is_ignored() -> None:
    """An empty secret would mask everything; it is ignored."""
    assert Redactor(("",))("text") == "text"


def test_oauth2_credentials_default_token_url() -> None:
    """The default token URL is Bandwidth's documented one."""
    assert OAuth2Credentials("id", "secret").token_url == (
        "https://api.bandwidth.com/api/v1/oauth2/token")


def chain(error: BaseException) -> list[BaseException]:
    """``error`` and every exception reachable through ``__cause__`` / ``__context__``."""
    found: list[BaseException] = []
    pending: list[BaseException | None] = [error]
    while pending:
        exc = pending.pop()
        if exc is None or any(exc is seen for seen in found):
            continue
        found.append(exc)
        pending += [exc.__cause__, exc.__context__]
    return found


def everything_in_chain(error: BaseException) -> str:
    """Text, args and attributes of every exception in the chain, request headers included."""
    said: list[str] = []
    for exc in chain(error):
        said += [str(exc), repr(exc), repr(exc.args), repr(vars(exc))]
        for value in vars(exc).values():
            headers = getattr(value, "headers", None)  # an httpx error keeps its request
            if headers is not None:
                said.append(repr(dict(headers)))
    return " ".join(said)


def _hostile(case: str) -> Callable[[httpx.Request], httpx.Response]:
    """A server (or transport) that puts the Authorization header where ``case`` says."""
    def handle(request: httpx.Request) -> httpx.Response:
        auth = request.headers["Authorization"]
        if request.method == "POST":
            if case == "token-endpoint-oversized":
                return httpx.Response(200, headers={"Content-Length": str(1 << 30)},
                                      content=f"access_token={ACCESS_TOKEN}".encode())
            return httpx.Response(200, json={"access_token": ACCESS_TOKEN, "expires_in": 3600})
        if case == "parser-wrong-shape":
            return httpx.Response(200, json={"data": [auth], "activeMembers": auth,
                                             "why": auth})
        if case == "not-json":
            return httpx.Response(200, content=f"<html>you sent {auth}</html>".encode())
        if case == "oversized":
            return httpx.Response(200, headers={"Content-Length": str(1 << 30)},
                                  content=f"you sent {auth}".encode())
        if case == "transport-error":
            raise httpx.ConnectError(f"refused while sending {auth}", request=request)
        raise AssertionError(case)

    return handle


CHAIN_CASES = [
    (credentials, case)
    for credentials in ("telnyx", "basic", "oauth2")
    for case in ("parser-wrong-shape", "not-json", "oversized", "transport-error")
] + [("oauth2", "token-endpoint-oversized")]


@pytest.mark.anyio
@pytest.mark.parametrize(("credentials", "case"), CHAIN_CASES)
async def test_error_chain_holds_no_secret(credentials: str, case: str) -> None:
    """The error a caller gets is unchained: no ``__cause__`` / ``__context__`` keeps an
    unredacted excerpt, body, library message or request header."""
    server = FakeServer(_hostile(case))
    if credentials == "telnyx":
        client = telnyx_client(server)
        target = telnyx_target()
    else:
        creds = oauth2() if credentials == "oauth2" else BasicCredentials(USERNAME, PASSWORD)
        client = bandwidth_client(server, credentials=creds)
        target = bandwidth_target()
    async with client:
        with pytest.raises(ProviderError) as caught:
            await client.fetch(target)
    assert chain(caught.value) == [caught.value]
    assert leaked(everything_in_chain(caught.value)) == []
