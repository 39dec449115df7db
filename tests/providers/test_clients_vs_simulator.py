"""The real provider clients against the simulator: every mapped field and every error path.

The clients talk HTTP to the simulator over ``httpx.ASGITransport`` (a real uvicorn server for
the one fault that needs real sockets and real time: a slow answer). Expected values are built
here from the simulator's timelines — the precomputed lives its JSON is rendered from — not from
the JSON itself, so the mapping of ``docs/providers.md`` is checked end to end: simulator JSON →
client → parser → model.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import aclosing, contextmanager
from dataclasses import dataclass, fields, replace
from datetime import timedelta
from types import MappingProxyType
from typing import Any

import httpx
import pytest
import uvicorn

from poller.config import ApiKeyCredentials, BasicCredentials, Credentials, OAuth2Credentials
from poller.errors import (
    AuthFailed,
    BadResponse,
    NetworkError,
    NotFound,
    ProviderError,
    RateLimited,
    ServerError,
    Timeout,
)
from poller.model import (
    ConferenceState,
    ConferenceStatus,
    MemberState,
    Observation,
    Provider,
    TargetKey,
)
from poller.providers import (
    HttpSettings,
    ProviderClient,
    build_client,
)
from poller.providers.deferred import DeferredObservation
from poller.simulator import Credentials as SimCredentials
from poller.simulator import (
    FaultConfig,
    FaultKind,
    ScenarioConfig,
    Simulator,
    VirtualClock,
    create_app,
)
from poller.simulator.bandwidth_api import CONFERENCE_EVENT_URL
from poller.simulator.telnyx_api import HOSTED_REGION, TelnyxApi
from poller.simulator.timeline import ConferenceTimeline

SIM = "http://sim"
TELNYX = "telnyx"
BASIC = "bandwidth-basic"
OAUTH2 = "bandwidth-oauth2"
CLIENTS = (TELNYX, BASIC, OAUTH2)
ACCOUNT = {TELNYX: "telnyx-sim", BASIC: "bandwidth-sim", OAUTH2: "bandwidth-sim"}
RETRY_AFTER_SECONDS = 7
SAMPLE_SECONDS = (0, 420, 900, 1500, 2100, 2700, 3300)
"""Virtual times (after the epoch) at which every conference is fetched."""


class RecordingTransport(httpx.AsyncBaseTransport):
    """Passes requests to ``inner`` and notes ``(method, path, status)`` of each exchange."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.exchanges: list[tuple[str, str, int]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        self.exchanges.append((request.method, request.url.path, response.status_code))
        return response


def make_client(kind: str, sim: Simulator, transport: httpx.AsyncBaseTransport | None, *,
                base_url: str = SIM, secret: str | None = None, account_id: str | None = None,
                clock: Any = None, settings: HttpSettings | None = None) -> ProviderClient:
    """A real client of ``kind`` for the simulator's account; ``secret`` replaces the key,
    password or client secret, ``account_id`` the Bandwidth account."""
    creds = sim.credentials
    credentials: Credentials
    if kind == TELNYX:
        credentials = ApiKeyCredentials(secret or creds.telnyx_api_key)
    elif kind == BASIC:
        credentials = BasicCredentials(creds.bandwidth_username,
                                       secret or creds.bandwidth_password)
    else:
        credentials = OAuth2Credentials(creds.bandwidth_client_id,
                                        secret or creds.bandwidth_client_secret,
                                        token_url=f"{base_url}/api/v1/oauth2/token")
    telnyx = kind == TELNYX
    return build_client(
        Provider.TELNYX if telnyx else Provider.BANDWIDTH,
        account=ACCOUNT[kind],
        credentials=credentials,
        base_url=f"{base_url}/v2" if telnyx else f"{base_url}/api/v2",
        account_id=None if telnyx else (account_id or creds.bandwidth_account_id),
        settings=settings,
        transport=transport,
        clock=clock or sim.clock.now,
    )


