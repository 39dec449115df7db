"""The Telnyx client: ``GET /conferences/{id}`` plus the paged participants list.

One ``fetch`` makes one ``Observation``:

1. ``GET {base}/conferences/{id}`` (``?region=…`` when the target names one);
2. ``GET {base}/conferences/{id}/participants?page[size]=250&page[number]=N`` for N = 1, 2, …
   until ``meta.total_pages``. When ``total_pages`` is missing, pages are fetched while they come
   back full (``page_size`` items) and the first short page ends the list.

Paging is bounded: at most ``max_pages`` requests (40 by default, 10,000 participants at 250 a
page); hitting the cap with pages left gives ``members_complete=False`` and a warning. A server
that answers a page number already received, or a page adding no member not seen before, is
not followed further: poller stops there with ``members_complete=False`` and a warning rather
than fail the whole poll, since the conference itself was read fine. The same participant listed
on two pages is kept once (the later listing wins).

``list_conferences`` walks ``GET {base}/conferences`` (one data region, ``filter[name]`` and
``filter[status]`` optional) page by page the same way (see ``poller.providers.listing``).
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any

import httpx

from poller.config.accounts import TELNYX_BASE_URL
from poller.model import (
    JSON,
    ConferenceState,
    MemberState,
    Observation,
    ParticipantRecord,
    Provider,
    TargetKey,
    body_digest,
    path_segment,
    utc_now,
)
from poller.providers.auth import StaticAuthorization
from poller.providers.base import AccountClient, check_target, context_of
from poller.providers.deferred import DeferredObservation, Parsed, Seen, SeenBodies
from poller.providers.detail_records import parse_participant_records
from poller.providers.http import Clock, HttpSettings, Pace, ProviderHttp, ResponseObserver
from poller.providers.listing import (
    DEFAULT_MAX_LIST_PAGES,
    ConferenceListing,
    ListedConference,
    parse_items,
)
from poller.providers.redaction import Redactor, parsed
from poller.providers.status import ErrorContext
from poller.providers.telnyx_parser import (
    ParticipantPage,
    parse_telnyx_conference,
    parse_telnyx_participants,
)
from poller.providers.wire import RawResponse

DEFAULT_BASE_URL = TELNYX_BASE_URL
PAGE_SIZE = 250
"""The largest ``page[size]`` Telnyx accepts."""
DEFAULT_MAX_PAGES = 40


def read_telnyx_error(body: JSON) -> tuple[str | None, str | None]:
    """``(errors[0].code, errors[0].detail or title)`` from a Telnyx error body."""
    errors = body.get("errors") if isinstance(body, dict) else None
    first: Any = errors[0] if isinstance(errors, list) and errors else None
    if not isinstance(first, dict):
        return None, None
    code = first.get("code")
    detail = first.get("detail") or first.get("title")
    return (str(code) if isinstance(code, str | int) and not isinstance(code, bool) else None,
            detail if isinstance(detail, str) else None)


class TelnyxClient(AccountClient):
    """One Telnyx account's conference client (see the module docstring)."""

    provider = Provider.TELNYX

    def __init__(
        self,
        *,
        account: str,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        settings: HttpSettings | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = utc_now,
        observer: ResponseObserver | None = None,
        max_pages: int = DEFAULT_MAX_PAGES,
        page_size: int = PAGE_SIZE,
    ) -> None:
        if max_pages < 1 or not 1 <= page_size <= PAGE_SIZE:
            raise ValueError(f"need max_pages ≥ 1 and 1 ≤ page_size ≤ {PAGE_SIZE}")
        self.account = account
        self._clock = clock
        self._max_pages = max_pages
        self._page_size = page_size
        self._redactor = Redactor((api_key,))
        self._seen = SeenBodies()
        self._auth = StaticAuthorization(f"Bearer {api_key}")
        self._http = ProviderHttp(
            provider=self.provider.value,
            account=account,
            base_url=base_url,
            settings=settings or HttpSettings(),
            clock=clock,
            read_error_detail=read_telnyx_error,
            redactor=self._redactor,
            transport=transport,
            observer=observer,
        )

    async def fetch(self, target: TargetKey, pace: Pace | None = None) -> Observation:
        """Observe one Telnyx conference: the conference, then every page of participants
        (``pace`` awaited before each request). The bodies of the target's last observation
        again are not parsed until read (``poller.providers.deferred``): when it had one page
        of participants and the conference's body is as it was, the page is asked for before
        either is parsed."""
        check_target(target, self.provider, self.account)
        segment = path_segment(target.conference_id)
        context = context_of(target)
        region = {"region": target.region} if target.region else {}
        seen = self._seen.get(target)
        head = await self._get_ok(f"/conferences/{segment}", context, region, pace)
        conference: ConferenceState | None = None
        warnings: list[str] = []
        head_digest = body_digest((head.body,))
        if seen is None or seen.head != head_digest:
            conference = self._conference(target, head, warnings)  # fails before the pages
        first = await self._page_of(segment, context, region, 1, pace)
        digest = body_digest((head.body, first.body))
        again = self._seen.again(target, digest)
        if again is not None:
            return DeferredObservation(target, self._clock(), digest, again.status,
                                       partial(self._reparse, target, head, first))
        if conference is None:
            conference = self._conference(target, head, warnings)
        bodies = [head.body]
        members, complete = await self._participants(segment, context, region, warnings, pace,
                                                     first, bodies)
        observation = Observation(
            target=target,
            observed_at=self._clock(),
            conference=conference,
            members=members,
            members_complete=complete,
            warnings=tuple(warnings),
            body_digest=digest if len(bodies) == 2 else body_digest(bodies),
        )
        if len(bodies) == 2:
            self._seen.remember(target, Seen(digest, observation.status, head_digest))
        return observation

    def _conference(self, target: TargetKey, response: RawResponse, warnings: list[str]
                    ) -> ConferenceState:
        """The conference ``response`` (to polling ``target``) says, or ``BadResponse``."""
        context = context_of(target)
        document = self._http.decode_json(response, context)
        conference = parsed(partial(parse_telnyx_conference, document, warnings=warnings),
                            context, self._redactor)
        if conference.conference_id != target.conference_id:
            raise self._http.bad_response(
                f"response is about conference {conference.conference_id[:40]!r}, not the one "
                "polled", context, repr(document)[:2000], 200)
        return conference

    def _page(self, response: RawResponse, context: ErrorContext, warnings: list[str]
              ) -> ParticipantPage:
        """The participants page ``response`` holds, or ``BadResponse``."""
        document = self._http.decode_json(response, context)
        return parsed(partial(parse_telnyx_participants, document, warnings=warnings,
                              conference_id=context.conference_id),
                      context, self._redactor)

    def _reparse(self, target: TargetKey, head: RawResponse, first: RawResponse) -> Parsed:
        """What ``fetch`` parsed from the same two bodies before (a conference and its one
        page of participants): the same again."""
        warnings: list[str] = []
        conference = self._conference(target, head, warnings)
        pages = _Pages(self._max_pages, self._page_size, warnings)
        more = pages.take(self._page(first, context_of(target), warnings))
        assert not more, "one page of participants last time, one page now"
        return conference, pages.members(), pages.complete, tuple(warnings)

    async def participants(self, target: TargetKey, pace: Pace | None = None
                           ) -> tuple[tuple[MemberState, ...], bool, tuple[str, ...]]:
        """Every page of one conference's participants: ``(members, complete, warnings)``.

        The list-polling path (``poller.polling.lists``) pairs them with the conference state a
        listing already gave, instead of a ``GET /conferences/{id}``.
        """
        check_target(target, self.provider, self.account)
        warnings: list[str] = []
        region = {"region": target.region} if target.region else {}
        members, complete = await self._participants(
            path_segment(target.conference_id), context_of(target), region, warnings, pace)
        return members, complete, tuple(warnings)

    async def participant_records(self, conference_id: str, *, pace: Pace | None = None
                                  ) -> tuple[tuple[ParticipantRecord, ...], tuple[str, ...]]:
        """The conference's participant detail records (``GET /detail_records``, every page
        up to the cap; empty until Telnyx has them), and the parser's warnings."""
        context = ErrorContext(self.provider.value, self.account, conference_id)
        records: dict[str, ParticipantRecord] = {}
        warnings: list[str] = []
        for number in range(1, self._max_pages + 1):
            params = {"filter[record_type]": "conference-participant",
                      "filter[conference_id]": conference_id,
                      "page[size]": str(self._page_size), "page[number]": str(number)}
            document = await self._get("/detail_records", context, params, pace)
            page, total_pages = parsed(partial(parse_participant_records, document,
                                               conference_id=conference_id, warnings=warnings),
                                       context, self._redactor)
            records.update((record.member_id, record) for record in page)
            if not page or (total_pages is not None and number >= total_pages):
                break
        else:
            warnings.append(f"detail records: stopped at the {self._max_pages}-page cap")
        return tuple(records.values()), tuple(warnings)

    async def list_conferences(self, *, region: str | None = None, name: str | None = None,
                               status: str | None = None, pace: Pace | None = None,
                               max_pages: int = DEFAULT_MAX_LIST_PAGES) -> ConferenceListing:
        """Every page of ``GET /conferences`` for one data region (``None``: ``US``).

        ``name`` and ``status`` become ``filter[name]`` / ``filter[status]``; ``pace`` is
        awaited before each page request. Unreadable items are left out with a warning.
        """
        context = ErrorContext(self.provider.value, self.account)
        query = {"region": region} if region else {}
        if name is not None:
            query["filter[name]"] = name
        if status is not None:
            query["filter[status]"] = status
        warnings: list[str] = []
        listed: dict[str, ListedConference] = {}
        pages_seen: set[int] = set()
        observed_at: datetime | None = None
        number = 1
        while True:
            params = {**query, "page[size]": str(self._page_size), "page[number]": str(number)}
            document = await self._get("/conferences", context, params, pace)
            observed_at = observed_at or self._clock()
            envelope = document if isinstance(document, dict) else None
            data = envelope.get("data") if envelope is not None else None
            if not isinstance(data, list):
                raise self._http.bad_response("conference list: data is not a list", context,
                                              repr(document)[:2000], 200)
            meta = envelope.get("meta") if envelope is not None else None
            page = _page_meta(meta, warnings, number)
            answered = page[0] if page[0] is not None else number
            items = parse_items(self.provider, data, _parse_item, warnings, self._redactor,
                                region=None if region in (None, "US") else region)
            new_ids = {c.conference_id for c in items} - listed.keys()
            if answered in pages_seen or (items and not new_ids and number > 1):
                warnings.append(f"conference list: page {number} repeats a page already "
                                f"received (answered as page {answered}); list may be incomplete")
                return self._listing(observed_at, listed, False, number, warnings, region)
            pages_seen.add(answered)
            listed.update((c.conference_id, c) for c in items)
            total_pages, page_size = page[1], page[2]
            more = (number < total_pages if total_pages is not None
                    else len(data) >= (page_size or self._page_size))
            if not more:
                return self._listing(observed_at, listed, True, number, warnings, region)
            if number >= max_pages:
                warnings.append(f"conference list: stopped at the {max_pages}-page cap; "
                                "list may be incomplete")
                return self._listing(observed_at, listed, False, number, warnings, region)
            number += 1

    def _listing(self, observed_at: datetime | None, listed: dict[str, ListedConference],
                 complete: bool, requests: int, warnings: list[str], region: str | None
                 ) -> ConferenceListing:
        assert observed_at is not None
        return ConferenceListing(
            provider=self.provider, account=self.account,
            observed_at=observed_at,
            conferences=tuple(listed.values()), complete=complete, requests=requests,
            warnings=tuple(warnings), region=None if region in (None, "US") else region)

    async def _participants(self, segment: str, context: ErrorContext,
                            region: dict[str, str], warnings: list[str], pace: Pace | None,
                            first: RawResponse | None = None, bodies: list[bytes] | None = None
                            ) -> tuple[tuple[MemberState, ...], bool]:
        """Every page of participants, ``(members, complete)`` (``first``: page 1, already
        received); each page's body is appended to ``bodies``."""
        pages = _Pages(self._max_pages, self._page_size, warnings)
        response = first or await self._page_of(segment, context, region, 1, pace)
        while True:
            if bodies is not None:
                bodies.append(response.body)
            if not pages.take(self._page(response, context, warnings)):
                return pages.members(), pages.complete
            response = await self._page_of(segment, context, region, pages.number, pace)

    async def _page_of(self, segment: str, context: ErrorContext, region: dict[str, str],
                       number: int, pace: Pace | None) -> RawResponse:
        """Page ``number`` of the participants, unread."""
        params = {**region, "page[size]": str(self._page_size), "page[number]": str(number)}
        return await self._get_ok(f"/conferences/{segment}/participants", context, params,
                                  pace)

    async def _get_ok(self, path: str, context: ErrorContext, params: dict[str, str],
                      pace: Pace | None) -> RawResponse:
        return await self._http.get_ok(
            path,
            context=context,
            params=params,
            headers={"Authorization": await self._auth.header(context)},
            pace=pace,
        )

    async def _get(self, path: str, context: ErrorContext, params: dict[str, str],
                   pace: Pace | None) -> JSON:
        return self._http.decode_json(await self._get_ok(path, context, params, pace), context)


