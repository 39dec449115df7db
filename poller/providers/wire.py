"""What puts a request on the wire and reads its answer: aiohttp directly, or an httpx client.

``ProviderHttp`` (``poller.providers.http``) owns everything about a request but sending it:
pacing, URLs, the error boundary, redaction, logging, metrics. A :class:`Wire` only sends one
request and reads the body within the size cap, and says what went wrong in one of four
:class:`WireError` kinds, which ``ProviderHttp`` turns into ``poller.errors``:

* :class:`AiohttpWire`, the default (``[polling] http_transport = "aiohttp"``): one
  ``aiohttp.ClientSession`` per account, called directly. An httpx request and response object
  per request, and httpx-aiohttp's adapter between them, cost more CPU than aiohttp
  itself (``bench/transport.py``; ``docs/benchmarks.md``): the lean path skips them;
* :class:`HttpxWire`: an ``httpx.AsyncClient`` over httpx's own transport
  (``http_transport = "httpx"``, which also honours proxy settings from the environment) or
  over an injected ``httpx.AsyncBaseTransport`` (``MockTransport`` and ``ASGITransport`` in
  tests and the demo). It is the seam the tests use.

Both: no redirects followed, bodies decoded of their ``Content-Encoding`` (gzip, deflate),
a body past the cap abandoned, the connection pool bounded by ``max_connections``.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

import aiohttp
import httpx
from aiohttp.http_exceptions import ContentEncodingError

if TYPE_CHECKING:
    from poller.providers.http import HttpSettings

WireErrorKind = Literal["timeout", "network", "undecodable", "too_large"]


class WireError(Exception):
    """A request that got no usable answer: ``kind`` says why (see the module docstring).

    ``status`` is the HTTP status when a response started (a body that then failed);
    ``declared`` the ``Content-Length`` of a ``too_large`` body when it said so up front, and
    ``head`` its first bytes when it did not.
    """

    def __init__(self, kind: WireErrorKind, detail: str, *, status: int | None = None,
                 declared: int | None = None, head: bytes | None = None) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.status = status
        self.declared = declared
        self.head = head


@dataclass(frozen=True, slots=True)
class RawResponse:
    """A response read in full (within the size cap): status, headers and body bytes."""

    status: int
    headers: Mapping[str, str]
    """Case-insensitive (``aiohttp``'s ``CIMultiDictProxy`` or ``httpx.Headers``)."""
    body: bytes


class Wire(Protocol):
    """Sends one request and reads its answer (see the module docstring)."""

    async def send(self, method: str, url: str, headers: Mapping[str, str] | None,
                   data: Mapping[str, str] | None) -> RawResponse:
        """Send ``method url`` (an absolute URL) with ``headers`` added to the defaults and
        ``data`` form-encoded; the answer within the cap, or :class:`WireError`."""
        ...

    async def aclose(self) -> None:
        """Close the connection pool."""
        ...


def _name(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class AiohttpWire:
    """Requests sent by one ``aiohttp.ClientSession``, made on first use (inside the loop)."""

    def __init__(self, settings: HttpSettings, headers: Mapping[str, str]) -> None:
        self._settings = settings
        self._headers = dict(headers)
        self._cap = settings.max_response_bytes
        # aiohttp has no write timeout; ``connect`` bounds the wait for a pooled connection
        # together with opening one, ``sock_connect`` the TCP/TLS connect, ``sock_read`` each
        # read (as httpx's read timeout does).
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=settings.pool_timeout_seconds,
            sock_connect=settings.connect_timeout_seconds,
            sock_read=settings.read_timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._settings.max_connections, limit_per_host=0,
            keepalive_timeout=self._settings.keepalive_expiry_seconds,
            ssl=_ssl_context())
        self._session = aiohttp.ClientSession(connector=connector, headers=self._headers,
                                              timeout=self._timeout, trust_env=False)
        return self._session

    async def send(self, method: str, url: str, headers: Mapping[str, str] | None,
                   data: Mapping[str, str] | None) -> RawResponse:
        """See :meth:`Wire.send`."""
        session = self._session or self._open()
        status: int | None = None
        try:
            async with session.request(method, url, headers=headers, data=data,
                                       allow_redirects=False) as response:
                status = response.status
                body = await self._read(response)
                return RawResponse(status, response.headers, body)
        except TimeoutError as exc:  # aiohttp's connect and read timeouts are TimeoutErrors
            raise WireError("timeout", _timeout_name(exc), status=status) from None
        except aiohttp.ClientPayloadError as exc:
            kind: WireErrorKind = "undecodable" if _undecodable(exc) else "network"
            raise WireError(kind, _name(exc), status=status) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise WireError("network", _name(exc), status=status) from None

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        cap, declared = self._cap, response.content_length
        if declared is not None and declared > cap:
            raise WireError("too_large", "", status=response.status, declared=declared)
        if declared is not None and "Content-Encoding" not in response.headers:
            return await response.read()  # exactly Content-Length bytes: within the cap
        # Decoded chunks: a small compressed body may inflate past the cap.
        return await _capped(response.content.iter_any(), cap, response.status)

    async def aclose(self) -> None:
        """See :meth:`Wire.aclose`."""
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _capped(chunks: AsyncIterator[bytes], cap: int, status: int) -> bytes:
    """The body ``chunks`` make, or a ``too_large`` :class:`WireError` once past ``cap``."""
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > cap:
            raise WireError("too_large", "", status=status, head=b"".join(parts)[:65536])
        parts.append(chunk)
    return b"".join(parts)


def _timeout_name(exc: TimeoutError) -> str:
    """httpx's name for an aiohttp timeout, so that messages read the same either way."""
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return "ReadTimeout"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "ConnectTimeout"  # aiohttp's connect timeout covers the wait for the pool too
    return type(exc).__name__


def _undecodable(exc: aiohttp.ClientPayloadError) -> bool:
    """Whether a body failed for its ``Content-Encoding`` (not a connection cut short)."""
    return (isinstance(exc.__cause__, ContentEncodingError)
            or "Can not decode content-encoding" in str(exc))


_SSL: ssl.SSLContext | None = None


def _ssl_context() -> ssl.SSLContext:
    """httpx's default TLS context (certifi's roots), made once: it takes tens of ms."""
    global _SSL
    if _SSL is None:
        _SSL = httpx.create_ssl_context()
    return _SSL


class HttpxWire:
    """Requests sent by an ``httpx.AsyncClient`` over ``transport`` (``None``: httpx's own)."""

    def __init__(self, settings: HttpSettings, headers: Mapping[str, str],
                 transport: httpx.AsyncBaseTransport | None) -> None:
        self._cap = settings.max_response_bytes
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=settings.connect_timeout_seconds,
                                  read=settings.read_timeout_seconds,
                                  write=settings.write_timeout_seconds,
                                  pool=settings.pool_timeout_seconds),
            limits=httpx.Limits(max_connections=settings.max_connections,
                                max_keepalive_connections=settings.max_keepalive_connections,
                                keepalive_expiry=settings.keepalive_expiry_seconds),
            transport=transport, follow_redirects=False, headers=dict(headers))

    async def send(self, method: str, url: str, headers: Mapping[str, str] | None,
                   data: Mapping[str, str] | None) -> RawResponse:
        """See :meth:`Wire.send`."""
        status: int | None = None
        try:
            request = self._client.build_request(method, url, headers=headers, data=data)
            response = await self._client.send(request, stream=True)
            status = response.status_code
            try:
                body = await self._read(response)
            finally:
                await response.aclose()
        except httpx.TimeoutException as exc:
            raise WireError("timeout", type(exc).__name__, status=status) from None
        except httpx.DecodingError as exc:
            raise WireError("undecodable", _name(exc), status=status) from None
        except (httpx.TransportError, httpx.RequestError, OSError) as exc:
            raise WireError("network", _name(exc), status=status) from None
        return RawResponse(status, response.headers, body)

    async def _read(self, response: httpx.Response) -> bytes:
        cap = self._cap
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise WireError("too_large", "", status=response.status_code,
                            declared=int(declared))
        return await _capped(response.aiter_bytes(), cap, response.status_code)

    async def aclose(self) -> None:
        """See :meth:`Wire.aclose`."""
        await self._client.aclose()
