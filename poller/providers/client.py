"""What every provider client offers the scheduler, and how to build one.

``ProviderClient`` is the protocol; ``build_client`` makes one from plain parameters.
Configuration loading comes later and will call it once per ``[[accounts]]`` entry; tests and
the simulator call it directly, passing a transport.

A client belongs to one configured account. ``fetch(target)`` makes one observation of one
conference, or raises one of the documented ``ProviderError`` subclasses (or
``InvalidConferenceId`` for an ID that cannot be put in a URL); nothing else escapes it
but ``ValueError`` for a target of another account or provider (a caller bug).

The protocol is called ``ProviderClient`` rather than ``Provider`` because
``poller.model.Provider`` already names the enum of provider kinds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import httpx

from poller.config.credentials import (
    ApiKeyCredentials,
    BasicCredentials,
    Credentials,
    OAuth2Credentials,
)
from poller.errors import ConfigError
from poller.model import Observation, Provider, TargetKey, utc_now
from poller.providers import bandwidth, telnyx
from poller.providers.http import Clock, HttpSettings

if TYPE_CHECKING:
    from poller.metrics import PollObserver


@runtime_checkable
class ProviderClient(Protocol):
    """One account's client for one provider."""

    @property
    def provider(self) -> Provider:
        """Which provider this client talks to."""
        ...

    @property
    def account(self) -> str:
        """The configured account name (``TargetKey.account``) this client serves."""
        ...

    async def fetch(self, target: TargetKey) -> Observation:
        """Observe one conference now: its state, its members and any parsing warnings."""
        ...

    async def aclose(self) -> None:
        """Release the client's connections."""
        ...


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
    observer: PollObserver | None = None,
) -> ProviderClient:
    """A client for one account; ``ConfigError`` when the parameters do not fit the provider.

    ``base_url`` defaults to the provider's public API; ``account_id`` is Bandwidth's numeric
    account (required there, refused for Telnyx); ``max_pages`` caps Telnyx participant paging;
    ``observer`` is told the status of every HTTP response (``poller.metrics``).
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
