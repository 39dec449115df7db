"""What the poller reports: a :class:`TickReport` after each tick, a :class:`PollObserver` as it
goes.

``TickReport`` counts what one tick (or, added up, a burst of ticks) did, with the breakdowns
the metrics and the log line need. ``PollObserver`` is told each poll's latency and lateness and
each wait for a token as it happens; ``poller.daemon.metrics.PollerMetrics`` implements it, and
``None`` means "not measured". Both are plain values: this module does no I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from poller.model import Observation, PollResult
from poller.polling.internal import InternalObserver
from poller.polling.pacing import WaitObserver
from poller.store.recorder import RecordStats
from poller.store.rows import ScheduleUpdate


class PollObserver(WaitObserver, InternalObserver, Protocol):
    """What the poller reports as it happens (``PollerMetrics`` is one)."""

    def observe_poll_seconds(self, provider: str, seconds: float) -> None:
        """One poll (``ProviderClient.fetch``) took ``seconds``, whatever its outcome."""

    def observe_poll_lateness(self, provider: str, seconds: float) -> None:
        """A poll started ``seconds`` after its target's ``next_poll_at`` (its due time)."""


@dataclass(slots=True)
class TickReport:
    """What one tick (or, added up, a burst of ticks) did."""

    claimed: int = 0
    taken_over: int = 0
    """Claimed targets whose previous lease had expired unreleased (its holder died)."""
    polled: int = 0
    ok: int = 0
    """Successful polls (``unchanged`` ones included)."""
    unchanged: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    """Failed polls by ``poll_error.kind``."""
    deferred: int = 0
    """Claimed, but handed back unpolled (paused account, no token)."""
    retired: Counter[str] = field(default_factory=Counter)
    """Targets retired, by reason."""
    transitions: int = 0
    member_events: int = 0
    store_error: str | None = None
    """Why results could not be recorded, if they could not."""
    spooled: int = 0
    """Results appended to the spool (the store was away)."""
    spool_replayed: int = 0
    """Spooled results recorded now that the store is back."""
    spool_dropped: int = 0
    """Results lost: the spool was full (unchanged polls first) or the disk refused."""
    skipped: bool = False
    """The tick did not try: it is backing off after the store failed (``store_error`` says
    so); the metrics count no tick for it."""
    polls_by_provider: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Polls by ``(provider, outcome)``: ``ok`` (changed or first seen), ``unchanged`` or the
    ``poll_error.kind`` (``unchanged`` is known only once recorded)."""
    transitions_by_status: Counter[str] = field(default_factory=Counter)
    """``transitions`` by ``to_status``."""
    member_events_by_kind: Counter[str] = field(default_factory=Counter)
    """``member_events`` by ``kind``."""

    @property
    def failures(self) -> int:
        """Failed polls, all kinds."""
        return sum(self.failed.values())

    def count_poll(self, provider: str, result: PollResult) -> None:
        """Count one poll's result (whether it was ``unchanged`` is known once recorded)."""
        if isinstance(result, Observation):
            self.ok += 1
            self.polls_by_provider[provider, "ok"] += 1
        else:
            self.failed[result.kind] += 1
            self.polls_by_provider[provider, result.kind] += 1

    def count_recorded(self, stats: RecordStats, decisions: Iterable[ScheduleUpdate]) -> None:
        """Count what recording the tick's results did, and the retirements decided."""
        self.unchanged += stats.unchanged
        for provider, n in stats.unchanged_by_provider.items():
            self.polls_by_provider[provider, "ok"] -= n
            self.polls_by_provider[provider, "unchanged"] += n
        self.count_history(stats)
        for decision in decisions:
            if decision.state == "retired" and decision.retired_reason is not None:
                self.retired[decision.retired_reason] += 1

    def count_history(self, stats: RecordStats) -> None:
        """Count the history rows a recording wrote (transitions and member events)."""
        self.transitions += stats.transitions
        self.member_events += stats.member_events
        self.transitions_by_status.update(stats.transitions_by_status)
        self.member_events_by_kind.update(stats.member_events_by_kind)

    def add(self, other: TickReport) -> None:
        """Add ``other``'s counts to this report (the last store error wins)."""
        for name in ("claimed", "taken_over", "polled", "ok", "unchanged", "deferred",
                     "transitions", "member_events", "spooled", "spool_replayed",
                     "spool_dropped"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failed.update(other.failed)
        self.retired.update(other.retired)
        self.polls_by_provider.update(other.polls_by_provider)
        self.transitions_by_status.update(other.transitions_by_status)
        self.member_events_by_kind.update(other.member_events_by_kind)
        self.store_error = other.store_error or self.store_error

    def by_provider(self) -> dict[str, TickReport]:
        """One report per provider polled, with its ``ok``, ``unchanged`` and ``failed``."""
        reports: dict[str, TickReport] = {}
        for (provider, outcome), n in self.polls_by_provider.items():
            part = reports.setdefault(provider, TickReport())
            if outcome in ("ok", "unchanged"):
                part.ok += n
                part.unchanged += n if outcome == "unchanged" else 0
            else:
                part.failed[outcome] += n
            part.polled += n
        return reports

    def summary(self) -> str:
        """One line for people: ``polled 12: 10 ok (4 unchanged), 2 failed (…), …``."""
        failed = ", ".join(f"{kind} {n}" for kind, n in sorted(self.failed.items()))
        retired = ", ".join(f"{why} {n}" for why, n in sorted(self.retired.items()))
        parts = [f"polled {self.polled}: {self.ok} ok ({self.unchanged} unchanged)",
                 f"{self.failures} failed" + (f" ({failed})" if failed else ""),
                 f"{sum(self.retired.values())} retired" + (f" ({retired})" if retired else ""),
                 f"{self.transitions} transitions", f"{self.member_events} member events"]
        if self.deferred:
            parts.append(f"{self.deferred} deferred")
        if self.store_error:
            parts.append(f"NOT RECORDED: {self.store_error}")
        return ", ".join(parts)


