"""Reading typed fields out of provider JSON objects, tolerantly.

The parsers never trust a field's type: a value of the wrong type is read as ``None`` and noted
in the warnings, an unknown enum value is kept as seen and noted, and an absent or null field is
simply ``None``. Only a wrong *shape* (the document is not an object, a list is not a list, an
identifier is missing) is an error, raised as ``BadResponse`` with a short excerpt.

Timestamps (``parse_timestamp``): both providers document ISO 8601
(``2019-01-23T18:10:02.574Z``), but poller treats every timestamp as text to read carefully
rather than trust: ``Z`` or ``z``, numeric offsets
(``+02:00``, ``+0200``, ``+02``), a ``T`` or a space between date and time, fractional seconds of
any length (truncated to microseconds), and surrounding whitespace are all accepted. A timestamp
without a zone is taken as UTC and noted in the warnings; anything unreadable becomes ``None``
plus a warning. ``parse_timestamp`` never raises.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from poller.errors import BadResponse
from poller.model import JSON

_ISO_8601 = re.compile(
    r"""
    (?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})
    (?:
        [Tt\x20]
        (?P<hour>[0-9]{2}):(?P<minute>[0-9]{2})
        (?::(?P<second>[0-9]{2})(?:[.,](?P<fraction>[0-9]+))?)?
    )?
    \x20?
    (?P<zone>[Zz]|[+-][0-9]{2}(?::?[0-9]{2})?)?
    """,
    re.VERBOSE | re.ASCII,
)

_MAX_SHOWN = 60


def shorten(value: JSON) -> str:
    """``repr`` of a JSON value cut to a length fit for a warning message."""
    try:
        text = repr(value)
    except RecursionError:
        text = "<deeply nested value>"
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 1] + "…"


def parse_timestamp(value: JSON, field: str, warnings: list[str]) -> datetime | None:
    """Parse one provider timestamp to aware UTC, or ``None`` (with a warning) if unreadable.

    ``None`` in gives ``None`` out without a warning: absent and null mean "not reported".
    """
    if value is None:
        return None
    if not isinstance(value, str):
        warnings.append(f"{field}: not a timestamp string: {shorten(value)}")
        return None
    match = _ISO_8601.fullmatch(value.strip())
    if match is None:
        warnings.append(f"{field}: unreadable timestamp {shorten(value)}")
        return None
    try:
        parsed = _build(match)
    except (ValueError, OverflowError):
        warnings.append(f"{field}: impossible timestamp {shorten(value)}")
        return None
    if match["zone"] is None:
        warnings.append(f"{field}: timestamp {shorten(value)} has no time zone; assumed UTC")
    return parsed


def _build(match: re.Match[str]) -> datetime:
    fraction = (match["fraction"] or "")[:6].ljust(6, "0")
    local = datetime(
        int(match["year"]),
        int(match["month"]),
        int(match["day"]),
        int(match["hour"] or 0),
        int(match["minute"] or 0),
        int(match["second"] or 0),
        int(fraction),
        tzinfo=_zone(match["zone"]),
    )
    # astimezone can overflow at the ends of the calendar (year 1 with a positive offset).
    return local.astimezone(UTC)


def _zone(zone: str | None) -> timezone:
    if zone is None or zone in ("Z", "z"):
        return UTC
    sign = -1 if zone[0] == "-" else 1
    digits = zone[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
    if hours > 23 or minutes > 59:
        raise ValueError(f"offset out of range: {zone}")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


EXCERPT_CHARS = 200
"""The longest excerpt of a provider document put into an error."""


def excerpt(value: JSON) -> str:
    """A compact JSON rendering of ``value``, cut to ``EXCERPT_CHARS`` characters."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    except (ValueError, TypeError, RecursionError):
        text = shorten(value)
    return text[:EXCERPT_CHARS]


def bad_shape(provider: str, what: str, document: JSON) -> BadResponse:
    """The ``BadResponse`` for a document whose shape is not the documented one."""
    return BadResponse(f"unexpected response shape: {what}", provider=provider,
                       excerpt=excerpt(document))


def require_object(provider: str, value: JSON, what: str, document: JSON) -> Mapping[str, Any]:
    """``value`` as a JSON object, or ``BadResponse`` naming ``what`` should have been one."""
    if not isinstance(value, dict):
        raise bad_shape(provider, f"{what} is not an object", document)
    return value


def require_id(provider: str, obj: Mapping[str, Any], key: str, what: str) -> str:
    """The non-empty string identifier ``obj[key]``, or ``BadResponse``."""
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise bad_shape(provider, f"{what} has no {key!r}", obj)
    return value


class FieldReader:
    """Reads the fields of one JSON object, appending oddities to a shared warnings list."""

    def __init__(self, obj: Mapping[str, Any], where: str, warnings: list[str]) -> None:
        self._obj = obj
        self._where = where
        self._warnings = warnings

    def _warn(self, key: str, problem: str) -> None:
        self._warnings.append(f"{self._where}.{key}: {problem}")

    def text(self, key: str) -> str | None:
        """A string field; ``None`` when absent, null or not a string (the last with a warning)."""
        value = self._obj.get(key)
        if value is None or isinstance(value, str):
            return value
        self._warn(key, f"expected a string, got {shorten(value)}")
        return None

    def enum(self, key: str, known: frozenset[str]) -> str | None:
        """A string field with documented values; an unknown value is kept and noted."""
        value = self.text(key)
        if value is not None and value not in known:
            self._warn(key, f"unknown value {shorten(value)} kept as seen")
        return value

    def flag(self, key: str) -> bool | None:
        """A boolean field; ``None`` when absent, null or not a boolean."""
        value = self._obj.get(key)
        if value is None or isinstance(value, bool):
            return value
        self._warn(key, f"expected a boolean, got {shorten(value)}")
        return None

    def count(self, key: str) -> int | None:
        """A non-negative integer field (booleans and negatives refused with a warning)."""
        value = self._obj.get(key)
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        self._warn(key, f"expected a non-negative integer, got {shorten(value)}")
        return None

    def time(self, key: str) -> datetime | None:
        """A timestamp field parsed tolerantly to aware UTC (see ``parse_timestamp``)."""
        return parse_timestamp(self._obj.get(key), f"{self._where}.{key}", self._warnings)

    def texts(self, key: str) -> tuple[str, ...] | None:
        """A list of strings; ``None`` when absent or null. Non-string items are dropped."""
        value = self._obj.get(key)
        if value is None:
            return None
        if not isinstance(value, list):
            self._warn(key, f"expected a list, got {shorten(value)}")
            return None
        items = tuple(item for item in value if isinstance(item, str))
        if len(items) != len(value):
            self._warn(key, f"dropped {len(value) - len(items)} non-string item(s)")
        return items

    def child(self, key: str) -> FieldReader | None:
        """A reader over a nested object; ``None`` when absent, null or not an object."""
        value = self._obj.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            self._warn(key, f"expected an object, got {shorten(value)}")
            return None
        return FieldReader(value, f"{self._where}.{key}", self._warnings)
