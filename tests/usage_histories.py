"""Known histories for the usage views and ``poller report usage`` (``from usage_histories
import …``): times are seconds after ``T0`` (2025-03-01 12:00 UTC), so 3600 is 13:00 and
41400 is 23:30. Their answers are worked out by hand in ``tests/store/test_usage.py`` and
``tests/test_usage_cli.py``.
"""

from __future__ import annotations

from typing import Any

from factories import (
    bandwidth_member,
    bandwidth_observation,
    bandwidth_target,
    telnyx_member,
    telnyx_observation,
    telnyx_target,
)

from poller.model import PollResult

MIN = 60
HOUR = 3_600


NIGHT = telnyx_target("conf-night")


def over_midnight() -> list[PollResult]:
    """23:30 → 00:30 (completed, 1 h); a1 from 23:30 to 00:15."""
    def a1(**state: Any) -> Any:
        return telnyx_member("a1", created_at=41_400, **state)

    return [
        telnyx_observation(at=41_400, target=NIGHT, created_at=41_400, members=[a1()]),
        telnyx_observation(at=44_160, target=NIGHT, created_at=41_400,
                           members=[a1(status="left", updated_at=44_100)]),
        telnyx_observation(at=45_000, target=NIGHT, created_at=41_400, status="completed",
                           updated_at=45_000, members=[a1(status="left", updated_at=44_100)]),
    ]


CONF_A, CONF_B = telnyx_target("conf-a"), telnyx_target("conf-b")
CONF_EU = telnyx_target("conf-eu", account="telnyx-eu")
CONF_BW = bandwidth_target("conf-bw-1")


def overlapping() -> list[PollResult]:
    """In the 13:00 hour, telnyx-main has two conferences whose members overlap:

    conf-a 13:00-13:30 with m1 13:00-13:20 and m4 13:05-13:25 (alone: 2 at once);
    conf-b 13:00-13:40 with m2 13:10-13:30 and m3 13:20-13:40 (alone: 2 at once).
    Together m1, m4, m2 are present from 13:10 to 13:20: 3. At 13:20 m1 leaves as m3 joins:
    still 3, not 4. telnyx-eu (e1 13:00-13:30) and Bandwidth (c1 13:00-13:30) beside it.
    """
    def m(member_id: str, joined: float, left: float | None = None) -> Any:
        if left is None:
            return telnyx_member(member_id, created_at=joined)
        return telnyx_member(member_id, created_at=joined, status="left", updated_at=left)

    a = {"target": CONF_A, "created_at": 3_600}
    b = {"target": CONF_B, "created_at": 3_600}
    eu = {"target": CONF_EU, "created_at": 3_600}
    return [
        telnyx_observation(at=3_600, **a, members=[m("m1", 3_600)]),
        telnyx_observation(at=3_900, **a, members=[m("m1", 3_600), m("m4", 3_900)]),
        telnyx_observation(at=4_860, **a, members=[m("m1", 3_600, 4_800), m("m4", 3_900)]),
        telnyx_observation(at=5_160, **a, members=[m("m1", 3_600, 4_800),
                                                  m("m4", 3_900, 5_100)]),
        telnyx_observation(at=5_400, **a, status="completed", updated_at=5_400,
                           members=[m("m1", 3_600, 4_800), m("m4", 3_900, 5_100)]),
        telnyx_observation(at=3_600, **b),
        telnyx_observation(at=4_200, **b, members=[m("m2", 4_200)]),
        telnyx_observation(at=4_800, **b, members=[m("m2", 4_200), m("m3", 4_800)]),
        telnyx_observation(at=5_400, **b, members=[m("m2", 4_200, 5_400), m("m3", 4_800)]),
        telnyx_observation(at=6_000, **b, status="completed", updated_at=6_000,
                           members=[m("m2", 4_200, 5_400), m("m3", 4_800, 6_000)]),
        telnyx_observation(at=3_600, **eu, members=[m("e1", 3_600)]),
        telnyx_observation(at=5_400, **eu, status="completed", updated_at=5_400,
                           members=[m("e1", 3_600)]),
        bandwidth_observation(at=3_600, target=CONF_BW, created_at=3_600,
                              members=[bandwidth_member("c1")]),
        bandwidth_observation(at=5_400, target=CONF_BW, created_at=3_600, completed_at=5_400),
    ]


OPEN = telnyx_target("conf-open")
REJOIN = bandwidth_target("conf-bw-2")


def open_and_rejoin() -> list[PollResult]:
    """conf-open: 14:00, polled unchanged at 14:30, still open with o1 present.
    conf-bw-2: 14:00-14:20; r1 present 14:00-14:05 and again 14:10-14:20 (a rejoin)."""
    o1 = telnyx_member("o1", created_at=7_200)
    r1 = bandwidth_member("r1", conference_id="conf-bw-2")
    bw = {"target": REJOIN, "created_at": 7_200}
    return [
        telnyx_observation(at=7_200, target=OPEN, created_at=7_200, members=[o1]),
        telnyx_observation(at=9_000, target=OPEN, created_at=7_200, members=[o1]),
        bandwidth_observation(at=7_200, **bw, members=[r1]),
        bandwidth_observation(at=7_500, **bw),
        bandwidth_observation(at=7_800, **bw, members=[r1]),
        bandwidth_observation(at=8_400, **bw, completed_at=8_400),
    ]


def twenty_durations() -> list[PollResult]:
    """Twenty Bandwidth conferences in the 15:00 hour lasting 1, 2, … 20 minutes."""
    results: list[PollResult] = []
    for i in range(1, 21):
        start = 3 * HOUR + i
        target = bandwidth_target(f"conf-p{i}", account="bandwidth-pct")
        results += [bandwidth_observation(at=start, target=target, created_at=start),
                    bandwidth_observation(at=start + i * MIN, target=target, created_at=start,
                                          completed_at=start + i * MIN)]
    return results


def everything() -> list[PollResult]:
    """All of the histories above (their conferences and accounts are distinct)."""
    return [*over_midnight(), *overlapping(), *open_and_rejoin(), *twenty_durations()]
