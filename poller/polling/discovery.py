"""Discovery: list each ``discover = true`` account's conferences and poll every new one.

``Discovery().run(poller)`` walks the list endpoint of every account with ``discover = true``
(Telnyx ``GET /conferences`` once per ``discover_regions`` entry; Bandwidth
``GET /accounts/{id}/conferences``), with ``discover_name`` as the provider's name filter, and
inserts every conference not yet in ``poll_target`` as a ``discovered`` target due at once
(:func:`poller.store.watchlist.add_discovered`). ``poller run`` runs it every
``polling.discovery_interval_seconds`` as its own APScheduler job, ``poller once`` first thing.

Nothing is lost between two runs while the provider still lists a conference:

* Telnyx is listed without a status filter, so conferences that completed since the last run
  (listed until they expire) are found too;
* Bandwidth is listed with ``minCreatedTime`` = the start of the last complete run minus
  :data:`SAFETY_MARGIN_SECONDS` (clock skew, and the provider's own indexing delay). A process
  that has not run yet starts from the newest ``created_at`` of the account's discovered
  conferences minus the margin, or lists everything when there is none. A listing cut short
  (page cap) moves the cursor to its newest ``createdTime`` minus the margin: the list is
  oldest first, so the next run goes on from there.

Every page request takes a token of the account's bucket (``Pacer.pace``: outside a poll, no
slot); an account that is paused (429, auth) is skipped until its next run. A failed listing is
logged and retried at the next run; nothing is inserted from a listing that failed part-way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from poller.config import BandwidthAccount, TelnyxAccount
from poller.errors import ProviderError, RateLimited, StoreUnavailable
from poller.model import TargetKey
from poller.providers import BandwidthClient, Pace, TelnyxClient
from poller.providers.listing import ConferenceListing

if TYPE_CHECKING:
    from poller.polling.accounts import PolledAccount
    from poller.polling.poller import Poller

log = logging.getLogger(__name__)

SAFETY_MARGIN_SECONDS = 300.0
"""How far before the last run's start a Bandwidth listing begins (``minCreatedTime``)."""


@dataclass(slots=True)
class DiscoveryReport:
    """What one discovery run did."""

    listed: int = 0
    """Conferences listed, all accounts."""
    added: list[TargetKey] = field(default_factory=list)
    requests: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    """Account name → why its listing failed."""
    skipped: list[str] = field(default_factory=list)
    """Accounts not listed because they are paused."""
    incomplete: list[str] = field(default_factory=list)
    """Accounts whose listing stopped early (page cap, odd paging): see the warnings logged."""

    def summary(self) -> str:
        """One line for people."""
        parts = [f"listed {self.listed} conferences in {self.requests} requests",
                 f"{len(self.added)} new targets"]
        if self.failed:
            parts.append("failed: " + ", ".join(sorted(self.failed)))
        if self.skipped:
            parts.append("paused: " + ", ".join(sorted(self.skipped)))
        if self.incomplete:
            parts.append("incomplete: " + ", ".join(sorted(self.incomplete)))
        return ", ".join(parts)


class Discovery:
    """Runs discovery for every ``discover = true`` account; keeps the Bandwidth cursors."""

    def __init__(self, margin_seconds: float = SAFETY_MARGIN_SECONDS) -> None:
        self.margin = timedelta(seconds=margin_seconds)
        self._since: dict[str, datetime | None] = {}
        """Bandwidth account → ``minCreatedTime`` of its next listing (``None``: all)."""
        self.last_report: DiscoveryReport | None = None
        """The report of the latest run."""

    async def run(self, poller: Poller) -> DiscoveryReport:
        """List every discovering account once and add the new conferences as targets."""
        report = DiscoveryReport()
        for account in poller.accounts:
            if account.settings.discover:
                await self._account(poller, account, report)
        if report.added or report.failed:
            log.info("discovery: %s", report.summary())
        else:
            log.debug("discovery: %s", report.summary())
        self.last_report = report
        return report

    async def _account(self, poller: Poller, polled: PolledAccount, report: DiscoveryReport
                       ) -> None:
        account, gate = polled.settings, polled.gate
        started = poller.clock()
        if gate.is_paused(started):
            report.skipped.append(account.name)
            return
        pace = poller.pacer.pace(gate, account.provider)
        try:
            listings = await self._list(poller, polled, pace)
        except ProviderError as error:
            report.failed[account.name] = error.kind
            if isinstance(error, RateLimited):
                gate.pause(poller.clock(), error.retry_after_seconds or 1.0, "rate_limited")
            log.warning("%s account %r: discovery listing failed (%s): %s; retried at the next "
                        "run", account.provider, account.name, error.kind, error)
            return
        except StoreUnavailable as error:
            report.failed[account.name] = "store"
            log.error("discovery for account %r: %s", account.name, error)
            return
        targets: list[TargetKey] = []
        for listing in listings:
            report.listed += len(listing.conferences)
            report.requests += listing.requests
            if not listing.complete:
                report.incomplete.append(account.name)
            for warning in listing.warnings:
                log.warning("%s account %r conference list: %s", account.provider,
                            account.name, warning)
            targets += [TargetKey(account.kind, account.name, c.conference_id, c.region)
                        for c in listing.conferences]
            if account.discover_name is None:  # a filtered list would hide other targets
                poller.accounts.offer_listing(listing)
        at = min((listing.observed_at for listing in listings), default=started)
        try:
            added = await poller.store.add_discovered(targets, at)
        except StoreUnavailable as error:
            report.failed[account.name] = "store"
            log.error("discovery for account %r: new targets not stored (retried at the next "
                      "run): %s", account.name, error)
            return
        report.added += added
        if isinstance(account, BandwidthAccount):
            self._advance_cursor(account.name, listings, started)
        for target in added:
            log.info("discovered %s conference %s of account %r", account.provider,
                     target.conference_id, account.name)

    def _advance_cursor(self, account: str, listings: list[ConferenceListing],
                        started: datetime) -> None:
        """Where the account's next Bandwidth listing starts. A complete one covered
        everything up to ``started``; one cut short (page cap, odd paging) still covered,
        oldest first, everything up to the newest conference it got: without moving on from
        there, every run would list the same oldest pages and never reach the newer ones."""
        if all(listing.complete for listing in listings):
            self._since[account] = started - self.margin
            return
        created = [c.conference.created_at for listing in listings
                   for c in listing.conferences if c.conference.created_at is not None]
        if not created:
            return
        since, held = max(created) - self.margin, self._since.get(account)
        if held is None or since > held:
            self._since[account] = since

    async def _list(self, poller: Poller, polled: PolledAccount, pace: Pace
                    ) -> list[ConferenceListing]:
        account, client = polled.settings, polled.client
        if isinstance(account, TelnyxAccount) and isinstance(client, TelnyxClient):
            return [await client.list_conferences(region=region, name=account.discover_name,
                                                  pace=pace)
                    for region in account.discover_regions]
        if isinstance(account, BandwidthAccount) and isinstance(client, BandwidthClient):
            if account.name not in self._since:
                newest = await poller.store.newest_discovered_created_at(account.name)
                self._since[account.name] = newest - self.margin if newest else None
            return [await client.list_conferences(name=account.discover_name,
                                                  min_created_time=self._since[account.name],
                                                  pace=pace)]
        log.warning("account %r: its client cannot list conferences; not discovered",
                    account.name)
        return []

