"""What sends the provider requests: aiohttp directly, aiohttp under httpx, or httpx's own.

    .venv/bin/python bench/transport.py [--targets 2000] [--rounds 3] [--concurrency 32]

It serves a steady simulator world in its own process (``poller simulate --steady``), then
polls it with the real provider clients (half Telnyx: a conference GET and a participants GET
per poll; half Bandwidth: one GET) at ``polling.concurrency`` polls in flight, once per round
with each way of sending, alternating, and prints the median polls per second and CPU seconds
of this process (the client; the simulator runs elsewhere) per 1,000 polls:

* ``aiohttp``: ``[polling] http_transport = "aiohttp"``, the default: aiohttp called directly
  (``poller.providers.wire.AiohttpWire``);
* ``httpx+aiohttp``: an ``httpx.AsyncClient`` over httpx-aiohttp's ``AiohttpTransport``,
  injected as a transport: the same aiohttp under httpx's request and response objects (what
  poller did before; httpx-aiohttp is a dev dependency for this comparison only);
* ``httpx``: ``http_transport = "httpx"``, httpx's own transport (httpcore).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable

import httpx
from harness import CREDENTIALS, SimulatorProcess, simulator

from poller.config import ApiKeyCredentials, BasicCredentials
from poller.model import Provider, TargetKey
from poller.providers import HttpSettings, build_client
from poller.providers.http import TransportName

WAYS = ("aiohttp", "httpx+aiohttp", "httpx")


def sending(way: str) -> tuple[HttpSettings, Callable[[], httpx.AsyncBaseTransport | None]]:
    """The settings and the transport (``None``: none injected) of one of the ``WAYS``."""
    if way == "httpx+aiohttp":
        from httpx_aiohttp import AiohttpTransport

        settings = HttpSettings()
        limits = httpx.Limits(max_connections=settings.max_connections)
        return settings, lambda: AiohttpTransport(limits=limits)
    transport: TransportName = "httpx" if way == "httpx" else "aiohttp"
    return HttpSettings(transport=transport), lambda: None


async def poll_all(sim: SimulatorProcess, targets: list[TargetKey], way: str,
                   concurrency: int) -> tuple[float, float, int]:
    """Poll every target once; ``(wall seconds, CPU seconds, failures)``."""
    settings, transport = sending(way)
    clients = {
        Provider.TELNYX: build_client(
            Provider.TELNYX, account="telnyx", base_url=sim.url + "/v2", settings=settings,
            transport=transport(),
            credentials=ApiKeyCredentials(CREDENTIALS.telnyx_api_key)),
        Provider.BANDWIDTH: build_client(
            Provider.BANDWIDTH, account="bandwidth", base_url=sim.url + "/api/v2",
            account_id=CREDENTIALS.bandwidth_account_id, settings=settings,
            transport=transport(),
            credentials=BasicCredentials(CREDENTIALS.bandwidth_username,
                                         CREDENTIALS.bandwidth_password)),
    }
    gate = asyncio.Semaphore(concurrency)
    failures = 0

    async def poll(target: TargetKey) -> None:
        nonlocal failures
        async with gate:
            try:
                await clients[target.provider].fetch(target)
            except Exception:  # counted: a benchmark of failures would mean nothing
                failures += 1

    # One warm-up poll per client opens its connection pool outside the timing.
    await asyncio.gather(*(poll(t) for t in (targets[0], targets[-1])))
    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(poll(t) for t in targets))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    for client in clients.values():
        await client.aclose()
    return wall, cpu, failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=2000, help="polls per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    half = max(1, args.targets // 2)
    with simulator(half) as sim:
        targets = ([TargetKey(Provider.TELNYX, "telnyx", cid) for cid in sim.ids("telnyx")]
                   + [TargetKey(Provider.BANDWIDTH, "bandwidth", cid)
                      for cid in sim.ids("bandwidth")])
        results: dict[str, list[tuple[float, float, int]]] = {way: [] for way in WAYS}
        for _ in range(args.rounds):
            for way in WAYS:
                results[way].append(asyncio.run(poll_all(sim, targets, way, args.concurrency)))
    n = len(targets)
    print(f"transports: {n} polls per round (half Telnyx, half Bandwidth), concurrency "
          f"{args.concurrency}, median of {args.rounds} rounds")
    print(f"  {'sent by':<14} {'polls/s':>9} {'CPU s/1k polls':>15} {'failures':>9}")
    medians = {}
    for label, runs in results.items():
        rate = statistics.median(n / wall for wall, _, _ in runs)
        cpu = statistics.median(1000 * cpu / n for _, cpu, _ in runs)
        medians[label] = (rate, cpu)
        print(f"  {label:<14} {rate:9.0f} {cpu:15.2f} {sum(f for _, _, f in runs):9d}")
    fast_rate, fast_cpu = medians["aiohttp"]
    for other in WAYS[1:]:
        rate, cpu = medians[other]
        print(f"  aiohttp vs {other}: {fast_rate / rate:.2f}x the polls/s, "
              f"{cpu / fast_cpu:.2f}x less CPU per poll")


if __name__ == "__main__":
    main()
