"""Settings of a simulated world: the scenario, the injected faults and the test credentials.

Small frozen dataclasses with realistic defaults. Durations are in seconds and can all be
shortened, so a test can play a whole four-hour Telnyx conference in a few simulated minutes
(``ScenarioConfig.lively()``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Any

BANDWIDTH_MEMBER_LIMIT = 20
"""Bandwidth refuses a 21st simultaneous member."""
DEFAULT_SLOW_DELAY_SECONDS = 20.0
"""How long a ``SLOW`` answer is held back by default: clearly longer than poller's default
15 s read timeout, so a slow fault is a timeout rather than a race with one."""


class EndCause(StrEnum):
    """Why a simulated conference ended. Telnyx reports it as ``end_reason``; Bandwidth never
    reports one, but the ground truth still says what happened."""

    ALL_LEFT = "all_left"
    HOST_LEFT = "host_left"
    """A participant with ``end_conference_on_exit`` (or the soft variant) left. Telnyx only."""
    ENDED_VIA_API = "ended_via_api"
    TIME_EXCEEDED = "time_exceeded"


def _frozen(weights: dict[EndCause, float]) -> Mapping[EndCause, float]:
    return MappingProxyType(weights)


@dataclass(frozen=True, slots=True)
class ScenarioConfig:
    """What conferences the world holds and how their lives unfold.

    Conference creation times are spread uniformly over ``[created_from_seconds,
    created_until_seconds)`` relative to the scenario epoch (the clock's time when the world is
    built), so some conferences are already running, or over, when the simulator starts.
    """

    telnyx_conferences: int = 20
    bandwidth_conferences: int = 20
    created_from_seconds: float = -3600.0
    created_until_seconds: float = 3600.0
    typical_duration_seconds: float = 1200.0
    """Median length of conferences that end before their provider's limit."""
    telnyx_max_duration_seconds: float = 4 * 3600.0
    """Telnyx ends a conference 4 h after creation (``time_exceeded``)."""
    bandwidth_max_duration_seconds: float = 24 * 3600.0
    """Bandwidth ends a conference 24 h after creation."""
    retention_seconds: float = 600.0
    """How long a completed conference is still served before it turns into 404."""
    members_min: int = 2
    members_max: int = 10
    crowded_probability: float = 0.1
    """Chance that a Bandwidth conference draws more would-be members than the 20 it admits."""
    detail_records_delay_seconds: float = 60.0
    """How long after a Telnyx conference ends its participant detail records appear."""
    min_stay_seconds: float = 5.0
    """Shortest stay of a member who is not the first (the first stays to the end or near)."""
    joining_seconds: float = 2.0
    """Longest time a Telnyx participant stays ``joining`` before it is ``joined``."""
    activity_interval_seconds: float = 240.0
    shortest_duration_seconds: float = 60.0
    """Shortest conference (or a quarter of the provider's limit, if less)."""
    first_join_seconds: tuple[float, float] = (1.0, 20.0)
    """The first member joins this long after creation (at most 1/20 of the conference)."""
    shortest_joining_seconds: float = 0.2
    """Shortest time a Telnyx participant stays ``joining``."""
    last_leave_margin_seconds: float = 1.0
    """When everyone leaves (``all_left``), the others leave at least this long before the
    last member."""
    """Mean time between one member's mute / hold / coaching changes."""
    max_changes_per_member: int = 24
    """Bound on each member's changes, so long conferences stay cheap."""
    telnyx_endings: Mapping[EndCause, float] = field(
        default_factory=lambda: _frozen({
            EndCause.ALL_LEFT: 0.4,
            EndCause.HOST_LEFT: 0.25,
            EndCause.ENDED_VIA_API: 0.2,
            EndCause.TIME_EXCEEDED: 0.15,
        })
    )
    bandwidth_endings: Mapping[EndCause, float] = field(
        default_factory=lambda: _frozen({
            EndCause.ALL_LEFT: 0.55,
            EndCause.ENDED_VIA_API: 0.3,
            EndCause.TIME_EXCEEDED: 0.15,
        })
    )
    telnyx_regions: Mapping[str, float] = field(
        default_factory=lambda: MappingProxyType({
            "US": 0.7, "Europe": 0.2, "Australia": 0.05, "Middle East": 0.05,
        })
    )
    """Data region of Telnyx conferences; a conference outside ``US`` (the account's default
    locality) is only found when the request names its region."""
    cache_size: int = 16384
    """Conference timelines kept in memory; the rest are regenerated (deterministically)."""

    def __post_init__(self) -> None:
        if self.created_until_seconds <= self.created_from_seconds:
            raise ValueError("created_until_seconds must be after created_from_seconds")
        if not 1 <= self.members_min <= self.members_max:
            raise ValueError("need 1 <= members_min <= members_max")
        if EndCause.HOST_LEFT in self.bandwidth_endings:
            raise ValueError("Bandwidth has no host_left ending")
        for name in ("typical_duration_seconds", "telnyx_max_duration_seconds",
                     "bandwidth_max_duration_seconds", "activity_interval_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")

    @classmethod
    def lively(cls, conferences_per_provider: int = 40) -> ScenarioConfig:
        """A fast-moving world: short conferences (Telnyx limit 30 min, Bandwidth 1 h), busy
        members, every kind of ending within the first simulated hour or two."""
        return cls(
            telnyx_conferences=conferences_per_provider,
            bandwidth_conferences=conferences_per_provider,
            created_from_seconds=-900.0,
            created_until_seconds=1800.0,
            typical_duration_seconds=600.0,
            telnyx_max_duration_seconds=1800.0,
            bandwidth_max_duration_seconds=3600.0,
            retention_seconds=300.0,
            activity_interval_seconds=60.0,
        )

    def compressed(self, factor: float) -> ScenarioConfig:
        """The same world with every duration divided by ``factor``: lives of minutes play out
        in seconds on a real-time clock, so the times the providers report stay on the same
        clock as the polls that see them (``poller demo``)."""
        if factor <= 0:
            raise ValueError(f"factor must be positive, got {factor}")
        durations: dict[str, Any] = {
            f.name: getattr(self, f.name) / factor for f in fields(self)
            if f.name.endswith("_seconds") and f.name != "first_join_seconds"}
        soonest, latest = self.first_join_seconds
        return replace(replace(self, **durations),
                       first_join_seconds=(soonest / factor, latest / factor))

    @classmethod
    def steady(cls, conferences_per_provider: int = 1000) -> ScenarioConfig:
        """A world where nothing happens on its own (benchmarks): every conference was created
        10 to 20 minutes before the epoch, has one member (joined, never muted, held or
        coaching) and runs for 30 days, and every Telnyx one is in the default ``US`` region.
        Only ``Simulator.churn`` (``POST /_sim/churn``) changes it."""
        month = 30 * 24 * 3600.0
        return cls(
            telnyx_conferences=conferences_per_provider,
            bandwidth_conferences=conferences_per_provider,
            created_from_seconds=-1200.0,
            created_until_seconds=-600.0,
            typical_duration_seconds=month,
            telnyx_max_duration_seconds=month,
            bandwidth_max_duration_seconds=month,
            members_min=1,
            members_max=1,
            crowded_probability=0.0,
            max_changes_per_member=0,
            telnyx_endings=_frozen({EndCause.TIME_EXCEEDED: 1.0}),
            bandwidth_endings=_frozen({EndCause.TIME_EXCEEDED: 1.0}),
            telnyx_regions=MappingProxyType({"US": 1.0}),
        )


