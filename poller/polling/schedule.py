"""When to poll a target next: pure decisions, the clock and the randomness passed in.

``next_schedule(state, result, now, settings, rng)`` turns one poll result into the target's
:class:`~poller.store.rows.ScheduleUpdate` (DESIGN §4). ``state`` is what the store knew of the
target *before* this poll (:class:`TargetState`, read when the target was claimed). The rules:

============================  ===================================================================
result                        next poll
============================  ===================================================================
``in_progress`` (or unknown)  ``interval_seconds``
``init``                      ``idle_interval_seconds``
``completed``, first seen     one grace poll after ``completion_grace_seconds`` (0: retire now)
``completed``, seen before    retired ``completed`` (that was the grace poll)
404, conference seen before   ``interval_seconds``, retired ``gone`` at the
                              ``not_found_retire_after``-th 404 since the last success
404, last seen completed      retired ``completed`` (it expired during its grace period)
404, never seen               exponential backoff from ``idle_interval_seconds``; retired
                              ``never_found`` ``never_found_retire_seconds`` after its first 404
server error, timeout,        full-jitter exponential backoff: uniform in
network, bad response,        ``[0, min(backoff_max, backoff_base · 2^(n-1))]`` (n = failures in
internal                      a row), never sooner than ``MIN_RETRY_SECONDS``
429                           the provider's ``Retry-After`` (else the transient backoff); the
                              poller also pauses the whole account
401 / 403                     ``AUTH_PAUSE_SECONDS`` (the poller pauses the whole account)
============================  ===================================================================

Nothing here reads a clock or a global RNG: the same inputs give the same decision.
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta

from poller.config import PollingSettings
from poller.model import ConferenceStatus, Observation, PollFailure, PollResult, require_utc
from poller.store.rows import RetiredReason, ScheduleUpdate, TargetState

AUTH_PAUSE_SECONDS = 600.0
"""How long an account whose credentials were refused (401 / 403) is left alone."""

MIN_RETRY_SECONDS = 1.0
"""The shortest retry delay: full jitter may draw ~0, and a retry must never be "due now"
again within the same tick or burst run."""

TRANSIENT_KINDS = frozenset({"server_error", "timeout", "network", "bad_response", "transient",
                             "internal"})
"""``poll_error.kind`` values retried with jittered backoff."""


def next_schedule(state: TargetState, result: PollResult, now: datetime,
                  settings: PollingSettings, rng: random.Random) -> ScheduleUpdate:
    """The target's next poll time or retirement after ``result`` (see the module table)."""
    require_utc(now, "now")
    if isinstance(result, Observation):
        return _after_observation(state, result, now, settings)
    return _after_failure(state, result, now, settings, rng)


def _after_observation(state: TargetState, result: Observation, now: datetime,
                       settings: PollingSettings) -> ScheduleUpdate:
    status = result.status
    if status == ConferenceStatus.COMPLETED:
        grace_done = state.last_status == ConferenceStatus.COMPLETED
        if grace_done or settings.completion_grace_seconds == 0:
            return retire(now, RetiredReason.COMPLETED)
        return after(now, settings.completion_grace_seconds)
    if status == ConferenceStatus.INIT:
        return after(now, settings.idle_interval_seconds)
    # in_progress, and statuses poller does not know yet: assume something is happening.
    return after(now, settings.interval_seconds)


def _after_failure(state: TargetState, result: PollFailure, now: datetime,
                   settings: PollingSettings, rng: random.Random) -> ScheduleUpdate:
    failures = state.consecutive_failures + 1
    if result.kind == "not_found":
        return _after_not_found(state, now, settings)
    if result.kind == "auth":
        return after(now, AUTH_PAUSE_SECONDS)
    if result.kind == "rate_limited" and result.retry_after_seconds is not None:
        return after(now, max(result.retry_after_seconds, MIN_RETRY_SECONDS))
    return after(now, transient_backoff_seconds(failures, settings, rng))


def _after_not_found(state: TargetState, now: datetime, settings: PollingSettings
                     ) -> ScheduleUpdate:
    if state.last_status == ConferenceStatus.COMPLETED:
        return retire(now, RetiredReason.COMPLETED)
    count = state.not_found_count + 1
    if state.ever_seen:
        if count >= settings.not_found_retire_after:
            return retire(now, RetiredReason.GONE)
        return after(now, settings.interval_seconds)
    since = state.not_found_since or now
    deadline = since + timedelta(seconds=settings.never_found_retire_seconds)
    if now >= deadline:
        return retire(now, RetiredReason.NEVER_FOUND)
    delay = never_found_backoff_seconds(count, settings)
    # One last look exactly at the deadline, so retirement is never later than configured.
    return ScheduleUpdate(next_poll_at=min(now + timedelta(seconds=delay), deadline))


def state_after(state: TargetState, result: PollResult) -> TargetState:
    """What the store will know of the target once ``result`` is recorded: the state the next
    decision starts from when the store is away and the poller keeps the schedule itself."""
    if isinstance(result, Observation):
        return TargetState(last_status=result.status)
    if result.kind != "not_found":
        return replace(state, consecutive_failures=state.consecutive_failures + 1)
    return replace(state, consecutive_failures=state.consecutive_failures + 1,
                   not_found_since=state.not_found_since or result.observed_at,
                   not_found_count=state.not_found_count + 1)


def transient_backoff_seconds(failures: int, settings: PollingSettings,
                              rng: random.Random) -> float:
    """Full-jitter exponential backoff after ``failures`` failed polls in a row (≥ 1)."""
    cap = exponential(settings.backoff_base_seconds, failures, settings.backoff_max_seconds)
    return max(rng.uniform(0.0, cap), MIN_RETRY_SECONDS)


def never_found_backoff_seconds(not_found_count: int, settings: PollingSettings) -> float:
    """Backoff for a conference never seen: the idle interval, doubled per 404, capped at
    ``backoff_max_seconds`` (or the idle interval, if that is longer). No jitter: a missing
    conference costs the provider little and its lateness matters to nobody."""
    ceiling = max(settings.backoff_max_seconds, settings.idle_interval_seconds)
    return exponential(settings.idle_interval_seconds, not_found_count, ceiling)


def exponential(base_seconds: float, attempt: int, max_seconds: float) -> float:
    """``base · 2^(attempt-1)`` capped at ``max_seconds`` (``attempt`` counts from 1)."""
    exponent = min(max(attempt, 1) - 1, 62)  # beyond 2^62 the cap has long applied
    return float(min(base_seconds * 2.0 ** exponent, max_seconds))


def after(now: datetime, seconds: float) -> ScheduleUpdate:
    """Poll again ``seconds`` from ``now``."""
    return ScheduleUpdate(next_poll_at=now + timedelta(seconds=seconds))


def retire(now: datetime, reason: str) -> ScheduleUpdate:
    """Stop polling the target (``next_poll_at`` keeps ``now`` for the record)."""
    return ScheduleUpdate(next_poll_at=now, state="retired", retired_reason=reason)
