"""What every provider client is and shares.

``ProviderClient`` is the protocol the poller programs against: a client belongs to one
configured account, and ``fetch(target, pace)`` makes one observation of one conference, or
raises one of the documented ``ProviderError`` subclasses (or ``InvalidConferenceId`` for an
ID that cannot be put in a URL); nothing else escapes it but ``ValueError`` for a target of
another account or provider (a caller bug). It is called ``ProviderClient`` rather than
``Provider`` because ``poller.model.Provider`` already names the enum of provider kinds.

``AccountClient`` is the base of both clients: one account, its ``ProviderHttp`` and their
lifetime (``async with client:`` closes the connection pool).
"""

from __future__ import annotations

from typing import Protocol, Self, runtime_checkable

from poller.model import Observation, Provider, TargetKey
from poller.providers.http import Pace, ProviderHttp
from poller.providers.status import ErrorContext


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

    async def fetch(self, target: TargetKey, pace: Pace | None = None) -> Observation:
        """Observe one conference now: its state, its members and any parsing warnings.

        ``pace`` is awaited before each request (``poller.polling.pacing``; ``None``: unpaced).
        """
        ...

    async def aclose(self) -> None:
        """Release the client's connections."""
        ...


def check_target(target: TargetKey, provider: Provider, account: str) -> None:
    """Refuse (``ValueError``) a target meant for another provider or account: a caller bug."""
    if target.provider != provider or target.account != account:
        raise ValueError(
            f"target {target} does not belong to this client ({provider.value}:{account})"
        )


def context_of(target: TargetKey) -> ErrorContext:
    """The error context for polling ``target``."""
    return ErrorContext(target.provider.value, target.account, target.conference_id)


class AccountClient:
    """What the provider clients share: one account, its ``ProviderHttp`` and their lifetime
    (``async with client:`` closes the connection pool)."""

    account: str
    _http: ProviderHttp

    def __repr__(self) -> str:
        return f"{type(self).__name__}(account={self.account!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()