def target_of(kind: str, life: ConferenceTimeline, *, region: bool = True) -> TargetKey:
    """The target polling ``life`` (a Telnyx one names its region unless ``region=False``)."""
    if kind == TELNYX:
        return TargetKey(Provider.TELNYX, ACCOUNT[kind], life.conference_id,
                         life.region if region else None)
    return TargetKey(Provider.BANDWIDTH, ACCOUNT[kind], life.conference_id)


# --- what the timelines say the clients must see ---------------------------------------------

def expected_telnyx(sim: Simulator, life: ConferenceTimeline, at_ms: int
                    ) -> tuple[ConferenceState, tuple[MemberState, ...]]:
    """The conference and participants a Telnyx poll at ``at_ms`` must produce."""
    status = life.status_at(at_ms)
    completed = status is ConferenceStatus.COMPLETED
    ended_by = life.ended_by if completed else None
    conference = ConferenceState(
        conference_id=life.conference_id,
        status=status.value,
        provider_status=status.value,
        name=life.name,
        region=HOSTED_REGION[life.region or "US"],
        created_at=sim.to_datetime(life.created_ms),
        updated_at=sim.to_datetime(life.updated_ms_at(at_ms)),
        expires_at=sim.to_datetime(life.created_ms) + timedelta(
            seconds=sim.scenario.telnyx_max_duration_seconds),
        completed_at=None,
        end_reason=life.end_cause.value if completed else None,
        ended_by_call_control_id=ended_by.call_id if ended_by else None,
        ended_by_call_session_id=ended_by.call_session_id if ended_by else None,
        connection_id=TelnyxApi(sim).connection_id,
        record_type="conference",
    )
    members = []
    for member in life.listed_members_at(at_ms):
        snapshot = member.snapshot_at(at_ms)
        assert snapshot is not None
        members.append(MemberState(
            member_id=member.member_id,
            call_control_id=member.call_id,
            call_leg_id=member.call_leg_id,
            status=snapshot.status.value,
            muted=snapshot.muted,
            on_hold=snapshot.on_hold,
            coaching=tuple(snapshot.coaching or ()),
            end_conference_on_exit=member.end_conference_on_exit,
            soft_end_conference_on_exit=member.soft_end_conference_on_exit,
            created_at=sim.to_datetime(member.joined_ms),
            updated_at=sim.to_datetime(snapshot.updated_ms),
        ))
    return conference, tuple(members)


def expected_bandwidth(sim: Simulator, life: ConferenceTimeline, at_ms: int
                       ) -> tuple[ConferenceState, tuple[MemberState, ...]]:
    """The conference and active members a Bandwidth poll at ``at_ms`` must produce."""
    completed = at_ms >= life.ended_ms
    active = life.active_members_at(at_ms)
    # docs/providers.md "Status derivation": completedTime, else any active member, else init.
    status = (ConferenceStatus.COMPLETED if completed
              else ConferenceStatus.IN_PROGRESS if active else ConferenceStatus.INIT)
    conference = ConferenceState(
        conference_id=life.conference_id,
        status=status.value,
        name=life.name,
        created_at=sim.to_datetime(life.created_ms),
        completed_at=sim.to_datetime(life.ended_ms) if completed else None,
        tag=life.tag,
        event_url=CONFERENCE_EVENT_URL,
        event_method="POST",
    )
    members_url = (f"{SIM}/api/v2/accounts/{sim.credentials.bandwidth_account_id}"
                   f"/conferences/{life.conference_id}/members")
    members = []
    for member in active:
        snapshot = member.snapshot_at(at_ms)
        assert snapshot is not None
        members.append(MemberState(
            member_id=member.call_id,
            call_control_id=member.call_id,
            muted=snapshot.muted,
            on_hold=snapshot.on_hold,
            coaching=tuple(snapshot.coaching) if snapshot.coaching is not None else None,
            member_url=f"{members_url}/{member.call_id}",
        ))
    return conference, tuple(members)


def reported(states: list[ConferenceState] | list[MemberState]) -> set[str]:
    """Names of the fields that held a value (not ``None``) in at least one state."""
    return {f.name for state in states for f in fields(state)
            if f.name != "raw" and getattr(state, f.name) is not None}


