"""The provider clients, the simulator and the recorder together, checked against ground truth.

A seeded lively world is polled on a virtual clock through the real clients (HTTP over
``httpx.ASGITransport``), every poll is recorded by the real recorder into a real database, and
the recorded history is compared with the simulator's ground truth:

* every status, mute, hold and presence state that lasted at least two poll intervals inside
  the polled window is recorded, in order;
* nothing is recorded that did not happen (recorded sequences are subsequences of the truth);
* Telnyx end reasons and completion times are the provider's, Bandwidth's end reason is NULL;
* transition and member-event numbering is unbroken and nothing is duplicated.

The daemon's scheduler is not involved: every target is polled every interval.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from poller.config import ApiKeyCredentials, OAuth2Credentials
from poller.errors import ProviderError
from poller.model import PollFailure, PollResult, Provider, TargetKey
from poller.providers import (
    ProviderClient,
    build_client,
)
from poller.simulator import (
    FaultConfig,
    FaultKind,
    ScenarioConfig,
    Simulator,
    VirtualClock,
    create_app,
    ground_truth,
)
from poller.store.recorder import Recorder
from poller.store.schema import Conference, Member, MemberEvent, StatusTransition

INTERVAL_SECONDS = 15.0
SIGNIFICANT_SECONDS = 2 * INTERVAL_SECONDS
TELNYX = "telnyx-sim"
BANDWIDTH = "bandwidth-sim"


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class World:
    sim: Simulator
    clock: VirtualClock
    clients: dict[Provider, ProviderClient]
    targets: list[TargetKey]


def build_world(seed: int, faults: FaultConfig | None) -> World:
    clock = VirtualClock()
    sim = Simulator(seed=seed, clock=clock, scenario=ScenarioConfig.lively(8), faults=faults)
    transport = httpx.ASGITransport(app=create_app(sim))
    creds = sim.credentials
    clients: dict[Provider, ProviderClient] = {
        Provider.TELNYX: build_client(
            Provider.TELNYX, account=TELNYX, base_url="http://sim/v2", transport=transport,
            credentials=ApiKeyCredentials(creds.telnyx_api_key), clock=clock.now),
        Provider.BANDWIDTH: build_client(
            Provider.BANDWIDTH, account=BANDWIDTH, base_url="http://sim/api/v2",
            account_id=creds.bandwidth_account_id, transport=transport, clock=clock.now,
            credentials=OAuth2Credentials(creds.bandwidth_client_id, creds.bandwidth_client_secret,
                                          token_url="http://sim/api/v1/oauth2/token")),
    }
    targets = [
        TargetKey(Provider.TELNYX, TELNYX, cid, _region(sim, cid))
        for cid in sim.conference_ids(Provider.TELNYX)
    ] + [TargetKey(Provider.BANDWIDTH, BANDWIDTH, cid)
         for cid in sim.conference_ids(Provider.BANDWIDTH)]
    return World(sim, clock, clients, targets)


def _region(sim: Simulator, conference_id: str) -> str | None:
    timeline = sim.timeline(Provider.TELNYX, conference_id)
    assert timeline is not None
    return None if timeline.region == "US" else timeline.region


async def poll_once(world: World, target: TargetKey) -> PollResult:
    try:
        return await world.clients[target.provider].fetch(target)
    except ProviderError as exc:
        return PollFailure.from_error(target, world.clock.now(), exc)


async def run(world: World, recorder: Recorder, seconds: float) -> tuple[datetime, datetime]:
    """Poll every target every interval for ``seconds`` of virtual time; the window polled."""
    start = world.clock.now()
    try:
        for _ in range(int(seconds / INTERVAL_SECONDS) + 1):
            batch = await asyncio.gather(*(poll_once(world, t) for t in world.targets))
            recorder.record(batch)
            world.clock.advance(INTERVAL_SECONDS)
    finally:
        for client in world.clients.values():
            await client.aclose()
    return start, world.clock.now() - timedelta(seconds=INTERVAL_SECONDS)


# --- comparing sequences of states -------------------------------------------------------------

Change = tuple[datetime, Hashable]
"""A state that started at a moment (and lasted until the next change)."""


def collapse(values: Sequence[Hashable]) -> list[Hashable]:
    """Consecutive repeats merged."""
    out: list[Hashable] = []
    for value in values:
        if not out or out[-1] != value:
            out.append(value)
    return out


def runs_in_window(changes: Sequence[Change], end_of_life: datetime | None,
                   window: tuple[datetime, datetime]) -> Iterator[tuple[Hashable, float]]:
    """Each state with how long it lasted inside the polled window (seconds, may be 0)."""
    start, end = window
    for i, (at, value) in enumerate(changes):
        until = changes[i + 1][0] if i + 1 < len(changes) else (end_of_life or end)
        overlap = (min(until, end) - max(at, start)).total_seconds()
        yield value, overlap


def is_subsequence(needle: Sequence[Hashable], haystack: Sequence[Hashable]) -> bool:
    it = iter(haystack)
    return all(any(item == candidate for candidate in it) for item in needle)


def assert_faithful(label: str, truth: Sequence[Change], end_of_life: datetime | None,
                    recorded: Sequence[Hashable], window: tuple[datetime, datetime],
                    *, complete: bool = True,
                    significant_seconds: float = SIGNIFICANT_SECONDS) -> None:
    """Recorded states are real (in order) and, if ``complete``, include every lasting one."""
    runs = list(runs_in_window(truth, end_of_life, window))
    # Telnyx lists participants that left before the window, with their provider times: the
    # recorder rightly records them, so "real" is judged against the whole truth.
    visible = collapse([value for _, value in truth])
    lasting = collapse([value for value, overlap in runs if overlap >= significant_seconds])
    got = collapse(recorded)
    assert is_subsequence(got, visible), f"{label}: recorded {got} not in truth {visible}"
    if complete:
        assert is_subsequence(lasting, got), f"{label}: lasting {lasting} missing from {got}"


# --- reading back the history ------------------------------------------------------------------

def history(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        conferences = {(c.account, c.conference_id): c
                       for c in conn.execute(select(Conference)).all()}
        transitions: dict[int, list[Any]] = {}
        for t in conn.execute(select(StatusTransition).order_by(StatusTransition.seq)).all():
            transitions.setdefault(t.conference_pk, []).append(t)
        members = {(m.conference_pk, m.member_id): m for m in conn.execute(select(Member)).all()}
        events: dict[int, list[Any]] = {}
        for e in conn.execute(select(MemberEvent).order_by(MemberEvent.seq)).all():
            events.setdefault(e.member_pk, []).append(e)
    return {"conferences": conferences, "transitions": transitions, "members": members,
            "events": events}


def member_sequences(events: Sequence[Any]) -> dict[str, list[Hashable]]:
    """Presence, mute and hold values in recorded order, starting from the join detail (flags
    are None while the member is away)."""
    seqs: dict[str, list[Hashable]] = {"present": [], "muted": [], "on_hold": []}
    flag_kinds = {"muted": ("muted", True), "unmuted": ("muted", False),
                  "held": ("on_hold", True), "unheld": ("on_hold", False)}
    for event in events:
        if event.kind in ("joined", "rejoined"):
            seqs["present"].append(True)
            detail = event.detail or {}
            for flag in ("muted", "on_hold"):
                if detail.get(flag) is not None:
                    seqs[flag].append(detail[flag])
        elif event.kind == "left":
            seqs["present"].append(False)
            seqs["muted"].append(None)
            seqs["on_hold"].append(None)
        elif event.kind in flag_kinds:
            flag, value = flag_kinds[event.kind]
            seqs[flag].append(value)
    return seqs


def truth_member_changes(conference: dict[str, Any], member_id: str
                         ) -> dict[str, list[Change]]:
    changes: dict[str, list[Change]] = {"present": [], "muted": [], "on_hold": []}
    for event in conference["member_events"]:
        if event["member_id"] != member_id:
            continue
        at = parse_time(event["at"])
        kind = event["kind"]
        if kind in ("joining", "joined"):
            changes["present"].append((at, True))
        elif kind == "left":
            changes["present"].append((at, False))
        # Flags mean something only while the member is there: None once it has left.
        changes["muted"].append((at, None if kind == "left" else event["muted"]))
        changes["on_hold"].append((at, None if kind == "left" else event["on_hold"]))
    return changes


def compare(engine: Engine, truth: dict[str, Any], window: tuple[datetime, datetime],
            *, complete: bool, expect_gone: bool = True,
            significant_seconds: float = SIGNIFICANT_SECONDS) -> dict[str, int]:
    """Assert the history is faithful to the truth; count what was compared.

    ``expect_gone=False`` when completed conferences stop being polled (the daemon retires
    them), so their later expiry into 404 is never seen. With ``complete``, every state that
    lasted ``significant_seconds`` inside the window must be recorded (default: two of this
    module's polling intervals; pass about two of yours)."""
    recorded = history(engine)
    counts = {"conferences": 0, "transitions": 0, "member_events": 0, "members": 0}
    for conf in truth["conferences"]:
        account = TELNYX if conf["provider"] == "telnyx" else BANDWIDTH
        gone_at = parse_time(conf["gone_at"]) if conf["gone_at"] else None
        status_changes = [(parse_time(c["at"]), c["to"]) for c in conf["status_changes"]]
        row = recorded["conferences"].get((account, conf["conference_id"]))
        visible = [v for v, overlap in runs_in_window(status_changes, gone_at, window)
                   if overlap >= significant_seconds]
        if row is None:
            assert not visible, f"{conf['conference_id']} never recorded, truth {visible}"
            continue
        counts["conferences"] += 1
        chain = recorded["transitions"].get(row.id, [])
        assert [t.seq for t in chain] == list(range(1, len(chain) + 1))
        assert all(t.from_status == prev.to_status for prev, t in itertools.pairwise(chain))
        counts["transitions"] += len(chain)
        label = f"{conf['provider']} {conf['conference_id']}"
        assert_faithful(f"{label} status", status_changes, gone_at,
                        [t.to_status for t in chain], window, complete=complete,
                        significant_seconds=significant_seconds)
        if row.status == "completed":
            assert row.completed_at == parse_time(conf["completed_at"]), label
            assert row.end_reason == conf["end_reason"], label
            if conf["provider"] == "bandwidth":
                assert row.end_reason is None
                assert row.completed_at_source == "provider"
            assert row.duration_seconds == pytest.approx(
                (row.completed_at - row.created_at).total_seconds())
        if complete and expect_gone and gone_at is not None and gone_at <= window[1] - timedelta(
                seconds=significant_seconds):
            assert row.gone_at is not None, f"{label} gone in truth, not recorded"
        for member in conf["members"]:
            mrow = recorded["members"].get((row.id, member["member_id"]))
            truth_changes = truth_member_changes(conf, member["member_id"])
            end_of_life = gone_at
            if mrow is None:
                lasting = [v for v, o in runs_in_window(truth_changes["present"], end_of_life,
                                                         window) if v and o >= significant_seconds]
                assert not (complete and lasting), f"{label} member {member['member_id']} missed"
                continue
            counts["members"] += 1
            events = recorded["events"].get(mrow.id, [])
            assert [e.seq for e in events] == list(range(1, len(events) + 1))
            counts["member_events"] += len(events)
            got = member_sequences(events)
            for key in ("present", "muted", "on_hold"):
                assert_faithful(f"{label} member {member['member_id']} {key}",
                                truth_changes[key], end_of_life, got[key], window,
                                complete=complete, significant_seconds=significant_seconds)
    return counts


@pytest.mark.anyio
async def test_history_matches_ground_truth(database_url: str) -> None:
    """Polling a lively world every interval records every lasting change and nothing else."""
    from poller.store.database import make_engine

    world = build_world(seed=11, faults=None)
    engine = make_engine(database_url)
    try:
        window = await run(world, Recorder(engine, clock=world.clock.now), seconds=3600)
        truth = ground_truth(world.sim, until_ms=world.sim.now_ms())
        counts = compare(engine, truth, window, complete=True)
    finally:
        engine.dispose()
    assert counts["conferences"] >= 12
    assert counts["transitions"] >= 30
    assert counts["member_events"] >= 100
    endings = {c["end_reason"] for c in truth["conferences"] if c["provider"] == "telnyx"}
    assert {"all_left", "host_left"} <= endings


@pytest.mark.anyio
async def test_faults_fabricate_nothing(tmp_path: Any) -> None:
    """With a fifth of requests failing, what is recorded is still true, ordered and unique."""
    from poller.store.database import make_engine
    from poller.store.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'faults.db'}"
    upgrade(url)
    rates = {kind: 0.2 / 6 for kind in FaultKind if kind is not FaultKind.SLOW}
    world = build_world(seed=5, faults=FaultConfig(rates=rates, seed=3))
    engine = make_engine(url)
    try:
        window = await run(world, Recorder(engine, clock=world.clock.now), seconds=2400)
        truth = ground_truth(world.sim, until_ms=world.sim.now_ms())
        counts = compare(engine, truth, window, complete=False)
        with engine.connect() as conn:
            kinds = set(conn.exec_driver_sql("select distinct kind from poll_error").scalars())
    finally:
        engine.dispose()
    assert counts["transitions"] >= 20
    assert {"rate_limited", "server_error", "network", "bad_response"} <= kinds
