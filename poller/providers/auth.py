"""How requests are authorised: a fixed header, or OAuth2 tokens fetched and renewed.

The credentials themselves are plain values of ``poller.config.credentials``
(``ApiKeyCredentials``, ``BasicCredentials``, ``OAuth2Credentials``); this module turns them
into ``Authorization`` headers.

* Telnyx: ``Authorization: Bearer <api key>`` (``StaticAuthorization``).
* Bandwidth, legacy API user: HTTP Basic ``username:password`` (``StaticAuthorization``).
* Bandwidth, OAuth2 (``OAuth2ClientCredentials``): POST the token URL with Basic
  ``client_id:client_secret`` and the form ``grant_type=client_credentials``; the answer's
  ``access_token`` is sent as a Bearer token and cached until ``refresh_margin_seconds`` (60 s,
  or half the lifetime for short-lived tokens) before its ``expires_in`` runs out. Only one
  token fetch is in flight at a time (an ``asyncio.Lock``); a 401 from the API renews the token
  once, and the caller retries once.

Token endpoint failures: 5xx ⇒ ``ServerError``, 429 ⇒ ``RateLimited``, timeouts and connection
errors ⇒ ``Timeout`` / ``NetworkError``, anything else (400 ``invalid_client``, 401, a 200
without ``access_token``) ⇒ ``AuthFailed``. Their messages start with "token endpoint" (or, for
timeouts and connection errors, name the token URL's path), so a rate limit or outage of the
token endpoint is not mistaken for one of the API. Token responses are never excerpted into
errors, since their bodies hold the token.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import Protocol

from poller.config.accounts import BANDWIDTH_TOKEN_URL
from poller.config.credentials import DEFAULT_REFRESH_MARGIN_SECONDS
from poller.errors import AuthFailed, BadResponse
from poller.providers.http import Clock, Pace, ProviderHttp, json_or
from poller.providers.status import ErrorContext
from poller.providers.wire import RawResponse

TOKEN_ENDPOINT = "token endpoint"  # noqa: S105 (what error messages call it)
"""How error messages name the token endpoint, so its failures are not taken for the API's."""


class Authorizer(Protocol):
    """Supplies the ``Authorization`` header value for API requests."""

    async def header(self, context: ErrorContext, pace: Pace | None = None) -> str:
        """The header value to send now (a token request, if one is needed, takes ``pace``)."""
        ...

    async def renew(self, rejected: str, context: ErrorContext, pace: Pace | None = None
                    ) -> str | None:
        """A fresh header after ``rejected`` drew a 401, or ``None`` if there is none to get."""
        ...


class StaticAuthorization:
    """A fixed ``Authorization`` value (Telnyx API key, Bandwidth Basic): nothing to renew."""

    def __init__(self, value: str) -> None:
        self._value = value

    def __repr__(self) -> str:
        return "StaticAuthorization([redacted])"

    async def header(self, context: ErrorContext, pace: Pace | None = None) -> str:
        """The fixed header value."""
        return self._value

    async def renew(self, rejected: str, context: ErrorContext, pace: Pace | None = None
                    ) -> str | None:
        """Nothing: a rejected fixed credential stays rejected."""
        return None


class OAuth2ClientCredentials:
    """OAuth2 client-credentials tokens, cached and renewed (see the module docstring)."""

    def __init__(
        self,
        *,
        http: ProviderHttp,
        client_id: str,
        client_secret: str,
        token_url: str = BANDWIDTH_TOKEN_URL,
        clock: Clock,
        refresh_margin_seconds: float = DEFAULT_REFRESH_MARGIN_SECONDS,
    ) -> None:
        self._http = http
        self._basic = http.redact.add_basic(client_id, client_secret)
        self._token_url = token_url
        self._clock = clock
        self._margin_seconds = refresh_margin_seconds
        self._token: str | None = None
        self._renew_at: datetime | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"OAuth2ClientCredentials(token_url={self._token_url!r})"

    def _cached(self) -> str | None:
        if self._token is None:
            return None
        if self._renew_at is not None and self._clock() >= self._renew_at:
            return None
        return self._token

    async def header(self, context: ErrorContext, pace: Pace | None = None) -> str:
        """``Bearer <token>``, fetching a token only when none is cached or it is due."""
        token = self._cached()
        if token is None:
            async with self._lock:
                token = self._cached()  # another task may have fetched while we waited
                if token is None:
                    token = await self._fetch(context, pace)
        return f"Bearer {token}"

    async def renew(self, rejected: str, context: ErrorContext, pace: Pace | None = None
                    ) -> str | None:
        """A new token after a 401, unless another task already replaced the rejected one."""
        async with self._lock:
            token = self._cached()
            if token is None or f"Bearer {token}" == rejected:
                token = await self._fetch(context, pace)
        return f"Bearer {token}"

    async def _fetch(self, context: ErrorContext, pace: Pace | None) -> str:
        self._token = self._renew_at = None
        response = await self._token_response(context, pace)
        if not 200 <= response.status <= 299:
            if response.status == 429 or 500 <= response.status <= 599:
                raise self._http.status_error(response, context, source=TOKEN_ENDPOINT)
            raise self._refused(response.status, response.body, context)
        document = json_or(response.body, None)
        token = document.get("access_token") if isinstance(document, dict) else None
        if not isinstance(document, dict) or not isinstance(token, str) or not token:
            raise self._refused(response.status, b"", context)
        self._http.redact.add(token)
        self._token = token
        self._renew_at = self._renewal_time(document.get("expires_in"))
        return token

    async def _token_response(self, context: ErrorContext, pace: Pace | None) -> RawResponse:
        if pace is not None:
            await pace(holding_lock=True)  # sent holding self._lock: see ``Pace``
        with contextlib.suppress(BadResponse):
            return await self._http.request(
                "POST",
                self._token_url,
                context=context,
                headers={"Authorization": self._basic},
                data={"grant_type": "client_credentials"},
            )
        # The BadResponse excerpt could hold a token (not yet known to the redactor): it is
        # dropped, and since this is raised after the handler, it is not chained either.
        raise AuthFailed(f"{TOKEN_ENDPOINT}: response unreadable", provider=context.provider,
                         account=context.account, conference_id=context.conference_id)

    def _renewal_time(self, expires_in: object) -> datetime | None:
        # Without a usable lifetime the token is kept until the API rejects it (401 ⇒ renew).
        if isinstance(expires_in, str):
            try:
                expires_in = float(expires_in)
            except ValueError:
                return None
        if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
            return None
        if not 0 < expires_in < 10 * 365 * 86400:
            return None
        margin = min(self._margin_seconds, expires_in / 2)
        return self._clock() + timedelta(seconds=expires_in - margin)

    def _refused(self, status: int, body: bytes, context: ErrorContext) -> AuthFailed:
        # OAuth2 error bodies (RFC 6749 §5.2): {"error": "invalid_client", "error_description"}.
        document = json_or(body, None)
        code = document.get("error") if isinstance(document, dict) else None
        detail = document.get("error_description") if isinstance(document, dict) else None
        if 200 <= status <= 299:
            message = f"{TOKEN_ENDPOINT} answered without an access_token"
        else:
            message = f"{TOKEN_ENDPOINT} refused the client credentials (HTTP {status})"
        if isinstance(detail, str) and detail:
            message = f"{message}: {self._http.redact(detail)[:200]}"
        return AuthFailed(
            message,
            provider=context.provider,
            account=context.account,
            conference_id=context.conference_id,
            http_status=status,
            provider_code=self._http.redact(code)[:100] if isinstance(code, str) else None,
        )
