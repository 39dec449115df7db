"""The shared HTTP layer: one connection pool per account, and the error boundary.

Everything the provider clients send goes through ``ProviderHttp``:

* explicit connect / read / write / pool timeouts and connection limits (``HttpSettings``);
* what sends the requests is a ``poller.providers.wire.Wire``: aiohttp directly (the default,
  the lean path: ``docs/benchmarks.md``), httpx's own transport
  (``HttpSettings.transport = "httpx"``), or an injected ``httpx.AsyncBaseTransport``
  (``httpx.MockTransport`` in tests, ``httpx.ASGITransport`` over the simulator); no
  redirects followed;
* bodies streamed and cut off past ``max_response_bytes`` (``BadResponse``), so a runaway or
  hostile server cannot exhaust memory;
* httpx, aiohttp and socket errors translated **once** (the wire names the kind, this module
  makes the error): timeouts ⇒ ``Timeout``; connection, reset and protocol errors ⇒
  ``NetworkError``; an undecodable body ⇒ ``BadResponse``; HTTP error statuses as in
  ``poller.providers.status``;
* every message and excerpt redacted of the account's secrets (``poller.providers.redaction``);
  the ``Authorization`` header is never logged (only method, path and status are, at DEBUG);
* identifiers put into URL paths as exactly one segment (``poller.model.path_segment``);
* pacing: every request takes the caller's :class:`Pace` (``pace=``), awaited before it is
  sent (conference and participant pages, list pages and OAuth2 token requests alike), so the
  account's token bucket (``requests_per_second``) counts HTTP requests, not polls. The
  clients pass it down explicitly from ``fetch`` / ``list_conferences``; ``None`` is unpaced.

"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol, TypeVar
from urllib.parse import quote, urlencode

import httpx

from poller.config.settings import PollingSettings
from poller.errors import (
    BadResponse,
    NetworkError,
    ProviderError,
    Timeout,
)
from poller.model import JSON
from poller.providers.fields import EXCERPT_CHARS
from poller.providers.redaction import Redactor
from poller.providers.status import ErrorContext, ErrorDetailReader, error_for_status
from poller.providers.wire import AiohttpWire, HttpxWire, RawResponse, Wire, WireError

logger = logging.getLogger("poller.providers")

T = TypeVar("T")

def json_or(body: bytes, fallback: T) -> JSON | T:
    """``body`` decoded as JSON, or ``fallback`` when it is empty, not JSON, or nested too
    deeply to decode."""
    if not body:
        return fallback
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return fallback


_NOT_JSON = object()
"""``decode_json``'s fallback, telling a body that is not JSON from a JSON ``null``."""


Clock = Callable[[], datetime]
"""Returns the current time as an aware UTC datetime (``poller.model.utc_now`` by default)."""

class ResponseObserver(Protocol):
    """Told the outcome of every request (``poller.daemon.metrics.PollerMetrics`` is one)."""

    def observe_http_response(self, provider: str, status_code: int | None) -> None:
        """One request to ``provider`` got ``status_code`` (``None``: no response)."""


class Pace(Protocol):
    """Awaited before each request of a poll or a listing: returns when the account may send it
    (``poller.polling.pacing``: its token bucket, and the poll's slot).

    ``holding_lock=True`` says the request is sent holding a lock other requests of the account
    may wait on (the OAuth2 token fetch): the pace must then keep what the poll holds while it
    waits, or the polls waiting on that lock would wait for ever.
    """

    async def __call__(self, *, holding_lock: bool = False) -> None: ...

TransportName = Literal["aiohttp", "httpx"]
"""Which library sends the requests when no transport is injected (``HttpSettings.transport``)."""


