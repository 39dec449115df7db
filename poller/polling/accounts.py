"""The configured accounts at run time: per account its client, its pacing gate, its list planner.

``poller.app`` builds one :class:`Accounts` from a ``Config`` and its credentials; the poller,
discovery and the daemon only ever look accounts up in it. A reload builds a new ``Accounts``
and swaps it in whole: an account whose settings (apart from its conference list), the
``[polling]`` settings and credentials did not change is carried over with the same client
(and its connections), gate (token bucket and pause) and list planner (cached listings), so a
reload never resets a rate limit or a pause. Building one that fails leaves the running
``Accounts`` as it was.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from poller.config import Account, Credentials, PollingSettings
from poller.model import Provider
from poller.polling.lists import ListPlanner
from poller.polling.pacing import AccountGate
from poller.providers import ProviderClient
from poller.providers.listing import ConferenceListing


@dataclass(slots=True, eq=False)
class PolledAccount:
    """One configured account at run time."""

    settings: Account
    """Its ``[[accounts]]`` table."""
    client: ProviderClient
    gate: AccountGate
    """Its token bucket (``requests_per_second``) and pause (429, 401 / 403)."""
    planner: ListPlanner | None = None
    """Its list planner when ``list_polling`` is on (``poller.polling.lists``)."""
    polling: PollingSettings | None = None
    """The ``[polling]`` settings the client was built with (``None``: not from a config)."""
    credentials: Credentials | None = field(default=None, repr=False)
    """The credentials the client was built with."""

    @property
    def name(self) -> str:
        """The account's configured name (``TargetKey.account``)."""
        return self.settings.name

    @property
    def provider(self) -> Provider:
        """Which provider the account is at."""
        return self.settings.kind


class Accounts:
    """Every configured account at run time, by name (see the module docstring)."""

    def __init__(self, accounts: Iterable[PolledAccount] = ()) -> None:
        self._by_name = {account.name: account for account in accounts}

    def __getitem__(self, name: str) -> PolledAccount:
        return self._by_name[name]

    def __iter__(self) -> Iterator[PolledAccount]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def get(self, name: str) -> PolledAccount | None:
        """The account called ``name``, or ``None``."""
        return self._by_name.get(name)

    def paused(self, now: datetime) -> set[str]:
        """The accounts that may not be polled at ``now`` (429 or auth pause)."""
        return {account.name for account in self if account.gate.is_paused(now)}

    def offer_listing(self, listing: ConferenceListing) -> None:
        """Let the account's list planner reuse a listing taken elsewhere (discovery)."""
        account = self.get(listing.account)
        if account is not None and account.planner is not None:
            account.planner.offer(listing)

    def kept_from(self, previous: Accounts) -> set[str]:
        """Names of the accounts carried over from ``previous`` (the same clients)."""
        return {account.name for account in self
                if any(account.client is client for client in previous.clients())}

    def clients(self) -> list[ProviderClient]:
        """Every account's client."""
        return [account.client for account in self]

    async def aclose(self, *, keep: Accounts | None = None) -> None:
        """Close every account's client, except those ``keep`` holds too (a reload's
        successor carried them over)."""
        kept = keep.clients() if keep is not None else []
        for account in self:
            if not any(account.client is client for client in kept):
                await account.client.aclose()