class FaultKind(StrEnum):
    """Failures the simulator can inject instead of (or into) a normal answer."""

    RATE_LIMITED = "rate_limited"
    """429 with the provider's headers (Telnyx ``x-ratelimit-*``, Bandwidth ``Retry-After``)."""
    SERVER_ERROR = "server_error"
    """500 with the provider's error body."""
    UNAVAILABLE = "unavailable"
    """503 (Bandwidth ``system-overloaded``)."""
    SLOW = "slow"
    """The normal answer, after ``FaultConfig.slow_delay_seconds`` of real time."""
    RESET = "reset"
    """The connection is dropped without an answer (see ``poller.simulator.faults``)."""
    MALFORMED = "malformed"
    """200 with a body that is not JSON."""
    TRUNCATED = "truncated"
    """200 with the normal JSON body cut short."""


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """Per-request probability of each fault (their sum must not exceed 1).

    Faults hit the provider endpoints only (not the token endpoint, not ``/_sim``), after the
    authentication check, and are drawn from an RNG seeded with ``seed``: the same sequence of
    requests meets the same faults.
    """

    rates: Mapping[FaultKind, float] = field(default_factory=lambda: MappingProxyType({}))
    seed: int = 0
    slow_delay_seconds: float = DEFAULT_SLOW_DELAY_SECONDS
    """Real seconds a ``SLOW`` answer is held back; keep it above the client's read timeout."""
    retry_after_seconds: int = 2
    """What 429 (and Bandwidth 503) tell the client to wait."""
    rate_limit_per_window: int = 100
    """The ``x-ratelimit-limit`` Telnyx reports."""

    def __post_init__(self) -> None:
        if any(rate < 0 for rate in self.rates.values()):
            raise ValueError("fault rates must not be negative")
        if sum(self.rates.values()) > 1.0 + 1e-9:
            raise ValueError("fault rates must add up to at most 1")

    @classmethod
    def spread(cls, total_rate: float, *, seed: int = 0,
               slow_delay_seconds: float = DEFAULT_SLOW_DELAY_SECONDS) -> FaultConfig:
        """``total_rate`` of requests fail, split evenly over every kind of fault."""
        if not 0 <= total_rate <= 1:
            raise ValueError(f"total fault rate must be within [0, 1], got {total_rate}")
        share = total_rate / len(FaultKind)
        return cls(
            rates=MappingProxyType({kind: share for kind in FaultKind}),
            seed=seed,
            slow_delay_seconds=slow_delay_seconds,
        )