# docs/providers.md: the fields each provider reports (the rest are always None).
TELNYX_CONFERENCE_FIELDS = {
    "conference_id", "status", "provider_status", "name", "region", "created_at",
    "updated_at", "expires_at", "end_reason", "ended_by_call_control_id",
    "ended_by_call_session_id", "connection_id", "record_type"}
TELNYX_MEMBER_FIELDS = {
    "member_id", "call_control_id", "call_leg_id", "status", "muted", "on_hold", "coaching",
    "end_conference_on_exit", "soft_end_conference_on_exit", "created_at", "updated_at"}
BANDWIDTH_CONFERENCE_FIELDS = {
    "conference_id", "status", "name", "created_at", "completed_at", "event_url",
    "event_method", "tag"}
BANDWIDTH_MEMBER_FIELDS = {
    "member_id", "call_control_id", "muted", "on_hold", "coaching", "member_url"}


@dataclass
class Seen:
    """What one client observed over the whole run."""

    conferences: list[ConferenceState]
    members: list[MemberState]
    not_found: int = 0


async def poll_everything(kind: str, sim: Simulator, clock: VirtualClock,
                          transport: httpx.AsyncBaseTransport) -> Seen:
    """Fetch every conference of ``kind``'s provider at every sample time, comparing each
    observation with the timeline."""
    provider = Provider.TELNYX if kind == TELNYX else Provider.BANDWIDTH
    expect = expected_telnyx if kind == TELNYX else expected_bandwidth
    lives = list(sim.timelines(provider))
    busiest = max(lives, key=lambda life: len(life.members))
    # Also brief states: a conference just created (init), a participant just appeared
    # (Telnyx "joining").
    moments = [round(s * 1000) for s in SAMPLE_SECONDS] + [busiest.created_ms,
                                                           busiest.members[1].joined_ms]
    seen = Seen([], [])
    async with aclosing(make_client(kind, sim, transport)) as client:
        for at_ms in moments:
            clock.set(sim.to_datetime(at_ms))
            for life in lives:
                target = target_of(kind, life)
                if not life.exists_at(at_ms):
                    with pytest.raises(NotFound) as caught:
                        await client.fetch(target)
                    assert caught.value.provider_code == ("90058" if kind == TELNYX
                                                          else "validation")
                    seen.not_found += 1
                    continue
                observation = await client.fetch(target)
                assert isinstance(observation, Observation)
                conference, members = expect(sim, life, at_ms)
                where = f"{kind} {life.conference_id} at {at_ms} ms"
                assert observation.conference == conference, where
                assert observation.members == members, where
                assert observation.members_complete, where
                assert observation.warnings == (), where
                assert observation.observed_at == clock.now()
                if kind == TELNYX:
                    assert observation.conference.raw == TelnyxApi(sim).conference_json(
                        life, at_ms)
                seen.conferences.append(observation.conference)
                seen.members.extend(observation.members)
                # The same bodies again: not parsed until read, then the same observation.
                again = await client.fetch(target)
                assert isinstance(again, DeferredObservation), where
                assert (again.parsed, again.status) == (False, conference.status), where
                assert again == observation, where
    return seen


@pytest.mark.anyio
@pytest.mark.parametrize("kind", CLIENTS)
async def test_every_mapped_field_matches_the_timeline(kind: str) -> None:
    """Each conference, fetched by the real client at several moments, is what the simulated
    world holds then, field by field; every field the provider reports is seen set."""
    clock = VirtualClock()
    sim = Simulator(seed=11, clock=clock, scenario=ScenarioConfig.lively(12))
    seen = await poll_everything(kind, sim, clock, httpx.ASGITransport(app=create_app(sim)))

    telnyx = kind == TELNYX
    assert reported(seen.conferences) == (TELNYX_CONFERENCE_FIELDS if telnyx
                                          else BANDWIDTH_CONFERENCE_FIELDS)
    assert reported(seen.members) == (TELNYX_MEMBER_FIELDS if telnyx
                                      else BANDWIDTH_MEMBER_FIELDS)
    assert {c.status for c in seen.conferences} == {"init", "in_progress", "completed"}
    assert seen.not_found > 0
    for flag in ("muted", "on_hold"):
        assert {getattr(m, flag) for m in seen.members} == {True, False}
    if telnyx:
        assert {m.status for m in seen.members} == {"joining", "joined", "left"}
        assert {c.end_reason for c in seen.conferences} > {None}
        assert any(m.coaching for m in seen.members)
    else:
        assert {None, ()} < {m.coaching for m in seen.members}  # null, [] and lists seen


