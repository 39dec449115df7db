"""A fake Telnyx and Bandwidth, for tests, demos and benchmarks.

It serves both providers' conference endpoints as their OpenAPI specs describe them (paths,
envelopes, paging, auth, error bodies, headers), driven by a seeded scenario on an injectable
clock, with injected faults and an exported ground truth. It is an independent fake: it shares
no code with ``poller.providers``.

Typical in-process use::

    clock = VirtualClock()
    sim = Simulator(seed=7, clock=clock, scenario=ScenarioConfig.lively())
    transport = httpx.ASGITransport(app=create_app(sim))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
        clock.advance(60)
        ...
    truth = ground_truth(sim, until_ms=None)

Modules: ``clock`` (virtual / wall clocks), ``config`` (scenario, faults, latency, credentials),
``scenario`` (seeded generation), ``timeline`` (lives and state at a moment), ``world``
(``Simulator``), ``auth``, ``faults``, ``telnyx_api``, ``bandwidth_api``, ``app``
(``create_app``), ``truth`` (ground truth). ``poller simulate`` (``poller.commands.simulate``)
serves it under uvicorn. Behaviour choices are listed in ``docs/simulator.md``.
"""

from __future__ import annotations

from poller.simulator.app import create_app
from poller.simulator.clock import Clock, VirtualClock, WallClock
from poller.simulator.config import (
    BANDWIDTH_MEMBER_LIMIT,
    Credentials,
    EndCause,
    FaultConfig,
    FaultKind,
    LatencyConfig,
    ScenarioConfig,
)
from poller.simulator.truth import ground_truth, served_conferences
from poller.simulator.world import Simulator

__all__ = [
    "BANDWIDTH_MEMBER_LIMIT",
    "Clock",
    "Credentials",
    "EndCause",
    "FaultConfig",
    "FaultKind",
    "LatencyConfig",
    "ScenarioConfig",
    "Simulator",
    "VirtualClock",
    "WallClock",
    "create_app",
    "ground_truth",
    "served_conferences",
]
