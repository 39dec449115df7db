"""Translating a provider's HTTP error status into the error tree.

=========================  ==============================================================
HTTP status                error
=========================  ==============================================================
404                        ``NotFound`` (provider code kept: Telnyx ``errors[0].code``,
                           Bandwidth ``type``)
401, 403                   ``AuthFailed``
429                        ``RateLimited`` with ``retry_after_seconds``
5xx                        ``ServerError`` (with ``retry_after_seconds`` when given, e.g. 503)
any other non-2xx          ``BadResponse`` (a request poller should not have made, or a
                           redirect poller does not follow)
=========================  ==============================================================

The wait a provider asks for is read, first match wins, from ``retry-after-ms`` (milliseconds),
``Retry-After`` (delta seconds or an HTTP-date) and Telnyx's ``x-ratelimit-reset``. Telnyx does
not document the unit of ``x-ratelimit-reset``; poller reads values above
``EPOCH_THRESHOLD_SECONDS`` (ten years) as a Unix time in seconds (above 10¹¹: milliseconds)
and smaller values as delta seconds. Waits are clamped to ``[0, max_retry_after_seconds]``
(``[polling] max_retry_after_seconds``, an hour by default): a longer wait is surely a misread
header or a mistake, and would stall an account for good, so it is cut and the error's message
says so (and thereby the log line).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime

from poller.errors import AuthFailed, BadResponse, NotFound, ProviderError, RateLimited, ServerError
from poller.model import JSON

EPOCH_THRESHOLD_SECONDS = 10 * 365 * 86400
EPOCH_MILLISECONDS_THRESHOLD = 1e11
MAX_RETRY_AFTER_SECONDS = 3600.0
"""The default cap on a wait a provider asks for (``[polling] max_retry_after_seconds``)."""

ErrorDetailReader = Callable[[JSON], tuple[str | None, str | None]]
"""Reads ``(provider_code, detail text)`` from a decoded error body (either may be ``None``)."""


@dataclass(frozen=True, slots=True)
class ErrorContext:
    """Who was being asked what, for the context every ``ProviderError`` carries."""

    provider: str
    account: str
    conference_id: str | None = None


def retry_after_seconds(headers: Mapping[str, str], now: datetime,
                        cap: float = MAX_RETRY_AFTER_SECONDS) -> float | None:
    """The wait the provider asked for, in seconds, within ``[0, cap]``; ``None`` if no header
    says so."""
    for name, read in (
        ("retry-after-ms", _milliseconds),
        ("retry-after", _delta_or_http_date),
        ("x-ratelimit-reset", _delta_or_epoch),
    ):
        value = headers.get(name)
        if value is None:
            continue
        seconds = read(value.strip(), now)
        if seconds is not None:
            return min(max(seconds, 0.0), cap)
    return None


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _milliseconds(text: str, now: datetime) -> float | None:
    value = _number(text)
    return None if value is None else value / 1000.0


def _delta_or_http_date(text: str, now: datetime) -> float | None:
    value = _number(text)
    if value is not None:
        return value
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; the "-0000" form parses naive.
        when = when.replace(tzinfo=now.tzinfo)
    return (when - now).total_seconds()


def _delta_or_epoch(text: str, now: datetime) -> float | None:
    value = _number(text)
    if value is None:
        return None
    if value > EPOCH_MILLISECONDS_THRESHOLD:
        return value / 1000.0 - now.timestamp()
    if value > EPOCH_THRESHOLD_SECONDS:
        return value - now.timestamp()
    return value


def error_for_status(
    status: int,
    headers: Mapping[str, str],
    body: JSON,
    context: ErrorContext,
    now: datetime,
    read_detail: ErrorDetailReader,
    redact: Callable[[str], str],
    *,
    source: str | None = None,
    max_retry_after_seconds: float = MAX_RETRY_AFTER_SECONDS,
) -> ProviderError:
    """The error for a non-2xx response; ``body`` is the decoded JSON body or ``None``.

    ``source``, when given, starts the message (``"token endpoint: rate limited"``). A wait
    asked for beyond ``max_retry_after_seconds`` is cut to it, and the message says so.
    """
    code, detail = _safe_detail(read_detail, body)
    prefix = f"{source}: " if source else ""
    suffix = f": {redact(detail)[:200]}" if detail else ""

    def build(kind: type[ProviderError], message: str, retry_after: float | None = None
              ) -> ProviderError:
        return kind(
            f"{prefix}{message}{suffix}",
            provider=context.provider,
            account=context.account,
            conference_id=context.conference_id,
            http_status=status,
            provider_code=redact(code)[:100] if code else None,
            retry_after_seconds=retry_after,
        )

    if status == 404:
        return build(NotFound, "conference not found")
    if status in (401, 403):
        return build(AuthFailed, "credentials rejected" if status == 401 else "access forbidden")
    asked = retry_after_seconds(headers, now, cap=float("inf"))
    wait = None if asked is None else min(asked, max_retry_after_seconds)
    cut = (f" (asked to wait {asked:.0f} s; cut to max_retry_after_seconds = "
           f"{max_retry_after_seconds:g})" if asked is not None and wait != asked else "")
    if status == 429:
        return build(RateLimited, f"rate limited{cut}", wait)
    if 500 <= status <= 599:
        return build(ServerError, f"server error{cut}", wait)
    return build(BadResponse, f"unexpected HTTP status {status}")


def _safe_detail(read_detail: ErrorDetailReader, body: JSON) -> tuple[str | None, str | None]:
    if body is None:
        return None, None
    code, detail = read_detail(body)
    return (code if isinstance(code, str) else None,
            detail if isinstance(detail, str) else None)

