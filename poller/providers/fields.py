"""Reading typed fields out of provider JSON objects: strict on types, tolerant on growth.

The specs say what type each field has. A field that is absent or null is "not reported"
(``None``). A field present with another type (a number where the spec says string, a list
where it says a timestamp), or a timestamp string that cannot be read, is **not** guessed at:
it raises ``BadResponse`` naming the field, so the poll fails and nothing about the conference
changes (DESIGN §9: never invent). What the specs let grow is kept: an enum value poller does
not know is stored as seen with a warning, unknown fields stay in the raw JSON.

Warnings (an unknown enum value, a timestamp without a zone, an implausible date, odd paging
metadata) never fail a poll: they travel with the observation and are stored with its
snapshot (``conference_snapshot.warnings``) and logged.

Timestamps (``parse_timestamp``): both providers document ISO 8601
(``2019-01-23T18:10:02.574Z``), but poller treats every timestamp as text to read carefully:
``Z`` or ``z``, numeric offsets (``+02:00``, ``+0200``, ``+02``), a ``T`` or a space between
date and time, fractional seconds of any length (truncated to microseconds), and surrounding
whitespace are all accepted. A timestamp without a zone is taken as UTC and noted in the
warnings, and so is a date outside ``PLAUSIBLE_YEARS``. ``parse_timestamp`` itself never raises
(an unreadable value gives ``None`` plus a warning); the field readers turn that into
``BadResponse``.
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

PLAUSIBLE_YEARS = range(2000, 2100)
"""Timestamps outside these years are kept but noted (year 1, 9999: a placeholder, a bug)."""


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
    if _provider_shape(value):  # what both providers send: read in C, a third of the time
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass  # read below, which says what is wrong with it
        else:
            if parsed.year in PLAUSIBLE_YEARS:
                return parsed
    return read_timestamp(value, field, warnings)


def _provider_shape(value: str) -> bool:
    """Whether ``value`` is laid out as ``2019-01-23T18:10:02.574Z`` (the digits unchecked)."""
    return (len(value) == 24 and value[23] == "Z" and value[10] == "T" and value[19] == "."
            and value[4] == value[7] == "-" and value[13] == value[16] == ":")


def read_timestamp(value: str, field: str, warnings: list[str]) -> datetime | None:
    """:func:`parse_timestamp` of a string, by the regular expression (every form it takes)."""
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
    if parsed.year not in PLAUSIBLE_YEARS:
        warnings.append(f"{field}: implausible date {shorten(value)} kept as given")
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
    """Reads the fields of one JSON object (see the module docstring).

    A value of the wrong type raises ``BadResponse`` naming ``where.key``; with
    ``strict=False`` (paging metadata, which only guides paging) it is read as ``None`` and
    noted in the warnings instead.
    """

    def __init__(self, obj: Mapping[str, Any], where: str, warnings: list[str], *,
                 provider: str = "", strict: bool = True) -> None:
        self._obj = obj
        self._where = where
        self._warnings = warnings
        self._provider = provider
        self._strict = strict

    def _warn(self, key: str, problem: str) -> None:
        self._warnings.append(f"{self._where}.{key}: {problem}")

    def _wrong(self, key: str, expected: str, value: JSON) -> None:
        """A value that is not what the spec says: refused, or (not strict) noted."""
        if self._strict:
            raise BadResponse(f"{self._where}.{key}: expected {expected}, got {shorten(value)}",
                              provider=self._provider or None, excerpt=excerpt(self._obj))
        self._warn(key, f"expected {expected}, got {shorten(value)}")

    def text(self, key: str) -> str | None:
        """A string field; ``None`` when absent or null."""
        value = self._obj.get(key)
        if value is None or isinstance(value, str):
            return value
        self._wrong(key, "a string", value)
        return None

    def enum(self, key: str, known: frozenset[str]) -> str | None:
        """A string field with documented values; an unknown value is kept and noted."""
        value = self.text(key)
        if value is not None and value not in known:
            self._warn(key, f"unknown value {shorten(value)} kept as seen")
        return value

    def flag(self, key: str) -> bool | None:
        """A boolean field; ``None`` when absent or null."""
        value = self._obj.get(key)
        if value is None or isinstance(value, bool):
            return value
        self._wrong(key, "a boolean", value)
        return None

    def count(self, key: str) -> int | None:
        """A non-negative integer field (booleans and negatives are not counts)."""
        value = self._obj.get(key)
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        self._wrong(key, "a non-negative integer", value)
        return None

    def time(self, key: str) -> datetime | None:
        """A timestamp field read to aware UTC (see ``parse_timestamp``); ``None`` when absent
        or null, ``BadResponse`` when it is not a readable timestamp."""
        value = self._obj.get(key)
        notes: list[str] = []
        parsed = parse_timestamp(value, f"{self._where}.{key}", notes)
        if value is not None and parsed is None:
            self._wrong(key, "an ISO 8601 timestamp", value)
            return None
        self._warnings.extend(notes)
        return parsed

    def texts(self, key: str) -> tuple[str, ...] | None:
        """A list of strings; ``None`` when absent or null."""
        value = self._obj.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self._wrong(key, "a list of strings", value)
            return None
        return tuple(value)

    def child(self, key: str) -> FieldReader | None:
        """A reader over a nested object; ``None`` when absent or null."""
        value = self._obj.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            self._wrong(key, "an object", value)
            return None
        return FieldReader(value, f"{self._where}.{key}", self._warnings,
                           provider=self._provider, strict=self._strict)
