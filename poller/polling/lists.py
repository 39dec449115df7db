"""List polling: observe an account's due targets through its conference list where it suffices.

With ``list_polling`` on (``docs/discovery.md``), a tick asks the account's :class:`ListPlanner`
for a :data:`ListPlan` per claimed target before polling:

* **Telnyx** lists carry each conference's whole state (status, end reason, times). The planner
  lists each region its due targets live in (one request per 250 conferences), then per target:

  - the list entry equals the recorded one and the conference is ``init`` or ``completed``:
    the observation is rebuilt from the recorded snapshot (members included) and stamped with
    the list's time. It costs no request, and the recorder counts it ``unchanged``;
  - otherwise (``in_progress``, changed, never recorded): only the participants are fetched,
    paired with the conference state of the list entry;
  - not listed (expired, other region, not created yet): a plain ``GET`` as without list
    polling, so 404s are handled as usual.

* **Bandwidth** list items carry no members, so only completed conferences gain: a target
  recorded ``completed`` that the list still shows completed is rebuilt from its snapshot (its
  grace poll costs nothing). The listing starts at the oldest such target's ``createdTime``
  (minus :data:`LIST_MARGIN_SECONDS`). Every other target is a ``GET``.

A listing is reused for a due target while it is at most half a poll interval old and newer than
the target's last recorded observation; so targets observed through one listing share their
next due time, and the next listing too (about one listing per region and interval). Discovery
offers its Telnyx listings (when it has no name filter) the same way. A listing that
fails leaves its targets to plain ``GET`` polls, which report the failure as usual.

Known trade-offs: an ``init`` Telnyx conference whose list entry has not changed is not asked
for participants, so a participant still ``joining`` is first recorded when the conference
turns ``in_progress``; a completed conference's grace poll uses the members recorded when it
was first seen completed, unless its list entry changed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

from poller.errors import BadResponse, ProviderError
from poller.model import ConferenceStatus, MemberState, Observation, Provider, TargetKey
from poller.providers import (
    BandwidthClient,
    Pace,
    ProviderClient,
    TelnyxClient,
    parse_bandwidth_conference,
)
from poller.providers.listing import ConferenceListing, ListedConference
from poller.providers.telnyx_parser import parse_telnyx_participant
from poller.store.gateway import Store
from poller.store.snapshots import StoredSnapshot
from poller.store.targets import ClaimedTarget

log = logging.getLogger(__name__)

Fetch = Callable[[Pace | None], Awaitable[Observation]]
"""Fetches the rest of an observation, each request taking the poll's pace."""
ListPlan = Observation | Fetch
"""A ready observation (no request), or how to fetch the rest of one (participants)."""

LIST_MARGIN_SECONDS = 300.0
"""Bandwidth: how far before the oldest completed target's ``createdTime`` the list starts."""


