"""How long a provider asked us to wait: Retry-After, retry-after-ms and x-ratelimit-reset."""

from __future__ import annotations

import httpx
import pytest

from poller.errors import ProviderError, RateLimited, ServerError
from poller.providers import HttpSettings
from poller.providers.status import MAX_RETRY_AFTER_SECONDS, retry_after_seconds

from .fakes import (
    START,
    FakeClock,
    FakeServer,
    bandwidth_client,
    bandwidth_target,
    telnyx_client,
    telnyx_target,
)

NOW_EPOCH = int(START.timestamp())


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "30"}, 30.0),
        ({"Retry-After": " 7 "}, 7.0),
        ({"Retry-After": "1.5"}, 1.5),
        ({"Retry-After": "0"}, 0.0),
        ({"Retry-After": "-5"}, 0.0),
        ({"Retry-After": "Wed, 01 May 2024 12:02:00 GMT"}, 120.0),
        ({"Retry-After": "Wed, 01 May 2024 12:00:30 -0000"}, 30.0),
        ({"Retry-After": "Wed, 01 May 2024 11:00:00 GMT"}, 0.0),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "inf"}, None),
        ({"retry-after-ms": "2500"}, 2.5),
        ({"retry-after-ms": "2500", "Retry-After": "9"}, 2.5),
        ({"retry-after-ms": "x", "Retry-After": "9"}, 9.0),
        ({"x-ratelimit-reset": "12"}, 12.0),
        ({"x-ratelimit-reset": str(NOW_EPOCH + 45)}, 45.0),
        ({"x-ratelimit-reset": str(NOW_EPOCH - 45)}, 0.0),
        ({"x-ratelimit-reset": str((NOW_EPOCH + 3) * 1000)}, 3.0),
        ({"Retry-After": "4", "x-ratelimit-reset": str(NOW_EPOCH + 45)}, 4.0),
        ({"Retry-After": "99999999"}, MAX_RETRY_AFTER_SECONDS),
        ({}, None),
        ({"x-ratelimit-remaining": "0"}, None),
    ],
)
def test_retry_after_variants(headers: dict[str, str], expected: float | None) -> None:
    """Each header form gives the wait in seconds, clamped to [0, the default cap]."""
    assert retry_after_seconds(httpx.Headers(headers), START) == expected


@pytest.mark.anyio
async def test_telnyx_429_uses_ratelimit_reset() -> None:
    """A Telnyx 429 with x-ratelimit-* headers is RateLimited with the wait to the reset."""
    headers = {"x-ratelimit-limit": "20", "x-ratelimit-remaining": "0",
               "x-ratelimit-reset": str(NOW_EPOCH + 10)}
    server = FakeServer(lambda r: httpx.Response(
        429, headers=headers, json={"errors": [{"code": "10011", "title": "Too many"}]}))
    async with telnyx_client(server, clock=FakeClock()) as client:
        with pytest.raises(RateLimited) as caught:
            await client.fetch(telnyx_target())
    assert caught.value.retry_after_seconds == 10.0
    assert caught.value.provider_code == "10011"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "headers", "kind", "expected"),
    [
        (429, {"Retry-After": "17"}, RateLimited, 17.0),
        (429, {}, RateLimited, None),
        (503, {"Retry-After": "60"}, ServerError, 60.0),
        (500, {}, ServerError, None),
    ],
)
async def test_bandwidth_retry_after_on_errors(status: int, headers: dict[str, str],
                                               kind: type[ProviderError],
                                               expected: float | None) -> None:
    """Bandwidth 429 and 503 carry the Retry-After wait into the error."""
    server = FakeServer(lambda r: httpx.Response(
        status, headers=headers, json={"type": "system-overloaded", "description": "busy"}))
    async with bandwidth_client(server) as client:
        with pytest.raises(kind) as caught:
            await client.fetch(bandwidth_target())
    assert caught.value.retry_after_seconds == expected


@pytest.mark.anyio
@pytest.mark.parametrize(("cap", "expected", "said"), [
    (600.0, 600.0, "asked to wait 86400 s; cut to max_retry_after_seconds = 600"),
    (100_000.0, 86400.0, None),
])
async def test_a_huge_retry_after_is_cut_to_the_setting_and_says_so(
        cap: float, expected: float, said: str | None) -> None:
    """A day-long ``Retry-After`` pauses the account no longer than
    ``max_retry_after_seconds``, and the error (hence the log and poll_error) says it was cut."""
    server = FakeServer(lambda r: httpx.Response(429, headers={"Retry-After": "86400"},
                                                 json={"type": "x", "description": "y"}))
    settings = HttpSettings(max_retry_after_seconds=cap)
    async with bandwidth_client(server, settings=settings) as client:
        with pytest.raises(RateLimited) as caught:
            await client.fetch(bandwidth_target())
    assert caught.value.retry_after_seconds == expected
    if said is None:
        assert "cut" not in caught.value.message
    else:
        assert said in caught.value.message