class _Pages:
    """The pages of one conference's participants as they arrive, and whether to ask for
    another (the paging rules of the module docstring)."""

    def __init__(self, max_pages: int, page_size: int, warnings: list[str]) -> None:
        self._max_pages = max_pages
        self._page_size = page_size
        self._warnings = warnings
        self._members: dict[str, MemberState] = {}
        self._seen: set[int] = set()
        self.number = 1
        """The page to ask for next (once :meth:`take` said so)."""
        self.complete = False
        """Whether every participant was received (once :meth:`take` said no more)."""

    def members(self) -> tuple[MemberState, ...]:
        """The participants received, each once (the later listing wins)."""
        return tuple(self._members.values())

    def take(self, page: ParticipantPage) -> bool:
        """Add ``page``, the answer for page :attr:`number`; whether to ask for the next."""
        number, warnings, members = self.number, self._warnings, self._members
        answered = page.page_number if page.page_number is not None else number
        if number == 1 and page.total_pages is None:
            warnings.append("participants.meta.total_pages: not reported; "
                            "paging until a short page")
        new_ids = {m.member_id for m in page.members} - members.keys()
        if answered in self._seen or (page.members and not new_ids and number > 1):
            warnings.append(f"participants: page {number} repeats a page already received "
                            f"(answered as page {answered}); member list may be incomplete")
            return False
        if answered != number:
            warnings.append(f"participants: asked for page {number}, got page {answered}")
        self._seen.add(answered)
        members.update((m.member_id, m) for m in page.members)
        if page.total_pages is not None:
            more = number < page.total_pages
        else:  # a full page may have a successor, a short one is the last
            more = len(page.members) >= (page.page_size or self._page_size)
        if not more:
            self.complete = True
            return False
        if number >= self._max_pages:
            warnings.append(f"participants: stopped at the {self._max_pages}-page cap; "
                            "member list may be incomplete")
            return False
        self.number += 1
        return True



def _parse_item(item: JSON, warnings: list[str]) -> ConferenceState:
    """One ``Conference`` of a list, read as ``GET /conferences/{id}`` would be."""
    return parse_telnyx_conference({"data": item}, warnings=warnings)


def _page_meta(meta: object, warnings: list[str], number: int
               ) -> tuple[int | None, int | None, int | None]:
    """``(page_number, total_pages, page_size)`` of a list's ``meta``, each ``None`` if odd."""
    values: list[int | None] = []
    for key in ("page_number", "total_pages", "page_size"):
        value = meta.get(key) if isinstance(meta, dict) else None
        values.append(value if isinstance(value, int) and not isinstance(value, bool)
                      and value >= 0 else None)
    if values[1] is None and number == 1:
        warnings.append("conference list: meta.total_pages not reported; paging until a "
                        "short page")
    return values[0], values[1], values[2]
