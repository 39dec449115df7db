"""The composition root: every collaborator is built here, from one ``Config``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import httpx

from poller.config import BandwidthAccount, Config, Credentials, PollingSettings, TelnyxAccount
from poller.model import utc_now
from poller.providers import Clock, ProviderClient, build_client
from poller.providers.http import HttpSettings

if TYPE_CHECKING:
    from poller.metrics import PollObserver


def build_account_client(
    account: TelnyxAccount | BandwidthAccount,
    polling: PollingSettings,
    credentials: Credentials,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Clock = utc_now,
    observer: PollObserver | None = None,
) -> ProviderClient:
    """A provider client for one configured account (``poller.providers.build_client``)."""
    return build_client(
        account.kind,
        account=account.name,
        credentials=credentials,
        base_url=account.base_url,
        account_id=account.account_id if isinstance(account, BandwidthAccount) else None,
        settings=HttpSettings.for_polling(polling),
        transport=transport,
        clock=clock,
        observer=observer,
    )


def build_clients(config: Config, credentials: Mapping[str, Credentials], *,
                  transport: httpx.AsyncBaseTransport | None = None, clock: Clock = utc_now
                  ) -> dict[str, ProviderClient]:
    """One provider client per configured account (all sharing ``transport`` if given)."""
    return {account.name: build_account_client(account, config.polling,
                                               credentials[account.name],
                                               transport=transport, clock=clock)
            for account in config.accounts}