@pytest.mark.anyio
@pytest.mark.parametrize("kind", CLIENTS)
async def test_equal_body_digests_are_equal_contents(kind: str) -> None:
    """``Observation.body_digest`` (what lets the recorder take a hash instead of computing
    it): a conference fetched twice at one moment has one digest; over the run, each target's
    digests and content hashes go one to one, and both change as the conference does."""
    clock = VirtualClock()
    sim = Simulator(seed=11, clock=clock, scenario=ScenarioConfig.lively(12))
    provider = Provider.TELNYX if kind == TELNYX else Provider.BANDWIDTH
    lives = list(sim.timelines(provider))
    pairs: set[tuple[str, bytes, str]] = set()
    async with aclosing(make_client(kind, sim, httpx.ASGITransport(app=create_app(sim)))
                        ) as client:
        for seconds in SAMPLE_SECONDS:
            clock.set(sim.to_datetime(seconds * 1000))
            for life in lives:
                if life.exists_at(seconds * 1000):
                    first = await client.fetch(target_of(kind, life))
                    again = await client.fetch(target_of(kind, life))
                    assert first.body_digest is not None
                    assert again.body_digest == first.body_digest
                    assert again.content_hash() == first.content_hash()
                    pairs.add((life.conference_id, first.body_digest, first.content_hash()))
    by_digest = {(conference, digest) for conference, digest, _ in pairs}
    by_hash = {(conference, hash_) for conference, _, hash_ in pairs}
    assert len(by_digest) == len(by_hash) == len(pairs)  # one to one, per conference
    assert len(pairs) > len({conference for conference, _, _ in pairs})  # some changed


# --- error paths ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ErrorCase:
    """One way a poll fails, and the error the caller must get."""

    client: str
    error: type[ProviderError]
    http_status: int | None
    code: str | None
    fault: FaultKind | None = None
    secret: str | None = None
    account_id: str | None = None
    conference: str = "live"
    """``live``, ``unknown`` (an ID the world never holds) or ``no-region`` (a non-US Telnyx
    conference asked for without its region)."""
    retry_after_seconds: float | None = None
    excerpt_starts: str | None = None


def _fault_cases() -> Iterator[Any]:
    for kind in CLIENTS:
        telnyx = kind == TELNYX
        retry = float(RETRY_AFTER_SECONDS)
        body_start = '{"data":' if telnyx else '{"id":'
        for fault, case in [
            # Telnyx says when to retry in x-ratelimit-reset, Bandwidth in Retry-After.
            (FaultKind.RATE_LIMITED, ErrorCase(kind, RateLimited, 429,
                                               "10011" if telnyx else "error",
                                               retry_after_seconds=retry)),
            (FaultKind.SERVER_ERROR, ErrorCase(kind, ServerError, 500,
                                               "10007" if telnyx else "internal-server-error")),
            (FaultKind.UNAVAILABLE, ErrorCase(kind, ServerError, 503,
                                              "10007" if telnyx else "system-overloaded",
                                              retry_after_seconds=None if telnyx else retry)),
            (FaultKind.RESET, ErrorCase(kind, NetworkError, None, None)),
            (FaultKind.MALFORMED, ErrorCase(kind, BadResponse, 200, None,
                                            excerpt_starts="<html><head><title>502")),
            (FaultKind.TRUNCATED, ErrorCase(kind, BadResponse, 200, None,
                                            excerpt_starts=body_start)),
        ]:
            yield pytest.param(replace(case, fault=fault), id=f"{kind}-{fault.value}")


