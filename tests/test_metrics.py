"""Metrics from tick reports and observer calls; the /metrics, /healthz and /readyz endpoints."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from databases import sqlite_url
from factories import T0, telnyx_target
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine
from starlette.applications import Starlette

from poller.config import PollingSettings
from poller.daemon.endpoints import (
    Readiness,
    build_server,
    create_observability_app,
    max_tick_age_seconds,
)
from poller.daemon.metrics import PollerMetrics, observe_tick, status_class
from poller.errors import ConfigError
from poller.polling.report import TickReport
from poller.store.database import make_engine
from poller.store.targets import count_targets, sync_targets


def report(**fields: object) -> TickReport:
    """A TickReport with the given fields (Counters given as dicts)."""
    built = TickReport()
    for name, value in fields.items():
        setattr(built, name, Counter(value) if isinstance(value, dict) else value)
    return built


def value(metrics: PollerMetrics, name: str, **labels: str) -> float:
    """The current value of one sample (0 when it was never set)."""
    sample = metrics.registry.get_sample_value(name, labels)
    return 0.0 if sample is None else sample


@pytest.fixture
def metrics() -> PollerMetrics:
    """Metrics on a private registry, with the clock fixed at T0."""
    return PollerMetrics(clock=lambda: T0)


# --- Counters from a TickReport ----------------------------------------------------------------

def test_polls_counted_by_provider_and_outcome(metrics: PollerMetrics) -> None:
    """Per-provider reports split polls into ok (changed), unchanged and each failure kind."""
    telnyx = report(polled=6, ok=5, unchanged=3, failed={"timeout": 1})
    bandwidth = report(polled=3, ok=1, failed={"rate_limited": 1, "auth": 1})
    whole = report(claimed=10, polled=9, ok=6, unchanged=3, deferred=1,
                   failed={"timeout": 1, "rate_limited": 1, "auth": 1})
    observe_tick(metrics, whole, by_provider={"telnyx": telnyx, "bandwidth": bandwidth})
    assert value(metrics, "poller_polls_total", provider="telnyx", outcome="ok") == 2
    assert value(metrics, "poller_polls_total", provider="telnyx", outcome="unchanged") == 3
    assert value(metrics, "poller_polls_total", provider="telnyx", outcome="timeout") == 1
    assert value(metrics, "poller_polls_total", provider="bandwidth", outcome="ok") == 1
    assert value(metrics, "poller_polls_total", provider="bandwidth", outcome="auth") == 1
    assert value(metrics, "poller_polls_total", provider="bandwidth",
                 outcome="rate_limited") == 1
    assert value(metrics, "poller_targets_claimed_total") == 10
    assert value(metrics, "poller_polls_deferred_total") == 1


def test_polls_without_breakdown_count_as_unknown_provider(metrics: PollerMetrics) -> None:
    """Without a per-provider breakdown every poll is counted under provider="unknown"."""
    observe_tick(metrics, report(polled=4, ok=3, unchanged=1, failed={"network": 1}))
    assert value(metrics, "poller_polls_total", provider="unknown", outcome="ok") == 2
    assert value(metrics, "poller_polls_total", provider="unknown", outcome="unchanged") == 1
    assert value(metrics, "poller_polls_total", provider="unknown", outcome="network") == 1


def test_counters_add_up_over_ticks(metrics: PollerMetrics) -> None:
    """Two ticks add their counts; nothing is reset between ticks."""
    for _ in range(2):
        observe_tick(metrics, report(polled=2, ok=2, transitions=1, retired={"completed": 1}))
    assert value(metrics, "poller_polls_total", provider="unknown", outcome="ok") == 4
    assert value(metrics, "poller_targets_retired_total", reason="completed") == 2
    assert value(metrics, "poller_ticks_total", result="ok") == 2


def test_transitions_and_member_events_by_label(metrics: PollerMetrics) -> None:
    """Breakdowns label transitions by to_status and member events by kind."""
    observe_tick(metrics, report(transitions=3, member_events=4),
                 transitions_by_status={"in_progress": 2, "completed": 1},
                 member_events_by_kind={"joined": 3, "left": 1})
    assert value(metrics, "poller_status_transitions_total", to_status="in_progress") == 2
    assert value(metrics, "poller_status_transitions_total", to_status="completed") == 1
    assert value(metrics, "poller_member_events_total", kind="joined") == 3
    assert value(metrics, "poller_member_events_total", kind="left") == 1


def test_transitions_without_breakdown_count_as_unknown(metrics: PollerMetrics) -> None:
    """Without breakdowns the report's totals go under the label "unknown"."""
    observe_tick(metrics, report(transitions=2, member_events=5))
    assert value(metrics, "poller_status_transitions_total", to_status="unknown") == 2
    assert value(metrics, "poller_member_events_total", kind="unknown") == 5


