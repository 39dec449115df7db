"""The Bandwidth client: ``GET /accounts/{accountId}/conferences/{conferenceId}``.

One request per ``fetch``: the conference object carries its members in ``activeMembers`` (at
most 20, only those present now), so there is no paging. Authorisation is HTTP Basic (legacy
API user) or OAuth2 client credentials (see ``poller.providers.auth``); with OAuth2 a 401 from the
API renews the token once and retries the request once.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import httpx

from poller.errors import AuthFailed, ConfigError, InvalidConferenceId
from poller.model import JSON, Observation, Provider, TargetKey, utc_now
from poller.providers.auth import (
    Authorizer,
    BasicCredentials,
    OAuth2ClientCredentials,
    OAuth2Credentials,
    StaticAuthorization,
)
from poller.providers.bandwidth_parser import parse_bandwidth_conference
from poller.providers.http import (
    AccountClient,
    Clock,
    HttpSettings,
    ProviderHttp,
    Redactor,
    check_target,
    context_of,
    parsed,
    path_segment,
)
from poller.providers.status import ErrorContext

if TYPE_CHECKING:
    from poller.metrics import PollObserver

DEFAULT_BASE_URL = "https://voice.bandwidth.com/api/v2"


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
        observer: PollObserver | None = None,
    ) -> None:
        try:
            self._account_segment = path_segment(account_id, "Bandwidth account ID")
        except InvalidConferenceId as exc:
            raise ConfigError(str(exc), key="account_id") from exc
        self.account = account
        self._clock = clock
        self._redactor = Redactor()
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

    async def fetch(self, target: TargetKey) -> Observation:
        """Observe one Bandwidth conference and its active members."""
        check_target(target, self.provider, self.account)
        path = f"/accounts/{self._account_segment}/conferences/{path_segment(target.conference_id)}"
        context = context_of(target)
        document = await self._get(path, context)
        warnings: list[str] = []
        conference, members = parsed(
            partial(parse_bandwidth_conference, document, warnings=warnings),
            context, self._redactor)
        if conference.conference_id != target.conference_id:
            warnings.append("conference.id differs from the ID polled")
        return Observation(
            target=target,
            observed_at=self._clock(),
            conference=conference,
            members=members,
            members_complete=True,
            warnings=tuple(warnings),
        )

    async def _get(self, path: str, context: ErrorContext) -> JSON:
        header = await self._auth.header(context)
        try:
            return await self._http.get_json(path, context=context,
                                             headers={"Authorization": header})
        except AuthFailed as exc:
            if exc.http_status != 401:
                raise
            renewed = await self._auth.renew(header, context)
            if renewed is None:
                raise
        # One retry with the renewed token; a second 401 is final.
        return await self._http.get_json(path, context=context,
                                         headers={"Authorization": renewed})
