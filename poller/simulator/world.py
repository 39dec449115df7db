"""``Simulator``: one seeded world of conferences at both providers, read on one clock.

It owns the scenario (conference IDs up front, timelines built lazily and kept in a bounded
cache), the clock, the fault injector, the credentials and the OAuth2 token issuer. The HTTP
layer (``poller.simulator.app``) and the ground-truth export only read from it, except for
``churn`` (``POST /_sim/churn``), which adds member changes at the current time for benchmarks.
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta

from poller.model import Provider, require_utc
from poller.simulator.auth import TokenIssuer
from poller.simulator.clock import Clock, VirtualClock
from poller.simulator.config import Credentials, FaultConfig, LatencyConfig, ScenarioConfig
from poller.simulator.faults import FaultInjector
from poller.simulator.scenario import build_timeline, conference_id
from poller.simulator.timeline import (
    ChangeKind,
    ConferenceTimeline,
    MemberChange,
    MemberTimeline,
)


class Simulator:
    """A deterministic world: the same ``seed``, ``scenario`` and ``epoch`` give the same lives.

    ``epoch`` (default: the clock's time at construction) is the instant scenario offsets count
    from; ``ScenarioConfig.created_from_seconds`` may be negative, so conferences can already be
    running, or over, at the epoch.
    """

    def __init__(
        self,
        *,
        seed: int = 1,
        clock: Clock | None = None,
        scenario: ScenarioConfig | None = None,
        faults: FaultConfig | None = None,
        credentials: Credentials | None = None,
        epoch: datetime | None = None,
        latency: LatencyConfig | None = None,
    ) -> None:
        self.seed = seed
        self.clock: Clock = clock if clock is not None else VirtualClock()
        self.scenario = scenario if scenario is not None else ScenarioConfig()
        self.credentials = credentials if credentials is not None else Credentials()
        self.faults = FaultInjector(faults if faults is not None else FaultConfig())
        self.latency = latency if latency is not None else LatencyConfig()
        """How long provider API answers are held back (``response_delay``)."""
        self._latency_rng = random.Random(self.latency.seed)  # noqa: S311 (not secret)
        require_utc(epoch, "Simulator.epoch")
        self.epoch = epoch if epoch is not None else self.clock.now()
        self.tokens = TokenIssuer(self.credentials, secret=f"poller-simulator:{seed}")
        counts = {
            Provider.TELNYX: self.scenario.telnyx_conferences,
            Provider.BANDWIDTH: self.scenario.bandwidth_conferences,
        }
        self._ids = {
            provider: tuple(conference_id(seed, provider, index) for index in range(count))
            for provider, count in counts.items()
        }
        self._index = {
            (provider, cid): index
            for provider, ids in self._ids.items()
            for index, cid in enumerate(ids)
        }
        self._cache: OrderedDict[tuple[Provider, str], ConferenceTimeline] = OrderedDict()
        self._churned: dict[tuple[Provider, str], ConferenceTimeline] = {}
        """Timelines changed by :meth:`churn` (kept apart from the cache: never evicted)."""
        self._churn_cursors: dict[Provider | None, int] = {}
        self.churn_changes = 0
        """Member changes :meth:`churn` has made so far."""

    # -- time ------------------------------------------------------------------------------

    def response_delay(self) -> float:
        """Real seconds the next provider API answer waits (``LatencyConfig``; 0: none)."""
        latency = self.latency
        if not latency.jitter_seconds:
            return latency.seconds
        return latency.delay(self._latency_rng.random())

    def now_ms(self) -> int:
        """The clock's current time, in milliseconds after the epoch."""
        return self.to_ms(self.clock.now())

    def to_ms(self, moment: datetime) -> int:
        """``moment`` (aware) as milliseconds after the epoch."""
        return (moment - self.epoch) // timedelta(milliseconds=1)

    def to_datetime(self, at_ms: int) -> datetime:
        """Milliseconds after the epoch as an aware UTC datetime."""
        return self.epoch + timedelta(milliseconds=at_ms)

    def iso(self, at_ms: int) -> str:
        """Milliseconds after the epoch in the providers' format: ``2019-01-23T18:10:02.574Z``."""
        return self.to_datetime(at_ms).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"

    # -- conferences -----------------------------------------------------------------------

    def conference_ids(self, provider: Provider) -> tuple[str, ...]:
        """Every conference ID the world holds for ``provider`` (existing now or not)."""
        return self._ids[provider]

    def timeline(self, provider: Provider, conference_id: str) -> ConferenceTimeline | None:
        """The life of one conference, or ``None`` for an ID the world never holds."""
        key = (provider, conference_id)
        churned = self._churned.get(key)
        if churned is not None:
            return churned
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        index = self._index.get(key)
        if index is None:
            return None
        built = build_timeline(self.seed, provider, index, self.scenario)
        self._cache[key] = built
        if len(self._cache) > self.scenario.cache_size:
            self._cache.popitem(last=False)
        return built

    def timelines(self, provider: Provider | None = None) -> Iterator[ConferenceTimeline]:
        """Every conference's life, Telnyx first, each provider in index order."""
        providers = (provider,) if provider is not None else tuple(Provider)
        for each in providers:
            for cid in self._ids[each]:
                built = self.timeline(each, cid)
                assert built is not None
                yield built

    def prebuild(self) -> int:
        """Build every conference's life now (up to ``cache_size``), so that a benchmark does
        not time first-request generation; returns how many are cached."""
        for provider in Provider:
            for cid in self._ids[provider][: self.scenario.cache_size]:
                self.timeline(provider, cid)
        return len(self._cache)

    def existing(self, provider: Provider, conference_id: str, at_ms: int
                 ) -> ConferenceTimeline | None:
        """The conference if the provider knows it at ``at_ms``, else ``None`` (404)."""
        found = self.timeline(provider, conference_id)
        if found is None or not found.exists_at(at_ms):
            return None
        return found

    # -- churn -----------------------------------------------------------------------------

    def churn(self, fraction: float, provider: Provider | None = None) -> int:
        """Change ``fraction`` of the world's conferences (of ``provider``'s only, if given)
        now; how many were changed.

        Goes round the conferences (Telnyx first, then Bandwidth, in index order, carrying on
        where the previous call with the same ``provider`` stopped) and, in each one in
        progress, flips ``muted`` of its first connected member at the clock's current time:
        one ``muted`` / ``unmuted`` member change, served from now on and part of the ground
        truth. Conferences not in progress
        (or whose member has a later change already) are passed over. Changes
        ``ceil(fraction * conferences)`` of them, or as many as are in progress.
        """
        if not (math.isfinite(fraction) and 0 < fraction <= 1):
            raise ValueError(f"fraction must be within (0, 1], got {fraction}")
        providers = tuple(Provider) if provider is None else (provider,)
        keys = [(each, cid) for each in providers for cid in self._ids[each]]
        wanted = math.ceil(fraction * len(keys))
        at_ms = self.now_ms()
        changed = 0
        cursor = self._churn_cursors.get(provider, 0)
        for _ in range(len(keys)):
            if changed == wanted:
                break
            key = keys[cursor % len(keys)]
            cursor = (cursor + 1) % len(keys)
            timeline = self.existing(*key, at_ms)
            if timeline is None or not timeline.in_progress_ms <= at_ms < timeline.ended_ms:
                continue
            flipped = _with_mute_flipped(timeline, at_ms)
            if flipped is not None:
                self._churned[key] = flipped
                changed += 1
        self._churn_cursors[provider] = cursor
        self.churn_changes += changed
        return changed


def _with_mute_flipped(timeline: ConferenceTimeline, at_ms: int) -> ConferenceTimeline | None:
    """``timeline`` with ``muted`` of its first connected member flipped at ``at_ms``."""
    for position, member in enumerate(timeline.members):
        if not member.connected_ms < at_ms < member.left_ms:
            continue
        if member.changes and member.changes[-1].at_ms > at_ms:
            continue  # a change after now: appending would break their time order
        now = member.snapshot_at(at_ms)
        assert now is not None
        change = MemberChange(at_ms, ChangeKind.UNMUTED if now.muted else ChangeKind.MUTED,
                              not now.muted, now.on_hold, now.coaching)
        changed: MemberTimeline = replace(member, changes=(*member.changes, change))
        members = (*timeline.members[:position], changed, *timeline.members[position + 1:])
        ended_by = changed if timeline.ended_by is member else timeline.ended_by
        return replace(timeline, members=members, ended_by=ended_by)
    return None
