"""The pure scheduling decisions of ``poller.polling.schedule`` (DESIGN §4), as a table and
properties."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import timedelta

import pytest
from factories import T0, at, failure, telnyx_observation
from hypothesis import given
from hypothesis import strategies as st

from poller.config import PollingSettings
from poller.model import PollFailure, PollResult
from poller.polling.schedule import (
    AUTH_PAUSE_SECONDS,
    MIN_RETRY_SECONDS,
    exponential,
    next_schedule,
    transient_backoff_seconds,
)
from poller.store.rows import ScheduleUpdate, TargetState

SETTINGS = PollingSettings(interval_seconds=10, idle_interval_seconds=60,
                           completion_grace_seconds=30, not_found_retire_after=3,
                           never_found_retire_seconds=3600, backoff_base_seconds=2,
                           backoff_max_seconds=300)
NOW = at(0)
SEEN = TargetState(last_status="in_progress")
NEVER = TargetState()


def in_(seconds: float) -> ScheduleUpdate:
    return ScheduleUpdate(next_poll_at=NOW + timedelta(seconds=seconds))


def retired(reason: str) -> ScheduleUpdate:
    return ScheduleUpdate(next_poll_at=NOW, state="retired", retired_reason=reason)


def rate_limited(retry_after: float | None) -> PollFailure:
    return replace(failure(kind="rate_limited", http_status=429),
                   retry_after_seconds=retry_after)


CASES: list[tuple[str, TargetState, PollResult, ScheduleUpdate]] = [
    ("in_progress polls at the interval", SEEN, telnyx_observation(), in_(10)),
    ("unknown status polls at the interval", SEEN, telnyx_observation(status="paused"), in_(10)),
    ("init polls at the idle interval", NEVER, telnyx_observation(status="init"), in_(60)),
    ("first completed sight waits for the grace poll", SEEN,
     telnyx_observation(status="completed"), in_(30)),
    ("completed on first ever sight still gets its grace poll", NEVER,
     telnyx_observation(status="completed"), in_(30)),
    ("the grace poll retires it", TargetState(last_status="completed"),
     telnyx_observation(status="completed"), retired("completed")),
    ("a 404 during the grace period retires it completed", TargetState(last_status="completed"),
     failure(), retired("completed")),
    ("first 404 of a seen conference retries at the interval", SEEN, failure(), in_(10)),
    ("second 404 of a seen conference still retries",
     replace(SEEN, not_found_since=at(-10), not_found_count=1, consecutive_failures=1),
     failure(), in_(10)),
    ("third 404 of a seen conference retires it gone",
     replace(SEEN, not_found_since=at(-20), not_found_count=2, consecutive_failures=2),
     failure(), retired("gone")),
    ("first 404 of a never-seen target backs off from the idle interval", NEVER, failure(),
     in_(60)),
    ("never-seen backoff doubles per 404",
     TargetState(not_found_since=at(-120), not_found_count=2), failure(), in_(240)),
    ("never-seen backoff is capped at backoff_max",
     TargetState(not_found_since=at(-1000), not_found_count=9), failure(), in_(300)),
    ("never-seen backoff stops at the retirement deadline",
     TargetState(not_found_since=at(-3500), not_found_count=9), failure(), in_(100)),
    ("never-seen retires after never_found_retire_seconds",
     TargetState(not_found_since=at(-3600), not_found_count=12), failure(),
     retired("never_found")),
    ("429 waits for Retry-After", SEEN, rate_limited(7), in_(7)),
    ("429 with a zero Retry-After still waits the minimum", SEEN, rate_limited(0),
     in_(MIN_RETRY_SECONDS)),
    ("auth failure pauses for the auth pause", SEEN, failure(kind="auth", http_status=401),
     in_(AUTH_PAUSE_SECONDS)),
]


@pytest.mark.parametrize(("state", "result", "expected"),
                         [pytest.param(s, r, e, id=name) for name, s, r, e in CASES])
def test_decision_table(state: TargetState, result: PollResult, expected: ScheduleUpdate) -> None:
    """Each kind of result is rescheduled or retired as DESIGN §4 says."""
    assert next_schedule(state, result, NOW, SETTINGS, random.Random(0)) == expected


def test_zero_grace_retires_on_first_completed_sight() -> None:
    """With completion_grace_seconds = 0 a completed conference is retired at once."""
    settings = SETTINGS.model_copy(update={"completion_grace_seconds": 0})
    decision = next_schedule(SEEN, telnyx_observation(status="completed"), NOW, settings,
                             random.Random(0))
    assert decision == retired("completed")


TRANSIENT = st.sampled_from(["server_error", "timeout", "network", "bad_response"])


@given(kind=TRANSIENT, failures=st.integers(0, 200), seed=st.integers(0, 2**32))
def test_transient_backoff_is_jittered_within_the_cap(kind: str, failures: int, seed: int
                                                      ) -> None:
    """Transient failures retry after a full-jitter delay in [minimum, min(max, base·2^n)]."""
    state = replace(SEEN, consecutive_failures=failures)
    decision = next_schedule(state, failure(kind=kind, http_status=None), NOW, SETTINGS,
                             random.Random(seed))
    delay = (decision.next_poll_at - NOW).total_seconds()
    cap = min(300.0, 2.0 * 2 ** failures)
    assert decision.state is None
    assert MIN_RETRY_SECONDS <= delay <= max(cap, MIN_RETRY_SECONDS)


@given(seed=st.integers(0, 2**32))
def test_same_rng_same_decision(seed: int) -> None:
    """Decisions are deterministic given the injected RNG."""
    result = failure(kind="server_error", http_status=500)
    first = next_schedule(SEEN, result, NOW, SETTINGS, random.Random(seed))
    assert first == next_schedule(SEEN, result, NOW, SETTINGS, random.Random(seed))


def test_jitter_spreads_retries() -> None:
    """Full jitter gives different delays across draws (no thundering herd)."""
    rng = random.Random(1)
    delays = {transient_backoff_seconds(6, SETTINGS, rng) for _ in range(50)}
    assert len(delays) > 40
    assert max(delays) <= 64


@given(base=st.floats(0.1, 100), attempt=st.integers(-5, 10_000), cap=st.floats(0.1, 1e6))
def test_exponential_is_capped_and_never_overflows(base: float, attempt: int, cap: float
                                                   ) -> None:
    """The exponential helper never exceeds its cap, even for huge attempt counts."""
    assert 0 < exponential(base, attempt, cap) <= cap


@given(failures=st.integers(0, 50), count=st.integers(0, 50), seen=st.booleans(),
       elapsed=st.floats(0, 10_000))
def test_not_found_never_schedules_in_the_past(failures: int, count: int, seen: bool,
                                               elapsed: float) -> None:
    """A 404 retires the target or reschedules it later, never past the never-found deadline."""
    state = TargetState(last_status="in_progress" if seen else None,
                        consecutive_failures=failures, not_found_count=count,
                        not_found_since=NOW - timedelta(seconds=elapsed) if count else None)
    decision = next_schedule(state, failure(), NOW, SETTINGS, random.Random(0))
    if decision.state == "retired":
        assert decision.retired_reason == ("gone" if seen else "never_found")
        return
    assert decision.next_poll_at > NOW
    if not seen and state.not_found_since is not None:
        assert decision.next_poll_at <= state.not_found_since + timedelta(seconds=3600)


def test_naive_now_is_refused() -> None:
    """The clock passed in must be aware UTC."""
    with pytest.raises(ValueError, match="timezone-aware"):
        next_schedule(SEEN, telnyx_observation(), T0.replace(tzinfo=None), SETTINGS,
                      random.Random(0))