class ListPlanner:
    """One account's list-polling decisions and its cached listings (see the module doc)."""

    def __init__(self, client: ProviderClient, store: Store, clock: Callable[[], datetime],
                 *, max_age_seconds: float) -> None:
        self.client = client
        self.store = store
        self.clock = clock
        self.max_age = timedelta(seconds=max_age_seconds)
        """How old a listing may be and still serve a target (half the poll interval)."""
        self._listings: dict[str | None, ConferenceListing] = {}
        """Telnyx: the newest listing per region (``None``: US); Bandwidth: under ``None``."""
        self._bandwidth_since: datetime | None = None
        """``minCreatedTime`` of the cached Bandwidth listing."""
        self.list_requests = 0
        """Page requests this planner made (for measurements)."""

    def offer(self, listing: ConferenceListing) -> None:
        """Keep a complete, unfiltered Telnyx listing taken elsewhere (discovery)."""
        if listing.provider is not Provider.TELNYX or not listing.complete:
            return
        held = self._listings.get(listing.region)
        if held is None or held.observed_at <= listing.observed_at:
            self._listings[listing.region] = listing

    async def plan(self, targets: Sequence[ClaimedTarget], pace: Pace | None = None
                   ) -> dict[int, ListPlan]:
        """Plans for those of ``targets`` the list can serve, by target pk; list requests take
        ``pace``."""
        if not targets:
            return {}
        keys = [(t.key.account, t.key.conference_id) for t in targets]
        stored = await self.store.current_snapshots(keys)
        if isinstance(self.client, TelnyxClient):
            return await self._telnyx(self.client, targets, stored, pace)
        if isinstance(self.client, BandwidthClient):
            return await self._bandwidth(self.client, targets, stored, pace)
        return {}

    # -- Telnyx --------------------------------------------------------------------------------

    async def _telnyx(self, client: TelnyxClient, targets: Sequence[ClaimedTarget],
                      stored: dict[tuple[str, str], StoredSnapshot], pace: Pace | None
                      ) -> dict[int, ListPlan]:
        by_region: dict[str | None, list[ClaimedTarget]] = {}
        for target in targets:
            region = None if target.key.region in (None, "US") else target.key.region
            by_region.setdefault(region, []).append(target)
        plans: dict[int, ListPlan] = {}
        now = self.clock()
        for region, group in sorted(by_region.items(), key=lambda kv: kv[0] or ""):
            listing = self._listings.get(region)
            if listing is None or not all(self._serves(listing, t, stored, now) for t in group):
                try:
                    listing = await client.list_conferences(region=region, pace=pace)
                except ProviderError as error:
                    log.info("telnyx account %r: list polling fell back to single polls "
                             "(%s: %s)", client.account, error.kind, error)
                    continue
                self.list_requests += listing.requests
                self._listings[region] = listing
            items = listing.by_id()
            for target in group:
                item = items.get(target.key.conference_id)
                if item is None or not self._serves(listing, target, stored, now):
                    continue
                snapshot = stored.get((target.key.account, target.key.conference_id))
                rebuilt = _unchanged_telnyx(target.key, item, snapshot, listing.observed_at)
                plans[target.pk] = rebuilt if rebuilt is not None else _participants_of(
                    client, target.key, item, self.clock)
        return plans

    def _serves(self, listing: ConferenceListing, target: ClaimedTarget,
                stored: dict[tuple[str, str], StoredSnapshot], now: datetime) -> bool:
        """Whether ``listing`` is fresh enough for ``target`` (see the module docstring)."""
        if now - listing.observed_at > self.max_age:
            return False
        snapshot = stored.get((target.key.account, target.key.conference_id))
        last = snapshot.last_observed_at if snapshot is not None else None
        return last is None or listing.observed_at > last

    # -- Bandwidth -----------------------------------------------------------------------------

    async def _bandwidth(self, client: BandwidthClient, targets: Sequence[ClaimedTarget],
                         stored: dict[tuple[str, str], StoredSnapshot], pace: Pace | None
                         ) -> dict[int, ListPlan]:
        completed = {t.pk: (t, s) for t in targets
                     if (s := stored.get((t.key.account, t.key.conference_id))) is not None
                     and s.status == ConferenceStatus.COMPLETED and s.raw is not None}
        if not completed:
            return {}
        created = [s.created_at for _, s in completed.values() if s.created_at is not None]
        since = (min(created) - timedelta(seconds=LIST_MARGIN_SECONDS)
                 if len(created) == len(completed) else None)
        now = self.clock()
        listing = self._listings.get(None)
        covers = listing is not None and (self._bandwidth_since is None or (
            since is not None and self._bandwidth_since <= since))
        if listing is None or not covers or not all(
                self._serves(listing, t, stored, now) for t, _ in completed.values()):
            try:
                listing = await client.list_conferences(min_created_time=since, pace=pace)
            except ProviderError as error:
                log.info("bandwidth account %r: list polling fell back to single polls "
                         "(%s: %s)", client.account, error.kind, error)
                return {}
            self.list_requests += listing.requests
            self._listings[None], self._bandwidth_since = listing, since
        items = listing.by_id()
        plans: dict[int, ListPlan] = {}
        for pk, (target, snapshot) in completed.items():
            item = items.get(target.key.conference_id)
            if item is None or not item.is_completed or not self._serves(
                    listing, target, stored, now):
                continue
            rebuilt = _rebuilt_bandwidth(target.key, snapshot, listing.observed_at)
            if rebuilt is not None:
                plans[pk] = rebuilt
        return plans


def _unchanged_telnyx(key: TargetKey, item: ListedConference, snapshot: StoredSnapshot | None,
                      at: datetime) -> Observation | None:
    """The recorded observation again, if the list entry equals it and nothing moves."""
    if snapshot is None or snapshot.raw is None:
        return None
    if item.conference.status not in (ConferenceStatus.INIT, ConferenceStatus.COMPLETED):
        return None
    if snapshot.raw.get("conference") != item.conference.raw:
        return None
    members = _stored_members(snapshot.raw.get("members"), _telnyx_member)
    if members is None:
        return None
    return Observation(target=key, observed_at=at, conference=item.conference, members=members,
                       members_complete=snapshot.members_complete)


def _rebuilt_bandwidth(key: TargetKey, snapshot: StoredSnapshot, at: datetime
                       ) -> Observation | None:
    """The recorded completed observation again (the list says it is still completed)."""
    assert snapshot.raw is not None
    try:
        conference, members = parse_bandwidth_conference(snapshot.raw.get("conference"))
    except BadResponse:
        return None
    return Observation(target=key, observed_at=at, conference=conference, members=members,
                       members_complete=snapshot.members_complete)


def _telnyx_member(raw: object) -> MemberState:
    return parse_telnyx_participant(raw)


def _stored_members(raws: object, parse: Callable[[object], MemberState]
                    ) -> tuple[MemberState, ...] | None:
    if not isinstance(raws, list):
        return None
    try:
        return tuple(parse(raw) for raw in raws)
    except BadResponse:
        return None


def _participants_of(client: TelnyxClient, key: TargetKey, item: ListedConference,
                     clock: Callable[[], datetime]) -> Fetch:
    """Fetch only the participants; the conference state is the list entry's."""
    async def fetch(pace: Pace | None) -> Observation:
        members, complete, warnings = await client.participants(key, pace)
        return Observation(target=key, observed_at=clock(), conference=item.conference,
                           members=members, members_complete=complete, warnings=warnings)
    return fetch