_POLLING = PollingSettings()
"""``[polling]``'s defaults, which are this module's defaults too."""


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """Timeouts, connection limits and the response size cap for one account's client."""

    connect_timeout_seconds: float = _POLLING.connect_timeout_seconds
    read_timeout_seconds: float = _POLLING.read_timeout_seconds
    write_timeout_seconds: float = _POLLING.write_timeout_seconds
    pool_timeout_seconds: float = _POLLING.pool_timeout_seconds
    max_connections: int = _POLLING.connections_per_account
    """Connections to the account's server at once (``[polling] max_connections_per_account``;
    only as many are opened as requests are in flight, and idle ones close after
    ``keepalive_expiry_seconds``)."""
    max_keepalive_connections: int = 10
    keepalive_expiry_seconds: float = 30.0
    max_response_bytes: int = 4 * 1024 * 1024
    """Bodies longer than this (4 MiB by default) are abandoned as ``BadResponse``."""
    max_retry_after_seconds: float = _POLLING.max_retry_after_seconds
    """The longest wait a 429 / 5xx may ask for (longer ones are cut, and say so)."""
    user_agent: str = "poller/0.1"
    transport: TransportName = "aiohttp"
    """``aiohttp`` (aiohttp directly, the default) or ``httpx`` (httpx's own transport)."""

    @classmethod
    def for_polling(cls, polling: PollingSettings) -> HttpSettings:
        """The settings ``[polling]`` gives (timeouts, connections and transport; the rest
        defaults)."""
        return cls(
            connect_timeout_seconds=polling.connect_timeout_seconds,
            read_timeout_seconds=polling.read_timeout_seconds,
            write_timeout_seconds=polling.write_timeout_seconds,
            pool_timeout_seconds=polling.pool_timeout_seconds,
            max_connections=polling.connections_per_account,
            transport=polling.http_transport,
            max_retry_after_seconds=polling.max_retry_after_seconds,
        )

    def wire(self, headers: Mapping[str, str], transport: httpx.AsyncBaseTransport | None
             ) -> Wire:
        """What sends the requests (``poller.providers.wire``): ``transport`` when one is
        injected, else aiohttp directly or httpx's own transport (``transport``)."""
        if transport is None and self.transport == "aiohttp":
            return AiohttpWire(self, headers)
        return HttpxWire(self, headers, transport)