def test_successful_tick_sets_last_tick_time(metrics: PollerMetrics) -> None:
    """A tick that recorded its results sets the last-successful-tick gauge (unix seconds)."""
    at = T0 + timedelta(seconds=5)
    observe_tick(metrics, report(), at=at)
    assert metrics.last_successful_tick_at == at
    assert value(metrics, "poller_last_successful_tick_timestamp_seconds") == at.timestamp()


def test_store_error_tick_is_not_successful(metrics: PollerMetrics) -> None:
    """A tick that could not record counts as store_error and leaves the last tick time alone."""
    observe_tick(metrics, report(polled=1, ok=1, store_error="database is locked"))
    assert metrics.last_successful_tick_at is None
    assert value(metrics, "poller_ticks_total", result="store_error") == 1
    assert value(metrics, "poller_ticks_total", result="ok") == 0
    assert value(metrics, "poller_polls_total", provider="unknown", outcome="ok") == 1


def test_registries_are_private() -> None:
    """Two PollerMetrics never share counters (each has its own registry)."""
    first, second = PollerMetrics(), PollerMetrics(CollectorRegistry())
    first.observe_rate_limit_wait("telnyx", 1.0)
    assert value(second, "poller_rate_limit_waits_total", provider="telnyx") == 0


# --- Observer calls ----------------------------------------------------------------------------

@pytest.mark.parametrize(("status_code", "expected"), [
    (200, "2xx"), (204, "2xx"), (301, "3xx"), (404, "4xx"), (429, "4xx"), (503, "5xx"),
    (None, "none"), (0, "none"), (999, "none"),
])
def test_status_class(status_code: int | None, expected: str) -> None:
    """Status codes map to their class; no response (or nonsense) is "none"."""
    assert status_class(status_code) == expected


def test_observer_methods_move_their_metrics(metrics: PollerMetrics) -> None:
    """HTTP responses, rate-limit waits and poll latency are counted by provider."""
    metrics.observe_http_response("telnyx", 200)
    metrics.observe_http_response("telnyx", 503)
    metrics.observe_http_response("telnyx", None)
    metrics.observe_rate_limit_wait("bandwidth", 0.25)
    metrics.observe_rate_limit_wait("bandwidth", 0.5)
    metrics.observe_poll_seconds("telnyx", 0.2)
    assert value(metrics, "poller_http_responses_total", provider="telnyx",
                 status_class="5xx") == 1
    assert value(metrics, "poller_http_responses_total", provider="telnyx",
                 status_class="none") == 1
    assert value(metrics, "poller_rate_limit_waits_total", provider="bandwidth") == 2
    assert value(metrics, "poller_rate_limit_wait_seconds_total", provider="bandwidth") == 0.75
    assert value(metrics, "poller_poll_duration_seconds_count", provider="telnyx") == 1
    assert value(metrics, "poller_poll_duration_seconds_bucket", provider="telnyx",
                 le="0.25") == 1


def test_lateness_histogram(metrics: PollerMetrics) -> None:
    """Poll lateness goes into its own histogram by provider; early polls count as on time."""
    for seconds in (0.03, 0.6, 2.0, -0.5):
        metrics.observe_poll_lateness("bandwidth", seconds)
    assert value(metrics, "poller_poll_lateness_seconds_count", provider="bandwidth") == 4
    assert value(metrics, "poller_poll_lateness_seconds_sum", provider="bandwidth") == 2.63
    assert value(metrics, "poller_poll_lateness_seconds_bucket", provider="bandwidth",
                 le="0.05") == 2
    assert value(metrics, "poller_poll_lateness_seconds_bucket", provider="bandwidth",
                 le="1.0") == 3


# --- Targets gauge -----------------------------------------------------------------------------

def test_count_targets_groups_by_state_and_reason(engine: Engine) -> None:
    """count_targets returns active and retired-by-reason counts from poll_target."""
    a, b, c = (telnyx_target(f"conf-{i}") for i in range(3))
    sync_targets(engine, [a, b, c], T0)
    sync_targets(engine, [a], T0)
    assert count_targets(engine) == {("active", ""): 1, ("retired", "removed"): 2}


def test_set_targets_zeroes_missing_label_sets(metrics: PollerMetrics) -> None:
    """A (state, reason) that disappears from the counts is exported as 0, not dropped."""
    metrics.set_targets({("active", ""): 3, ("retired", "paused_forever"): 1})
    metrics.set_targets({("active", ""): 2})
    assert value(metrics, "poller_targets", state="active", reason="") == 2
    assert metrics.registry.get_sample_value(
        "poller_targets", {"state": "retired", "reason": "paused_forever"}) == 0


# --- Endpoints ---------------------------------------------------------------------------------

async def get(app: Starlette, path: str) -> httpx.Response:
    """GET ``path`` from the ASGI ``app`` in process."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://poller") as client:
        return await client.get(path)


@pytest.fixture
def fresh_tick(metrics: PollerMetrics) -> PollerMetrics:
    """Metrics whose last successful tick was at T0."""
    observe_tick(metrics, report(), at=T0)
    return metrics


def readiness(engine: Engine, metrics: PollerMetrics, now: datetime = T0) -> Readiness:
    """Readiness on ``engine`` with a 30 s freshness bound and the clock at ``now``."""
    return Readiness(engine, lambda: metrics.last_successful_tick_at, 30.0, clock=lambda: now)


@pytest.fixture
def missing_engine(tmp_path: Path) -> Iterator[Engine]:
    """An engine on a SQLite file in a directory that does not exist (cannot be opened)."""
    eng = make_engine(sqlite_url(tmp_path / "no-such-dir" / "poller.db"))
    yield eng
    eng.dispose()


@pytest.fixture
def unmigrated_engine(tmp_path: Path) -> Iterator[Engine]:
    """An engine on an empty, never-migrated SQLite file."""
    eng = make_engine(sqlite_url(tmp_path / "empty.db"))
    yield eng
    eng.dispose()


@pytest.mark.anyio
async def test_metrics_endpoint_serves_prometheus_text(fresh_tick: PollerMetrics,
                                                       engine: Engine) -> None:
    """/metrics parses as Prometheus text, with counters and DB-refreshed target gauges."""
    sync_targets(engine, [telnyx_target("a"), telnyx_target("b")], T0)
    fresh_tick.observe_http_response("telnyx", 200)
    response = await get(create_observability_app(fresh_tick, None, engine=engine), "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(response.text)
               for s in family.samples}
    assert samples[("poller_http_responses_total",
                    (("provider", "telnyx"), ("status_class", "2xx")))] == 1
    assert samples[("poller_targets", (("reason", ""), ("state", "active")))] == 2
    assert samples[("poller_targets", (("reason", "gone"), ("state", "retired")))] == 0
    assert samples[("poller_last_successful_tick_timestamp_seconds", ())] == T0.timestamp()


@pytest.mark.anyio
async def test_metrics_endpoint_survives_unavailable_database(
        metrics: PollerMetrics, missing_engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    """A scrape with the database down still answers, logging why the gauge is stale."""
    response = await get(create_observability_app(metrics, None, engine=missing_engine),
                         "/metrics")
    assert response.status_code == 200
    assert "poller_ticks_total" in response.text
    assert "poller_targets not refreshed" in caplog.text


@pytest.mark.anyio
async def test_healthz_is_ok(metrics: PollerMetrics) -> None:
    """/healthz answers 200 whenever the process is serving."""
    response = await get(create_observability_app(metrics, None), "/healthz")
    assert (response.status_code, response.text) == (200, "ok\n")


@pytest.mark.anyio
async def test_endpoints_not_configured_are_absent(metrics: PollerMetrics) -> None:
    """An app built without metrics or readiness answers 404 on those paths."""
    app = create_observability_app(None, None)
    assert (await get(app, "/metrics")).status_code == 404
    assert (await get(app, "/readyz")).status_code == 404


@pytest.mark.anyio
async def test_readyz_ok_on_migrated_database_with_fresh_tick(fresh_tick: PollerMetrics,
                                                              engine: Engine) -> None:
    """/readyz is 200 when the database answers, is at head and a tick ran recently."""
    app = create_observability_app(None, readiness(engine, fresh_tick, T0 + timedelta(seconds=29)))
    response = await get(app, "/readyz")
    assert response.status_code == 200
    assert response.json() == {"ready": True, "failing": [],
                               "checks": {"database": "ok", "migrations": "ok", "tick": "ok",
                                          "spool": "ok"}}


@pytest.mark.anyio
async def test_readyz_503_when_tick_is_stale(fresh_tick: PollerMetrics, engine: Engine) -> None:
    """/readyz is 503 naming "tick" once the last successful tick is older than the bound."""
    app = create_observability_app(None, readiness(engine, fresh_tick, T0 + timedelta(seconds=31)))
    response = await get(app, "/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["tick"]
    assert "31 s ago" in body["checks"]["tick"]


@pytest.mark.anyio
async def test_readyz_503_before_first_tick(metrics: PollerMetrics, engine: Engine) -> None:
    """/readyz is 503 naming "tick" until a tick has recorded its results."""
    response = await get(create_observability_app(None, readiness(engine, metrics)), "/readyz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["tick"]


@pytest.mark.anyio
async def test_readyz_503_when_database_unreachable(fresh_tick: PollerMetrics,
                                                    missing_engine: Engine) -> None:
    """/readyz is 503 naming "database" (and so "migrations") when the DB cannot be opened."""
    app = create_observability_app(None, readiness(missing_engine, fresh_tick))
    response = await get(app, "/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["database", "migrations"]
    assert "readiness check" in body["checks"]["database"]


@pytest.mark.anyio
async def test_readyz_503_when_not_at_head(fresh_tick: PollerMetrics,
                                           unmigrated_engine: Engine) -> None:
    """/readyz is 503 naming "migrations" when the schema is not at the newest revision."""
    app = create_observability_app(None, readiness(unmigrated_engine, fresh_tick))
    response = await get(app, "/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["migrations"]
    assert "poller db upgrade" in body["checks"]["migrations"]


@pytest.mark.parametrize(("polling", "tick", "expected"), [
    (PollingSettings(), 1.0, 60.0),
    (PollingSettings(interval_seconds=60), 1.0, 180.0),
    (PollingSettings(connect_timeout_seconds=1, read_timeout_seconds=2), 5.0, 30.0),
    (PollingSettings(connect_timeout_seconds=1, read_timeout_seconds=2), 40.0, 120.0),
])
def test_max_tick_age_is_three_of_the_longest_period(polling: PollingSettings, tick: float,
                                                     expected: float) -> None:
    """The default bound is 3 × max(tick period, poll interval, connect + read timeout)."""
    assert max_tick_age_seconds(polling, tick) == expected


@pytest.mark.anyio
async def test_real_server_on_port_zero_keeps_signal_handlers(metrics: PollerMetrics) -> None:
    """uvicorn serves /healthz on a free port and leaves the process's signal handlers alone."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    server = build_server(create_observability_app(metrics, None), "127.0.0.1", 0)
    await asyncio.wait_for(server.start(), 10)
    try:
        assert {sig: signal.getsignal(sig) for sig in before} == before
        [(_host, port)] = server.addresses
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{port}/healthz")
        assert response.status_code == 200
    finally:
        await asyncio.wait_for(server.stop(), 10)
    assert {sig: signal.getsignal(sig) for sig in before} == before


@pytest.mark.anyio
async def test_real_server_address_in_use_is_a_config_error(metrics: PollerMetrics) -> None:
    """A port already taken fails start() with a ConfigError naming the setting."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = build_server(create_observability_app(metrics, None), "127.0.0.1", port,
                              key="metrics.listen")
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}") as caught:
            await asyncio.wait_for(server.start(), 10)
    assert caught.value.key == "metrics.listen"


def test_leases_taken_renewed_and_expired(metrics: PollerMetrics) -> None:
    """``poller_leases_total``: every event exported from the start; claims count as taken,
    taken-over ones also as expired; heartbeats add renewals."""
    for event in ("taken", "renewed", "expired"):
        assert metrics.registry.get_sample_value("poller_leases_total", {"event": event}) == 0
    observe_tick(metrics, report(claimed=7, taken_over=3, polled=7, ok=7))
    observe_tick(metrics, report(claimed=2, polled=2, ok=2))
    metrics.leases_renewed(5)
    metrics.leases_renewed(0)
    assert value(metrics, "poller_leases_total", event="taken") == 9
    assert value(metrics, "poller_leases_total", event="expired") == 3
    assert value(metrics, "poller_leases_total", event="renewed") == 5
