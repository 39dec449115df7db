"""A simulated world for daemon tests: simulators, a config naming their conferences, a poller.

Each provider can be served by its own ``Simulator`` (so faults hit one provider only); a
``HostRouter`` transport sends ``http://telnyx-sim`` and ``http://bandwidth-sim`` to them over
``httpx.ASGITransport``. One ``VirtualClock`` drives the simulators, the clients and the poller.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import Engine
from test_history_vs_truth import BANDWIDTH, TELNYX

from poller.app import App
from poller.config import Config, Credentials, parse_config, resolve_all_credentials
from poller.model import Provider
from poller.polling.pacing import Sleep
from poller.polling.poller import Poller
from poller.polling.report import TickReport
from poller.simulator import FaultConfig, ScenarioConfig, Simulator, VirtualClock, create_app
from poller.store.recorder import Recorder

TELNYX_HOST = "telnyx-sim"
BANDWIDTH_HOST = "bandwidth-sim"


class HostRouter(httpx.AsyncBaseTransport):
    """Routes each request to the transport of its host; ``down`` hosts refuse connections."""

    def __init__(self, routes: Mapping[str, httpx.AsyncBaseTransport]) -> None:
        self.routes = dict(routes)
        self.down: set[str] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if host in self.down:
            raise httpx.ConnectError("simulated outage", request=request)
        return await self.routes[host].handle_async_request(request)


@dataclass
class SimWorld:
    """Simulators, router, config and the virtual clock, ready to build a poller."""

    clock: VirtualClock
    telnyx: Simulator
    bandwidth: Simulator
    router: HostRouter
    config: Config
    environ: dict[str, str]
    sleeps: list[float] = field(default_factory=list)

    def credentials(self, config: Config | None = None) -> dict[str, Credentials]:
        """The credentials of ``config`` (default: the world's) from the world's environment."""
        return resolve_all_credentials(config or self.config, self.environ)

    def app(self, *, transport: httpx.AsyncBaseTransport | None = None,
            config: Config | None = None, sleep: Sleep | None = None) -> App:
        """An app on the virtual clock, its clients sending through ``transport`` (default:
        the router)."""
        config = config or self.config
        return App(config, self.credentials(config), transport=transport or self.router,
                   clock=self.clock.now, sleep=sleep or self.sleep)

    def poller(self, engine: Engine, *, transport: httpx.AsyncBaseTransport | None = None,
               sleep: Sleep | None = None, recorder: Recorder | None = None,
               **settings: Any) -> Poller:
        """A poller of the world's config on ``engine`` (``settings``: ``TickSettings``)."""
        app = self.app(transport=transport, sleep=sleep)
        return app.poller(app.store(engine, recorder=recorder), **settings)

    async def sleep(self, seconds: float) -> None:
        """Virtual sleep: remembered, takes no time."""
        self.sleeps.append(seconds)


def build_sim_world(*, seed: int = 11, conferences: int = 8, polling: Mapping[str, Any] = (
        {}), telnyx_faults: FaultConfig | None = None, telnyx_api_key: str | None = None,
        extra_telnyx: tuple[str, ...] = (), extra_bandwidth: tuple[str, ...] = (),
        only: tuple[str, ...] | None = None, accounts: Mapping[str, Any] = {}) -> SimWorld:
    """Two simulators of the same seeded scenario (Telnyx with ``telnyx_faults``) and a config
    listing their conferences (``only`` restricts to those IDs) plus ``extra_*`` unknown IDs."""
    clock = VirtualClock()
    scenario = ScenarioConfig.lively(conferences)
    telnyx = Simulator(seed=seed, clock=clock, scenario=scenario, faults=telnyx_faults)
    bandwidth = Simulator(seed=seed, clock=clock, scenario=scenario)
    router = HostRouter({TELNYX_HOST: httpx.ASGITransport(app=create_app(telnyx)),
                         BANDWIDTH_HOST: httpx.ASGITransport(app=create_app(bandwidth))})
    creds = telnyx.credentials

    def wanted(cid: str) -> bool:
        return only is None or cid in only

    telnyx_conferences: list[Any] = []
    for cid in telnyx.conference_ids(Provider.TELNYX):
        if not wanted(cid):
            continue
        timeline = telnyx.timeline(Provider.TELNYX, cid)
        assert timeline is not None
        region = timeline.region
        telnyx_conferences.append(cid if region == "US" else {"id": cid, "region": region})
    document: dict[str, Any] = {
        "polling": {"interval_seconds": 10, "idle_interval_seconds": 20,
                    "completion_grace_seconds": 30, "backoff_max_seconds": 20,
                    **polling},
        "accounts": [
            {"name": TELNYX, "provider": "telnyx", "api_key_env": "SIM_TELNYX_KEY",
             "base_url": f"http://{TELNYX_HOST}/v2", "requests_per_second": 1000,
             "conferences": telnyx_conferences + list(extra_telnyx),
             **accounts.get(TELNYX, {})},
            {"name": BANDWIDTH, "provider": "bandwidth",
             "account_id": creds.bandwidth_account_id,
             "client_id_env": "SIM_BW_ID", "client_secret_env": "SIM_BW_SECRET",
             "base_url": f"http://{BANDWIDTH_HOST}/api/v2",
             "token_url": f"http://{BANDWIDTH_HOST}/api/v1/oauth2/token",
             "requests_per_second": 1000,
             "conferences": [cid for cid in bandwidth.conference_ids(Provider.BANDWIDTH)
                             if wanted(cid)] + list(extra_bandwidth),
             **accounts.get(BANDWIDTH, {})},
        ],
    }
    config = parse_config(document, environ={})
    environ = {"SIM_TELNYX_KEY": telnyx_api_key or creds.telnyx_api_key,
               "SIM_BW_ID": creds.bandwidth_client_id,
               "SIM_BW_SECRET": creds.bandwidth_client_secret}
    return SimWorld(clock, telnyx, bandwidth, router, config, environ)


async def drive(poller: Poller, clock: VirtualClock, seconds: float, step: float = 5.0
                ) -> TickReport:
    """Tick every ``step`` virtual seconds for ``seconds``; the summed report."""
    total = TickReport()
    for _ in range(int(seconds / step) + 1):
        total.add(await poller.tick(clock.now()))
        clock.advance(step)
    return total