ERROR_CASES = [
    pytest.param(ErrorCase(TELNYX, AuthFailed, 401, "10009", secret="KEYwrong"),
                 id="telnyx-wrong-key"),
    pytest.param(ErrorCase(BASIC, AuthFailed, 401, "authentication-error", secret="wrong"),
                 id="bandwidth-basic-wrong-password"),
    pytest.param(ErrorCase(OAUTH2, AuthFailed, 401, "invalid_client", secret="wrong"),
                 id="bandwidth-oauth2-wrong-client-secret"),
    pytest.param(ErrorCase(TELNYX, AuthFailed, 403, "10010",
                           secret="KEYSIMULATOR0000FORBIDDEN"), id="telnyx-forbidden-key"),
    pytest.param(ErrorCase(BASIC, AuthFailed, 403, "authorization-error", account_id="1234567"),
                 id="bandwidth-basic-other-account"),
    pytest.param(ErrorCase(OAUTH2, AuthFailed, 403, "authorization-error",
                           account_id="1234567"), id="bandwidth-oauth2-other-account"),
    pytest.param(ErrorCase(TELNYX, NotFound, 404, "90058", conference="unknown"),
                 id="telnyx-unknown-id"),
    pytest.param(ErrorCase(TELNYX, NotFound, 404, "90058", conference="no-region"),
                 id="telnyx-region-not-named"),
    pytest.param(ErrorCase(BASIC, NotFound, 404, "validation", conference="unknown"),
                 id="bandwidth-basic-unknown-id"),
    pytest.param(ErrorCase(OAUTH2, NotFound, 404, "validation", conference="unknown"),
                 id="bandwidth-oauth2-unknown-id"),
    *_fault_cases(),
]


def _target_for(case: ErrorCase, sim: Simulator, clock: VirtualClock) -> TargetKey:
    provider = Provider.TELNYX if case.client == TELNYX else Provider.BANDWIDTH
    if case.conference == "unknown":
        unknown = ("3fa85f64-5717-4562-b3fc-2c963f66afa6" if case.client == TELNYX
                   else "conf-00000000-00000000-0000-0000-0000-000000000000")
        return TargetKey(provider, ACCOUNT[case.client], unknown)
    wanted_us = case.conference != "no-region"
    life = next(life for life in sim.timelines(provider)
                if provider is Provider.BANDWIDTH or (life.region == "US") == wanted_us)
    clock.set(sim.to_datetime(life.in_progress_ms))
    return target_of(case.client, life, region=wanted_us)


@pytest.mark.anyio
@pytest.mark.parametrize("case", ERROR_CASES)
async def test_every_error_path_reaches_the_caller(case: ErrorCase) -> None:
    """Each refusal and each injected fault becomes the documented error, with its status,
    provider code, wait and excerpt, and the poll's context."""
    clock = VirtualClock()
    rates = MappingProxyType({case.fault: 1.0} if case.fault else {})
    sim = Simulator(seed=5, clock=clock, scenario=ScenarioConfig.lively(6),
                    faults=FaultConfig(rates=rates, retry_after_seconds=RETRY_AFTER_SECONDS))
    target = _target_for(case, sim, clock)
    client = make_client(case.client, sim, httpx.ASGITransport(app=create_app(sim)),
                         secret=case.secret, account_id=case.account_id)
    async with aclosing(client):
        with pytest.raises(ProviderError) as caught:
            await client.fetch(target)
    error = caught.value
    assert type(error) is case.error, repr(error)
    assert (error.http_status, error.provider_code) == (case.http_status, case.code)
    assert error.retry_after_seconds == case.retry_after_seconds
    assert (error.provider, error.account, error.conference_id) == (
        target.provider.value, target.account, target.conference_id)
    if case.excerpt_starts is not None:
        assert error.excerpt is not None
        assert error.excerpt.startswith(case.excerpt_starts), error.excerpt
    if case.fault is FaultKind.RESET:
        assert "simulated connection reset" in error.message
    if case.client == OAUTH2 and case.secret is not None:
        assert error.message.startswith("token endpoint")


