"""Listing an account's conferences: what one walk through a provider's list endpoint found.

The clients walk every page (``TelnyxClient.list_conferences``: ``GET /conferences`` by
``page[number]`` up to ``meta.total_pages``; ``BandwidthClient.list_conferences``:
``GET /accounts/{id}/conferences`` following ``Link: <…>; rel="next"``) and return one
:class:`ConferenceListing`. This module holds what they share:

* the value objects (:class:`ListedConference`, :class:`ConferenceListing`);
* :func:`parse_items`, which parses each list item with the provider's tolerant conference
  parser: an item that cannot be read at all (not an object, no ``id``) is left out with a
  warning that quotes a short redacted excerpt, never failing the listing; a page that is not a
  list at all is a ``BadResponse`` like any malformed body;
* :func:`next_link`, which reads RFC 8288 ``Link`` headers.

A listing is ``complete`` when every page was read; a walk stopped by the page cap, a repeated
page or a ``next`` link pointing away from the account's API is ``complete=False`` with a
warning, and callers treat what is missing as unknown, never as gone.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from poller.errors import BadResponse
from poller.model import JSON, ConferenceState, Provider

log = logging.getLogger(__name__)

DEFAULT_MAX_LIST_PAGES = 40
"""At most this many page requests per listing (10,000 Telnyx conferences at 250 a page)."""

_LINK_PART = re.compile(r'^\s*<(?P<url>[^>]*)>\s*;(?P<params>.*)$')
_REL = re.compile(r'(?:^|;)\s*rel\s*=\s*"?(?P<rel>[^";]+)"?', re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ListedConference:
    """One conference as a list response showed it."""

    conference: ConferenceState
    """Parsed with the provider's tolerant parser. Bandwidth list items carry no members, so
    ``status`` there is only ``completed`` or not: see ``members_known``."""
    region: str | None = None
    """Telnyx: the data region listed (``None`` for the default, ``US``)."""
    members_known: bool = True
    """False for Bandwidth items (no ``activeMembers``): ``init`` / ``in_progress`` unknown."""

    @property
    def conference_id(self) -> str:
        """The conference's ID."""
        return self.conference.conference_id

    @property
    def is_completed(self) -> bool:
        """Whether the item says the conference has ended."""
        return self.conference.is_completed


@dataclass(frozen=True, slots=True)
class ConferenceListing:
    """Everything one listing of one account (and, for Telnyx, one region) returned."""

    provider: Provider
    account: str
    observed_at: datetime
    """The poller's clock when the first page arrived (the list is as of then or later)."""
    conferences: tuple[ListedConference, ...]
    complete: bool
    """Every page was read; when False, a conference missing here may still exist."""
    requests: int
    """Page requests made."""
    warnings: tuple[str, ...] = ()
    region: str | None = None
    """Telnyx: the region listed (``None``: ``US``)."""

    def by_id(self) -> dict[str, ListedConference]:
        """The listed conferences by ID (the later listing of a duplicate wins)."""
        return {c.conference_id: c for c in self.conferences}


def parse_items(provider: Provider, items: Iterable[Any],
                parse: Callable[[JSON, list[str]], ConferenceState],
                warnings: list[str], redact: Callable[[str], str], *,
                region: str | None = None, members_known: bool = True
                ) -> list[ListedConference]:
    """Each item parsed by ``parse(item, notes)``; unreadable ones are left out, each with a
    warning (also logged) quoting a redacted excerpt."""
    listed: list[ListedConference] = []
    for position, item in enumerate(items):
        try:
            state = parse(item, warnings)
        except BadResponse as error:
            excerpt = redact(repr(item))[:200]
            message = f"list item {position} skipped: {error.message} ({excerpt})"
            log.warning("%s conference list: %s", provider.value, message)
            warnings.append(message)
            continue
        listed.append(ListedConference(state, region=region, members_known=members_known))
    return listed


def next_link(header: str | None) -> str | None:
    """The target of the ``rel="next"`` link in a ``Link`` header value, if any."""
    if not header:
        return None
    for part in _split_links(header):
        match = _LINK_PART.match(part)
        if match is None:
            continue
        rel = _REL.search(match["params"])
        if rel is not None and "next" in rel["rel"].lower().split():
            return match["url"].strip() or None
    return None


def _split_links(header: str) -> list[str]:
    """Split on commas outside ``<…>`` and quotes (URLs may hold commas)."""
    parts: list[str] = []
    current: list[str] = []
    in_url = in_quotes = False
    for char in header:
        if char == "<" and not in_quotes:
            in_url = True
        elif char == ">" and not in_quotes:
            in_url = False
        elif char == '"' and not in_url:
            in_quotes = not in_quotes
        if char == "," and not in_url and not in_quotes:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts
