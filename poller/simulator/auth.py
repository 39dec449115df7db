"""Credential checks for both providers and the simulated OAuth2 token issuer.

* Telnyx: ``Authorization: Bearer <api key>``; the configured key passes, the "forbidden" key
  authenticates but is refused (403), anything else is unauthenticated (401).
* Bandwidth: HTTP Basic with the API user's username / password, **or** ``Bearer <token>`` from
  ``POST /api/v1/oauth2/token``; the account ID in the path must be the simulator's (403).

Access tokens are stateless: ``sim.<nonce>.<expiry>.<hmac>``, where the expiry is on the
simulator clock (milliseconds after the epoch), so a test can advance a ``VirtualClock`` past it
and memory does not grow with the number of tokens issued.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import itertools
from enum import Enum

from starlette.requests import Request

from poller.simulator.config import Credentials


class AuthOutcome(Enum):
    """The result of checking a request's credentials."""

    ALLOWED = "allowed"
    UNAUTHENTICATED = "unauthenticated"
    """401: no credentials, or wrong ones."""
    FORBIDDEN = "forbidden"
    """403: valid credentials that may not read this resource."""


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, if there is one."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def basic_credentials(request: Request) -> tuple[str, str] | None:
    """``(username, password)`` of an ``Authorization: Basic …`` header, if it decodes."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, colon, password = decoded.partition(":")
    return (username, password) if colon else None


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def check_telnyx(request: Request, credentials: Credentials) -> AuthOutcome:
    """Telnyx: Bearer API key."""
    token = bearer_token(request)
    if token is not None and _same(token, credentials.telnyx_api_key):
        return AuthOutcome.ALLOWED
    if token is not None and _same(token, credentials.telnyx_forbidden_api_key):
        return AuthOutcome.FORBIDDEN
    return AuthOutcome.UNAUTHENTICATED


def check_bandwidth(request: Request, account_id: str, credentials: Credentials,
                    tokens: TokenIssuer, now_ms: int) -> AuthOutcome:
    """Bandwidth: Basic API user or OAuth2 Bearer token, then the account in the path."""
    basic = basic_credentials(request)
    token = bearer_token(request)
    if basic is not None:
        username, password = basic
        authenticated = (_same(username, credentials.bandwidth_username)
                         and _same(password, credentials.bandwidth_password))
    else:
        authenticated = token is not None and tokens.is_valid(token, now_ms)
    if not authenticated:
        return AuthOutcome.UNAUTHENTICATED
    if account_id != credentials.bandwidth_account_id:
        return AuthOutcome.FORBIDDEN
    return AuthOutcome.ALLOWED


class TokenIssuer:
    """Issues and verifies the simulator's stateless OAuth2 access tokens."""

    def __init__(self, credentials: Credentials, *, secret: str) -> None:
        self._credentials = credentials
        self._key = hashlib.sha256(secret.encode()).digest()
        self._nonces = itertools.count(1)
        self.issued = 0
        """Tokens issued so far (``GET /_sim/stats``)."""

    def client_is_valid(self, request: Request) -> bool:
        """Whether the request's Basic credentials are the OAuth2 client's."""
        basic = basic_credentials(request)
        if basic is None:
            return False
        client_id, client_secret = basic
        return (_same(client_id, self._credentials.bandwidth_client_id)
                and _same(client_secret, self._credentials.bandwidth_client_secret))

    def issue(self, now_ms: int) -> tuple[str, int]:
        """A new access token and its lifetime in seconds (simulator clock)."""
        lifetime_seconds = self._credentials.token_lifetime_seconds
        expires_ms = now_ms + lifetime_seconds * 1000
        self.issued += 1
        payload = f"{next(self._nonces)}.{expires_ms}"
        return f"sim.{payload}.{self._sign(payload)}", lifetime_seconds

    def is_valid(self, token: str, now_ms: int) -> bool:
        """Whether ``token`` was issued here and has not expired at ``now_ms``."""
        prefix, _, rest = token.partition(".")
        payload, _, signature = rest.rpartition(".")
        if prefix != "sim" or not _same(signature, self._sign(payload)):
            return False
        try:
            expires_ms = int(payload.partition(".")[2])
        except ValueError:
            return False
        return now_ms < expires_ms

    def _sign(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()[:32]
