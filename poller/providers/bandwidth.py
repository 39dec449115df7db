"""The Bandwidth client: ``GET /accounts/{accountId}/conferences/{conferenceId}``.

One request per ``fetch``: the conference object carries its members in ``activeMembers`` (at
most 20, only those present now), so there is no paging. Authorisation is HTTP Basic (legacy
API user) or OAuth2 client credentials (see ``poller.providers.auth``); with OAuth2 a 401 from the
API renews the token once and retries the request once.

``list_conferences`` walks ``GET /accounts/{accountId}/conferences`` (oldest first; ``name``,
``minCreatedTime`` optional) by following ``Link: <…>; rel="next"``. A next link is followed only
when it points at the account's own conference list under ``base_url`` (credentials are never
sent elsewhere); otherwise the walk stops, ``complete=False``. List items carry no
``activeMembers``: they say whether a conference has completed, not who is in it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from urllib.parse import urlsplit

import httpx

from poller.config.accounts import BANDWIDTH_BASE_URL
from poller.config.credentials import BasicCredentials, OAuth2Credentials
from poller.errors import ConfigError, InvalidConferenceId
from poller.model import (
    JSON,
    ConferenceState,
    Observation,
    Provider,
    TargetKey,
    body_digest,
    path_segment,
    utc_now,
)
from poller.providers.auth import Authorizer, OAuth2ClientCredentials, StaticAuthorization
from poller.providers.bandwidth_parser import parse_bandwidth_conference
from poller.providers.base import AccountClient, check_target, context_of
from poller.providers.deferred import DeferredObservation, Parsed, Seen, SeenBodies
from poller.providers.http import (
    Clock,
    HttpSettings,
    Pace,
    ProviderHttp,
    ResponseObserver,
)
from poller.providers.listing import (
    DEFAULT_MAX_LIST_PAGES,
    ConferenceListing,
    ListedConference,
    next_link,
    parse_items,
)
from poller.providers.redaction import Redactor, parsed
from poller.providers.status import ErrorContext
from poller.providers.wire import RawResponse

DEFAULT_BASE_URL = BANDWIDTH_BASE_URL


def read_bandwidth_error(body: JSON) -> tuple[str | None, str | None]:
    """``(type, description)`` from a Bandwidth ``voiceApiError`` body."""
    if not isinstance(body, dict):
        return None, None
    code, detail = body.get("type"), body.get("description")
    return (code if isinstance(code, str) else None,
            detail if isinstance(detail, str) else None)


class BandwidthClient(AccountClient):
    """One Bandwidth account's conference client (see the module docstring)."""

    provider = Provider.BANDWIDTH

    def __init__(
        self,
        *,
        account: str,
        account_id: str,
        credentials: BasicCredentials | OAuth2Credentials,
        base_url: str = DEFAULT_BASE_URL,
        settings: HttpSettings | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = utc_now,
        observer: ResponseObserver | None = None,
    ) -> None:
        try:
            self._account_segment = path_segment(account_id, "Bandwidth account ID")
        except InvalidConferenceId as exc:
            raise ConfigError(str(exc), key="account_id") from exc
        self.account = account
        self._clock = clock
        self._redactor = Redactor()
        self._seen = SeenBodies()
        self._http = ProviderHttp(
            provider=self.provider.value,
            account=account,
            base_url=base_url,
            settings=settings or HttpSettings(),
            clock=clock,
            read_error_detail=read_bandwidth_error,
            redactor=self._redactor,
            transport=transport,
            observer=observer,
        )
        self._auth: Authorizer
        if isinstance(credentials, BasicCredentials):
            basic = self._redactor.add_basic(credentials.username, credentials.password)
            self._auth = StaticAuthorization(basic)
        else:
            self._auth = OAuth2ClientCredentials(
                http=self._http,
                client_id=credentials.client_id,
                client_secret=credentials.client_secret,
                token_url=credentials.token_url,
                clock=clock,
                refresh_margin_seconds=credentials.refresh_margin_seconds,
            )

    async def fetch(self, target: TargetKey, pace: Pace | None = None) -> Observation:
        """Observe one Bandwidth conference and its active members (``pace`` awaited before
        each request). The bodies of the target's last observation again are not parsed
        until read (``poller.providers.deferred``)."""
        check_target(target, self.provider, self.account)
        path = f"/accounts/{self._account_segment}/conferences/{path_segment(target.conference_id)}"
        response = await self._send(path, context_of(target), None, pace)
        digest = body_digest((response.body,))
        seen = self._seen.again(target, digest)
        if seen is not None:
            return DeferredObservation(target, self._clock(), digest, seen.status,
                                       partial(self._parse, target, response))
        conference, members, complete, warnings = self._parse(target, response)
        observation = Observation(
            target=target,
            observed_at=self._clock(),
            conference=conference,
            members=members,
            members_complete=complete,
            warnings=warnings,
            body_digest=digest,
        )
        self._seen.remember(target, Seen(digest, observation.status))
        return observation

    def _parse(self, target: TargetKey, response: RawResponse) -> Parsed:
        """What ``response`` (to polling ``target``) says, or ``BadResponse``."""
        context = context_of(target)
        document = self._http.decode_json(response, context)
        warnings: list[str] = []
        conference, members = parsed(
            partial(parse_bandwidth_conference, document, warnings=warnings),
            context, self._redactor)
        if conference.conference_id != target.conference_id:
            raise self._http.bad_response(
                f"response is about conference {conference.conference_id[:40]!r}, not the one "
                "polled", context, repr(document)[:2000], 200)
        return conference, members, True, tuple(warnings)

    async def list_conferences(self, *, name: str | None = None,
                               min_created_time: datetime | None = None,
                               pace: Pace | None = None,
                               max_pages: int = DEFAULT_MAX_LIST_PAGES) -> ConferenceListing:
        """Every page of the account's conference list (see the module docstring).

        ``min_created_time`` (aware) becomes ``minCreatedTime``; ``pace`` is awaited before
        each request. Unreadable items are left out with a warning.
        """
        context = ErrorContext(self.provider.value, self.account)
        path = f"/accounts/{self._account_segment}/conferences"
        params: dict[str, str] = {}
        if name is not None:
            params["name"] = name
        if min_created_time is not None:
            params["minCreatedTime"] = (min_created_time.astimezone(UTC)
                                        .isoformat(timespec="milliseconds")
                                        .replace("+00:00", "Z"))
        own = self._http.url(path)
        warnings: list[str] = []
        listed: dict[str, ListedConference] = {}
        observed_at: datetime | None = None
        url: str = path
        query: dict[str, str] | None = params
        requests, complete = 0, True
        while True:
            response = await self._send(url, context, query, pace)
            requests += 1
            observed_at = observed_at or self._clock()
            document = self._http.decode_json(response, context)
            if not isinstance(document, list):
                raise self._http.bad_response("conference list is not a JSON array", context,
                                              repr(document)[:2000], response.status)
            items = parse_items(self.provider, document, _parse_item, warnings, self._redactor,
                                members_known=False)
            new = {c.conference_id for c in items} - listed.keys()
            listed.update((c.conference_id, c) for c in items)
            following = next_link(response.headers.get("link"))
            if following is None:
                break
            if not _same_list(following, own):
                warnings.append("conference list: the next link leaves the account's API; "
                                "not followed, list may be incomplete")
                complete = False
                break
            if items and not new:
                warnings.append("conference list: a page repeated conferences already "
                                "received; list may be incomplete")
                complete = False
                break
            if requests >= max_pages:
                warnings.append(f"conference list: stopped at the {max_pages}-page cap; "
                                "list may be incomplete")
                complete = False
                break
            url, query = following, None
        assert observed_at is not None
        return ConferenceListing(provider=self.provider, account=self.account,
                                 observed_at=observed_at, conferences=tuple(listed.values()),
                                 complete=complete, requests=requests, warnings=tuple(warnings))

    async def _send(self, url: str, context: ErrorContext, params: dict[str, str] | None,
                    pace: Pace | None) -> RawResponse:
        """GET ``url``; a 2xx response, else the translated error (OAuth2: renew once on 401)."""
        header = await self._auth.header(context, pace)
        response = await self._http.request("GET", url, context=context, params=params,
                                            headers={"Authorization": header}, pace=pace)
        if response.status == 401:
            error = self._http.status_error(response, context)
            renewed = await self._auth.renew(header, context, pace)
            if renewed is None:
                raise error
            # One retry with the renewed token; a second 401 is final.
            response = await self._http.request("GET", url, context=context, params=params,
                                                headers={"Authorization": renewed}, pace=pace)
        if 200 <= response.status <= 299:
            return response
        raise self._http.status_error(response, context)


NO_MEMBERS_NOTE = "conference.activeMembers: not reported; assumed empty"


def _parse_item(item: JSON, warnings: list[str]) -> ConferenceState:
    """One list item: a ``conference`` without ``activeMembers`` (expected: not noted)."""
    notes: list[str] = []
    state, _ = parse_bandwidth_conference(item, warnings=notes)
    warnings.extend(note for note in notes if note != NO_MEMBERS_NOTE)
    return state


def _same_list(url: str, own: str) -> bool:
    """Whether ``url`` is the account's conference list at ``own`` (scheme, host, path)."""
    a, b = urlsplit(url), urlsplit(own)
    return (a.scheme, a.netloc, a.path.rstrip("/")) == (b.scheme, b.netloc, b.path.rstrip("/"))