class ProviderHttp:
    """One account's HTTP client with error translation, size cap and secret redaction."""

    def __init__(
        self,
        *,
        provider: str,
        account: str,
        base_url: str,
        settings: HttpSettings,
        clock: Clock,
        read_error_detail: ErrorDetailReader,
        redactor: Redactor,
        transport: httpx.AsyncBaseTransport | None = None,
        observer: ResponseObserver | None = None,
    ) -> None:
        self.provider = provider
        self.observer = observer
        """Told the status code of every request (``None``: no response); optional."""
        self.account = account
        self.settings = settings
        self.clock = clock
        self.redact = redactor
        self._read_error_detail = read_error_detail
        self._wire = settings.wire(
            {"User-Agent": settings.user_agent, "Accept": "application/json"}, transport)
        self._base = str(httpx.URL(base_url)).rstrip("/") + "/"
        """The base URL, ending in ``/`` (a path is joined to it, not to a bare host)."""

    def _absolute(self, url: str, params: Mapping[str, str] | None) -> str:
        """``url`` (a path under the base URL, or an absolute URL) with ``params`` encoded, as
        one absolute URL. httpx then parses it once; a relative URL plus separate ``params``
        would be parsed three times (joined to the base, then again with the query), which
        was a third of the CPU of a poll."""
        if "://" not in url:
            url = self._base + url.lstrip("/")
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params, quote_via=quote)
        return url

    def context(self, conference_id: str | None) -> ErrorContext:
        """The error context of a request about ``conference_id`` on this account."""
        return ErrorContext(self.provider, self.account, conference_id)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._wire.aclose()

    def url(self, path: str) -> str:
        """The absolute URL a request for ``path`` goes to (``base_url`` applied)."""
        return str(httpx.URL(self._absolute(path, None)))

    async def request(
        self,
        method: str,
        url: str,
        *,
        context: ErrorContext,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        pace: Pace | None = None,
    ) -> RawResponse:
        """Send one request (once ``pace`` allows it) and read its body within the cap;
        transport errors translated."""
        if pace is not None:
            await pace()
        absolute = self._absolute(url, params)
        status: int | None = None
        error: ProviderError
        try:
            response = await self._wire.send(method, absolute, headers, data)
            status = response.status
        except WireError as exc:
            status = exc.status
            error = self._wire_error(exc, f"{method} {_path_of(absolute)}", context)
        else:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("%s %s %s -> %s (%d bytes)", self.account, method,
                             _path_of(absolute), status, len(response.body))
            return response
        finally:
            if self.observer is not None:
                self.observer.observe_http_response(self.provider, status)
        raise error  # outside the handler: unchained (see the module docstring)

    def _wire_error(self, exc: WireError, where: str, context: ErrorContext) -> ProviderError:
        """The ``poller.errors`` error for what the wire reported."""
        cap = self.settings.max_response_bytes
        if exc.kind == "timeout":
            return self._translated(Timeout, f"{where}: timed out ({exc.detail})", context)
        if exc.kind == "undecodable":
            return self._translated(BadResponse, f"{where}: undecodable body ({exc.detail})",
                                    context)
        if exc.kind == "too_large":
            if exc.declared is not None:
                return self.bad_response(
                    f"response of {exc.declared} bytes exceeds the {cap}-byte cap", context,
                    None, exc.status)
            return self.bad_response(f"response exceeds the {cap}-byte cap", context,
                                     exc.head, exc.status)
        return self._translated(NetworkError, f"{where}: connection failed ({exc.detail})",
                                context)

    async def get_ok(
        self,
        url: str,
        *,
        context: ErrorContext,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        pace: Pace | None = None,
    ) -> RawResponse:
        """GET ``url`` and return its answer if it is a 2xx (``decode_json`` reads its body);
        errors translated."""
        response = await self.request("GET", url, context=context, headers=headers,
                                      params=params, pace=pace)
        if 200 <= response.status <= 299:
            return response
        raise self.status_error(response, context)

    def status_error(self, response: RawResponse, context: ErrorContext, *,
                     source: str | None = None) -> ProviderError:
        """The error for a non-2xx response (see ``poller.providers.status``); ``source``
        names who answered when it was not the API (the token endpoint)."""
        return error_for_status(response.status, response.headers, json_or(response.body, None),
                                context, self.clock(), self._read_error_detail, self.redact,
                                source=source,
                                max_retry_after_seconds=self.settings.max_retry_after_seconds)

    def decode_json(self, response: RawResponse, context: ErrorContext) -> JSON:
        """The body decoded as JSON, or ``BadResponse`` with a short redacted excerpt."""
        document = json_or(response.body, _NOT_JSON)
        if document is _NOT_JSON:
            raise self.bad_response("response is not JSON", context, response.body,
                                    response.status)
        return document

    def bad_response(self, message: str, context: ErrorContext, body: bytes | str | None,
                     http_status: int | None = None) -> BadResponse:
        """A ``BadResponse`` with context and a redacted excerpt of ``body``."""
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        return BadResponse(
            self.redact(message),
            provider=context.provider,
            account=context.account,
            conference_id=context.conference_id,
            http_status=http_status,
            excerpt=self.redact.cut(text, EXCERPT_CHARS) if text is not None else None,
        )

    def _translated(self, kind: type[ProviderError], message: str, context: ErrorContext
                    ) -> ProviderError:
        return kind(self.redact(message)[:300], provider=context.provider,
                    account=context.account, conference_id=context.conference_id)


def _path_of(url: str) -> str:
    """The path and query of an absolute URL (what the logs and messages name)."""
    rest = url.partition("://")[2]
    slash = rest.find("/")
    return rest[slash:] if slash >= 0 else "/"
