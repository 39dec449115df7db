"""Seeded generation of conference lives.

``conference_id`` and ``build_timeline`` are pure functions of ``(seed, provider, index,
config)``: each conference draws from its own ``random.Random`` stream, so a world of 10,000
conferences needs no up-front work beyond its IDs, any conference can be (re)built on demand in
well under a millisecond, and the same seed always yields the same world.

How a life is drawn:

* the conference is created at a uniform time in the configured window and goes
  ``in_progress`` when its first member — the *anchor* — is ``joined``;
* an ending is drawn from the provider's weights; ``time_exceeded`` lasts exactly the
  provider's limit, the others a log-normal duration around ``typical_duration_seconds``;
* the anchor stays to the end: it is the last to hang up (``all_left``), the host whose exit
  ends the conference (``host_left``), or still there when the API or the time limit ends it;
* other members join during the first 70 % of the conference and leave on their own or are
  removed by the ending; in a crowded Bandwidth conference (``crowded_probability``) more than
  20 callers dial in early, and Bandwidth turns away joins beyond 20 simultaneous members;
* each member mutes, holds and coaches at random (a Poisson process) while connected.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Mapping
from typing import TypeVar

from poller.model import Provider
from poller.simulator.config import BANDWIDTH_MEMBER_LIMIT, EndCause, ScenarioConfig
from poller.simulator.timeline import (
    ChangeKind,
    Coaching,
    ConferenceTimeline,
    MemberChange,
    MemberTimeline,
)

_Choice = TypeVar("_Choice", bound=str)

_NAME_WORDS = ("Weekly sync", "Sales huddle", "Support bridge", "All hands", "Standup",
               "Incident review", "Board call", "Training", "Customer onboarding", "Retro")


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _hex(rng: random.Random, digits: int) -> str:
    return f"{rng.getrandbits(4 * digits):0{digits}x}"


def _bandwidth_id(rng: random.Random, prefix: str) -> str:
    """Bandwidth-style IDs: ``conf-fe23a767-a75a5b77-20c5-4cca-b581-cbbf0776eca9``."""
    return f"{prefix}-{_hex(rng, 8)}-{_hex(rng, 8)}-{_hex(rng, 4)}-{_hex(rng, 4)}-" \
           f"{_hex(rng, 4)}-{_hex(rng, 12)}"


def conference_id(seed: int, provider: Provider, index: int) -> str:
    """The ID of the ``index``-th conference of ``provider`` in the world of ``seed``."""
    rng = random.Random(f"{seed}:{provider.value}:{index}:id")  # noqa: S311 (reproducible)
    if provider is Provider.TELNYX:
        return _uuid(rng)
    return _bandwidth_id(rng, "conf")


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _weighted(rng: random.Random, weights: Mapping[_Choice, float]) -> _Choice:
    choices = [name for name, weight in weights.items() if weight > 0]
    return rng.choices(choices, [weights[name] for name in choices])[0]


def _duration_ms(rng: random.Random, cause: EndCause, max_ms: int, config: ScenarioConfig
                 ) -> int:
    if cause is EndCause.TIME_EXCEEDED:
        return max_ms
    typical = config.typical_duration_seconds
    drawn = _ms(rng.lognormvariate(math.log(typical), 0.6))
    shortest = min(_ms(config.shortest_duration_seconds), max_ms // 4)
    return max(shortest, min(drawn, int(max_ms * 0.9)))


def build_timeline(seed: int, provider: Provider, index: int, config: ScenarioConfig
                   ) -> ConferenceTimeline:
    """Draw the whole life of one conference (see the module docstring)."""
    rng = random.Random(f"{seed}:{provider.value}:{index}")  # noqa: S311 (reproducible)
    telnyx = provider is Provider.TELNYX
    created_ms = _ms(rng.uniform(config.created_from_seconds, config.created_until_seconds))
    endings = config.telnyx_endings if telnyx else config.bandwidth_endings
    cause = _weighted(rng, endings)
    max_ms = _ms(config.telnyx_max_duration_seconds if telnyx
                 else config.bandwidth_max_duration_seconds)
    duration_ms = _duration_ms(rng, cause, max_ms, config)
    ended_ms = created_ms + duration_ms
    soonest, latest = _ms(config.first_join_seconds[0]), _ms(config.first_join_seconds[1])
    first_join_ms = created_ms + rng.randint(soonest, max(soonest, min(latest,
                                                                       duration_ms // 20)))

    drafts = _draw_members(rng, telnyx, cause, first_join_ms, ended_ms, config)
    members = _with_activity(rng, drafts, config)
    anchor = members[0]
    ended_by = anchor if cause in (EndCause.ALL_LEFT, EndCause.HOST_LEFT) else None
    region = _weighted(rng, config.telnyx_regions) if telnyx else None
    tag = rng.choice((None, "sales", "support", "internal")) if not telnyx else None
    return ConferenceTimeline(
        provider=provider,
        conference_id=conference_id(seed, provider, index),
        name=f"{rng.choice(_NAME_WORDS)} {index}" if telnyx else f"sim-conference-{index:05d}",
        created_ms=created_ms,
        in_progress_ms=min(m.connected_ms for m in members),
        ended_ms=ended_ms,
        end_cause=cause,
        ended_by=ended_by,
        gone_ms=ended_ms + _ms(config.retention_seconds),
        members=members,
        region=region,
        tag=tag,
    )


class _MemberDraft:
    """A member's presence before its activity is drawn."""

    __slots__ = ("call_id", "call_leg_id", "call_session_id", "connected_ms", "end_flags",
                 "joined_ms", "left_because_ended", "left_ms", "member_id")

    def __init__(self, rng: random.Random, telnyx: bool, joined_ms: int, left_ms: int,
                 joining_ms: int, left_because_ended: bool) -> None:
        if telnyx:
            self.member_id = _uuid(rng)
            self.call_id = f"v3:{_hex(rng, 32)}"
            self.call_leg_id: str | None = _uuid(rng)
            self.call_session_id: str | None = _uuid(rng)
        else:
            self.member_id = self.call_id = _bandwidth_id(rng, "c")
            self.call_leg_id = self.call_session_id = None
        self.joined_ms = joined_ms
        self.left_ms = left_ms
        self.connected_ms = min(joined_ms + joining_ms, left_ms - 1)
        self.left_because_ended = left_because_ended
        self.end_flags = (False, False)


