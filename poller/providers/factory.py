"""Building a provider client from plain parameters: ``build_client``.

``poller.app`` calls it once per ``[[accounts]]`` table; tests and benchmarks call it directly,
passing a transport. It checks that the credentials fit the provider (``ConfigError``
otherwise) and returns a :class:`~poller.providers.telnyx.TelnyxClient` or a
:class:`~poller.providers.bandwidth.BandwidthClient`.
"""

from __future__ import annotations

import httpx

from poller.config.credentials import (
    ApiKeyCredentials,
    BasicCredentials,
    Credentials,
    OAuth2Credentials,
)
from poller.errors import ConfigError
from poller.model import Provider, utc_now
from poller.providers import bandwidth, telnyx
from poller.providers.base import ProviderClient
from poller.providers.http import Clock, HttpSettings, ResponseObserver


def build_client(
    provider: Provider | str,
    *,
    account: str,
    credentials: Credentials,
    base_url: str | None = None,
    account_id: str | None = None,
    settings: HttpSettings | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Clock = utc_now,
    max_pages: int = telnyx.DEFAULT_MAX_PAGES,
    observer: ResponseObserver | None = None,
) -> ProviderClient:
    """A client for one account; ``ConfigError`` when the parameters do not fit the provider.

    ``base_url`` defaults to the provider's public API; ``account_id`` is Bandwidth's numeric
    account (required there, refused for Telnyx); ``max_pages`` caps Telnyx participant paging;
    ``observer`` is told the status of every HTTP response (``poller.daemon.metrics``).
    """
    try:
        kind = Provider(provider)
    except ValueError as exc:
        raise ConfigError(f"unknown provider {provider!r}", key="provider") from exc
    if not account:
        raise ConfigError("account name is empty", key="name")

    if kind is Provider.TELNYX:
        if not isinstance(credentials, ApiKeyCredentials) or not credentials.api_key:
            raise ConfigError(f"account {account!r}: Telnyx needs an API key", key="api_key_env")
        if account_id is not None:
            raise ConfigError(f"account {account!r}: Telnyx takes no account_id",
                              key="account_id")
        return telnyx.TelnyxClient(
            account=account,
            api_key=credentials.api_key,
            base_url=base_url or telnyx.DEFAULT_BASE_URL,
            settings=settings,
            transport=transport,
            clock=clock,
            max_pages=max_pages,
            observer=observer,
        )

    if not account_id:
        raise ConfigError(f"account {account!r}: Bandwidth needs an account_id",
                          key="account_id")
    if isinstance(credentials, BasicCredentials):
        if not credentials.username or not credentials.password:
            raise ConfigError(f"account {account!r}: Basic auth needs a username and password",
                              key="username_env")
    elif isinstance(credentials, OAuth2Credentials):
        if not credentials.client_id or not credentials.client_secret:
            raise ConfigError(f"account {account!r}: OAuth2 needs a client ID and secret",
                              key="client_id_env")
    else:
        raise ConfigError(f"account {account!r}: Bandwidth needs Basic or OAuth2 credentials",
                          key="client_id_env")
    return bandwidth.BandwidthClient(
        account=account,
        account_id=account_id,
        credentials=credentials,
        base_url=base_url or bandwidth.DEFAULT_BASE_URL,
        settings=settings,
        transport=transport,
        clock=clock,
        observer=observer,
    )