@pytest.mark.anyio
async def test_oauth2_token_expired_by_the_provider_is_renewed_once() -> None:
    """When the simulator has expired a token the client still holds as fresh, the 401 makes
    the client fetch one new token and retry once, and the poll succeeds."""
    lifetime_seconds = 600
    sim_clock = VirtualClock()
    client_clock = VirtualClock()
    sim = Simulator(seed=11, clock=sim_clock, scenario=ScenarioConfig.lively(6),
                    credentials=SimCredentials(token_lifetime_seconds=lifetime_seconds))
    life = next(life for life in sim.timelines(Provider.BANDWIDTH)
                if life.exists_at(life.created_ms + (lifetime_seconds + 1) * 1000))
    sim_clock.set(sim.to_datetime(life.created_ms))
    transport = RecordingTransport(httpx.ASGITransport(app=create_app(sim)))
    target = target_of(OAUTH2, life)
    token_path, conference_path = "/api/v1/oauth2/token", (
        f"/api/v2/accounts/{sim.credentials.bandwidth_account_id}/conferences/"
        f"{life.conference_id}")
    async with aclosing(make_client(OAUTH2, sim, transport, clock=client_clock.now)) as client:
        await client.fetch(target)
        # The provider's clock passes the token's lifetime; the client's moves one minute,
        # short of renewing (lifetime less its 60 s margin): only the 401 can make it renew.
        sim_clock.advance(lifetime_seconds + 1)
        client_clock.advance(60)
        observation = await client.fetch(target)
    assert observation.conference.conference_id == life.conference_id
    assert transport.exchanges == [
        ("POST", token_path, 200), ("GET", conference_path, 200),
        ("GET", conference_path, 401), ("POST", token_path, 200), ("GET", conference_path, 200),
    ]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(sim)),
                                 base_url=SIM) as introspection:
        stats = (await introspection.get("/_sim/stats")).json()
    assert stats["tokens_issued"] == 2


# --- a slow answer, over real sockets -----------------------------------------------------------

@contextmanager
def uvicorn_serving(sim: Simulator) -> Iterator[str]:
    """Serve ``sim`` with uvicorn on a free local port in a thread; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    config = uvicorn.Config(create_app(sim), log_level="critical", lifespan="off",
                            timeout_graceful_shutdown=0)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])),
                              daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive(), "uvicorn stopped"
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = server.force_exit = True
        thread.join(timeout=10)
        sock.close()
    assert not thread.is_alive()


@pytest.mark.anyio
@pytest.mark.parametrize("kind", [TELNYX, BASIC])
async def test_slow_answer_is_a_timeout(kind: str) -> None:
    """An answer held back past the client's read timeout is ``Timeout``, raised at the
    timeout rather than when the answer finally comes."""
    clock = VirtualClock()
    sim = Simulator(seed=5, clock=clock, scenario=ScenarioConfig.lively(4),
                    faults=FaultConfig(rates=MappingProxyType({FaultKind.SLOW: 1.0}),
                                       slow_delay_seconds=3.0))
    provider = Provider.TELNYX if kind == TELNYX else Provider.BANDWIDTH
    life = next(sim.timelines(provider))
    clock.set(sim.to_datetime(life.in_progress_ms))
    settings = HttpSettings(read_timeout_seconds=0.5)
    with uvicorn_serving(sim) as url:
        client = make_client(kind, sim, None, base_url=url, settings=settings)
        async with aclosing(client):
            started = time.monotonic()
            with pytest.raises(Timeout) as caught:
                await client.fetch(target_of(kind, life))
            waited = time.monotonic() - started
    assert 0.5 <= waited < 2.5
    assert "ReadTimeout" in caught.value.message
    assert caught.value.conference_id == life.conference_id
