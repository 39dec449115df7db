"""What the pipeline knows of the targets it polls: enough to go on polling them by itself.

While the store is away (DESIGN §9) the pipeline cannot claim; it polls the targets it knows
instead, each when its own schedule says (:class:`KnownTargets`): every target it has polled or
claimed, with the next poll time it decided, and the content hash of the last observation of
each (so that a full spool keeps changes before unchanged polls).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from poller.model import Observation, PollResult, TargetKey
from poller.store.targets import ClaimedTarget


@dataclass(frozen=True, slots=True)
class Known:
    """A target this daemon polls, as it last decided: what to poll while the store is away."""

    target: ClaimedTarget
    next_poll_at: datetime


class KnownTargets:
    """The targets a pipeline knows, and the last content hash seen of each."""

    def __init__(self) -> None:
        self.targets: dict[TargetKey, Known] = {}
        self._hashes: dict[TargetKey, str] = {}

    def __len__(self) -> int:
        return len(self.targets)

    def due(self, now: datetime, busy: Collection[TargetKey], room: int) -> list[ClaimedTarget]:
        """Up to ``room`` known targets due at ``now`` and not ``busy``, the most overdue first,
        each with pk 0 (not leased by this poll, so never handed back)."""
        due = sorted((k for k in self.targets.values()
                      if k.next_poll_at <= now and k.target.key not in busy),
                     key=lambda k: (k.next_poll_at, k.target.key.conference_id))
        return [replace(known.target, pk=0) for known in due[:room]]

    def know(self, wanted: Iterable[TargetKey], now: datetime) -> None:
        """Know exactly ``wanted`` (the config's targets; those known already keep their
        schedule, new ones are due ``now``)."""
        self.targets = {key: self.targets.get(key) or Known(
            ClaimedTarget(pk=0, key=key, next_poll_at=now), now) for key in wanted}

    def remember(self, target: ClaimedTarget, next_poll_at: datetime | None) -> None:
        """``target`` is next polled at ``next_poll_at`` (``None``: no more, it retired)."""
        if next_poll_at is None:
            self.targets.pop(target.key, None)
        else:
            self.targets[target.key] = Known(target, next_poll_at)

    def remember_hashes(self, results: Iterable[PollResult]) -> None:
        """Note the content hash of each observation among ``results``."""
        self._hashes.update((r.target, r.content_hash()) for r in results
                            if isinstance(r, Observation))

    def unchanged(self, result: PollResult) -> bool:
        """Whether ``result`` observed what the last observation of its target did."""
        return (isinstance(result, Observation)
                and self._hashes.get(result.target) == result.content_hash())