def _draw_members(rng: random.Random, telnyx: bool, cause: EndCause, first_join_ms: int,
                  ended_ms: int, config: ScenarioConfig) -> list[_MemberDraft]:
    def joining_ms() -> int:
        shortest = _ms(config.shortest_joining_seconds)
        return rng.randint(shortest, max(shortest, _ms(config.joining_seconds))) if telnyx else 0

    count = rng.randint(config.members_min, config.members_max)
    # A crowded conference (a Bandwidth all-hands): more callers than it admits, most of them
    # dialling in at the start and staying long.
    crowded = not telnyx and rng.random() < config.crowded_probability
    if crowded:
        count = rng.randint(BANDWIDTH_MEMBER_LIMIT + 1, BANDWIDTH_MEMBER_LIMIT + 8)
    join_window, mean_stay = (0.1, 0.8) if crowded else (0.7, 0.5)
    if cause is EndCause.HOST_LEFT:
        count = max(count, 2)

    anchor = _MemberDraft(rng, telnyx, first_join_ms, ended_ms, joining_ms(),
                          left_because_ended=cause in (EndCause.ENDED_VIA_API,
                                                       EndCause.TIME_EXCEEDED))
    if cause is EndCause.HOST_LEFT:
        anchor.end_flags = (True, False) if rng.random() < 0.7 else (False, True)
    drafts = [anchor]
    span_ms = ended_ms - first_join_ms
    min_stay_ms = _ms(config.min_stay_seconds)
    last_ms = _ms(config.last_leave_margin_seconds)
    for position in range(1, count):
        joined_ms = first_join_ms + rng.randint(1, max(1, int(span_ms * join_window)))
        stay_ms = _ms(rng.expovariate(1.0 / max(1.0, span_ms * mean_stay / 1000)))
        left_ms = joined_ms + max(stay_ms, min_stay_ms)
        removed = left_ms >= ended_ms or (cause is EndCause.HOST_LEFT and position == 1)
        if cause is EndCause.ALL_LEFT and left_ms >= ended_ms - last_ms:
            # Everyone else hangs up before the anchor, who is the last to leave.
            if joined_ms + min_stay_ms > ended_ms - last_ms:
                continue
            left_ms = rng.randint(joined_ms + min_stay_ms, ended_ms - last_ms)
            removed = False
        elif removed:
            left_ms = ended_ms
        if left_ms <= joined_ms or joined_ms >= ended_ms:
            continue
        drafts.append(_MemberDraft(rng, telnyx, joined_ms, left_ms, joining_ms(), removed))

    drafts.sort(key=lambda d: d.joined_ms)
    if telnyx:
        return drafts
    admitted: list[_MemberDraft] = []
    for draft in drafts:
        present = sum(1 for m in admitted if m.joined_ms <= draft.joined_ms < m.left_ms)
        if present < BANDWIDTH_MEMBER_LIMIT:
            admitted.append(draft)
    return admitted


def _with_activity(rng: random.Random, drafts: list[_MemberDraft], config: ScenarioConfig
                   ) -> tuple[MemberTimeline, ...]:
    interval_seconds = config.activity_interval_seconds
    telnyx = drafts[0].call_leg_id is not None
    members = []
    for draft in drafts:
        muted = rng.random() < 0.25
        on_hold = False
        coaching: Coaching = () if telnyx else None
        initial = (muted, on_hold, coaching)
        changes: list[MemberChange] = []
        at_ms = draft.connected_ms
        while len(changes) < config.max_changes_per_member:
            at_ms += max(1, _ms(rng.expovariate(1.0 / interval_seconds)))
            if at_ms >= draft.left_ms:
                break
            roll = rng.random()
            if roll < 0.45:
                muted = not muted
                kind = ChangeKind.MUTED if muted else ChangeKind.UNMUTED
            elif roll < 0.75:
                on_hold = not on_hold
                kind = ChangeKind.HELD if on_hold else ChangeKind.UNHELD
            else:
                if coaching:
                    coaching = ()
                else:
                    others = [d.call_id for d in drafts
                              if d is not draft and d.connected_ms <= at_ms < d.left_ms]
                    if not others:
                        continue
                    coaching = (rng.choice(others),)
                kind = ChangeKind.COACHING_CHANGED
            changes.append(MemberChange(at_ms, kind, muted, on_hold, coaching))
        end_on_exit, soft_end_on_exit = draft.end_flags
        members.append(MemberTimeline(
            member_id=draft.member_id,
            call_id=draft.call_id,
            call_leg_id=draft.call_leg_id,
            call_session_id=draft.call_session_id,
            joined_ms=draft.joined_ms,
            connected_ms=draft.connected_ms,
            left_ms=draft.left_ms,
            left_because_ended=draft.left_because_ended,
            muted=initial[0],
            on_hold=initial[1],
            coaching=initial[2],
            end_conference_on_exit=end_on_exit,
            soft_end_conference_on_exit=soft_end_on_exit,
            changes=tuple(changes),
        ))
    return tuple(members)
