"""The token bucket and account pauses of ``poller.polling.pacing`` (pure, time passed in)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from factories import T0, at
from hypothesis import given
from hypothesis import strategies as st

from poller.polling.pacing import AccountGate, TokenBucket


def test_bucket_starts_full_then_paces() -> None:
    """A fresh bucket allows a burst of ``capacity``, then one request per 1/rate seconds."""
    bucket = TokenBucket(5, T0)
    assert [bucket.reserve(T0) for _ in range(5)] == [0, 0, 0, 0, 0]
    assert bucket.reserve(T0) == pytest.approx(0.2)
    assert bucket.reserve(T0) == pytest.approx(0.4)


def test_bucket_refills_over_time_up_to_capacity() -> None:
    """Tokens come back at ``rate`` per second and never exceed the capacity."""
    bucket = TokenBucket(2, T0, capacity=3)
    for _ in range(3):
        bucket.reserve(T0)
    assert bucket.tokens(at(1)) == pytest.approx(2)
    assert bucket.tokens(at(100)) == pytest.approx(3)


def test_reserve_refuses_long_waits_without_booking() -> None:
    """A reservation that would wait too long is refused and books nothing."""
    bucket = TokenBucket(1, T0)
    assert bucket.reserve(T0) == 0
    assert bucket.reserve(T0, max_wait_seconds=0.5) is None
    assert bucket.wait_seconds(T0) == pytest.approx(1)


def test_slow_rate_has_capacity_one() -> None:
    """Below one request a second the bucket still holds one token."""
    bucket = TokenBucket(0.5, T0)
    assert bucket.reserve(T0) == 0
    assert bucket.reserve(T0) == pytest.approx(2)


def test_bucket_ignores_a_clock_going_back() -> None:
    """A clock stepping backwards adds no tokens."""
    bucket = TokenBucket(1, at(10))
    bucket.reserve(at(10))
    assert bucket.tokens(at(0)) == pytest.approx(0)


@given(rate=st.floats(0.1, 100), gaps=st.lists(st.floats(0, 5), min_size=1, max_size=60))
def test_bucket_never_exceeds_rate(rate: float, gaps: list[float]) -> None:
    """Over any window, reservations are spaced so that at most capacity + rate·t start."""
    bucket = TokenBucket(rate, T0)
    now, starts = T0, []
    for gap in gaps:
        now += timedelta(seconds=gap)
        wait = bucket.reserve(now)
        assert wait is not None
        assert wait >= 0
        starts.append(now + timedelta(seconds=wait))
    span = (max(starts) - T0).total_seconds()
    assert len(starts) <= bucket.capacity + rate * span + 1e-6


def test_pause_extends_but_never_shortens() -> None:
    """A later, longer pause extends the account's pause; a shorter one leaves it."""
    gate = AccountGate(TokenBucket(1, T0))
    assert gate.pause(T0, 10, "rate_limited") == at(10)
    assert gate.pause(at(1), 2, "rate_limited") == at(10)
    assert gate.is_paused(at(9))
    assert not gate.is_paused(at(10))


def test_auth_failure_is_reported_once_per_episode() -> None:
    """Only the first auth failure of an episode is to be reported; a success ends it."""
    gate = AccountGate(TokenBucket(1, T0))
    assert gate.auth_failed(T0, 600) is True
    assert gate.auth_failed(at(700), 600) is False
    gate.succeeded()
    assert gate.auth_failed(at(800), 600) is True
    assert gate.pause_reason == "auth"