@dataclass(frozen=True, slots=True)
class LatencyConfig:
    """How long every provider API answer is held back, like a real provider's round trip.

    Each request to a provider endpoint (conferences, participants, detail records, OAuth2
    tokens, and their errors; not ``/_sim``) waits ``seconds`` plus a uniform draw in
    ``[-jitter_seconds, +jitter_seconds]`` of *real* time before it is answered, with
    ``asyncio.sleep``: requests wait concurrently, so N requests at once take about one round
    trip, not N. The answer is computed after the wait (as of when it is sent). Draws come from
    an RNG of their own seeded with ``seed`` (the fault sequence is not disturbed).
    """

    seconds: float = 0.0
    jitter_seconds: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.seconds < float("inf"):
            raise ValueError(f"latency must be finite and >= 0, got {self.seconds}")
        if not 0 <= self.jitter_seconds <= self.seconds:
            raise ValueError("latency jitter must be within [0, latency], got "
                             f"{self.jitter_seconds} for {self.seconds}")

    @classmethod
    def ms(cls, latency_ms: float, jitter_ms: float = 0.0, *, seed: int = 0) -> LatencyConfig:
        """The same, in milliseconds (``poller simulate --latency-ms --latency-jitter-ms``)."""
        return cls(latency_ms / 1000, jitter_ms / 1000, seed)

    def delay(self, roll: float) -> float:
        """The seconds one request waits, for a uniform ``roll`` in ``[0, 1)``."""
        return self.seconds + self.jitter_seconds * (2 * roll - 1)


@dataclass(frozen=True, slots=True)
class Credentials:
    """The simulator's fake, simulator-only credentials (safe to print)."""

    telnyx_api_key: str = "KEYSIMULATOR0000TELNYX"
    telnyx_forbidden_api_key: str = "KEYSIMULATOR0000FORBIDDEN"
    """Authenticates but may not read conferences: every request answers 403 ``10010``."""
    bandwidth_account_id: str = "9900000"
    bandwidth_username: str = "sim-api-user"
    bandwidth_password: str = "sim-api-password"  # noqa: S105 (fake, simulator-only)
    bandwidth_client_id: str = "sim-client-id"
    bandwidth_client_secret: str = "sim-client-secret"  # noqa: S105 (fake, simulator-only)
    token_lifetime_seconds: int = 3600
    """OAuth2 access-token lifetime, on the simulator clock."""
