"""Which transport sends the provider requests: httpx's own or httpx-aiohttp's.

    .venv/bin/python bench/transport.py [--targets 2000] [--rounds 3] [--concurrency 32]

It serves a steady simulator world in its own process (``poller simulate --steady``), then
polls it with the real provider clients (half Telnyx: a conference GET and a participants GET
per poll; half Bandwidth: one GET) at ``polling.concurrency`` polls in flight, once per round
with each transport, alternating, and prints the median polls per second and CPU seconds of
this process (the client; the simulator runs elsewhere) per 1,000 polls, with the ratio of
httpx's own transport to aiohttp's.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import get_args

from harness import CREDENTIALS, SimulatorProcess, simulator

from poller.config import ApiKeyCredentials, BasicCredentials
from poller.model import Provider, TargetKey
from poller.providers import HttpSettings, build_client
from poller.providers.http import TransportName


async def poll_all(sim: SimulatorProcess, targets: list[TargetKey], transport: TransportName,
                   concurrency: int) -> tuple[float, float, int]:
    """Poll every target once; ``(wall seconds, CPU seconds, failures)``."""
    settings = HttpSettings(transport=transport)
    clients = {
        Provider.TELNYX: build_client(
            Provider.TELNYX, account="telnyx", base_url=sim.url + "/v2", settings=settings,
            credentials=ApiKeyCredentials(CREDENTIALS.telnyx_api_key)),
        Provider.BANDWIDTH: build_client(
            Provider.BANDWIDTH, account="bandwidth", base_url=sim.url + "/api/v2",
            account_id=CREDENTIALS.bandwidth_account_id, settings=settings,
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
        names: tuple[TransportName, ...] = get_args(TransportName)
        results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in names}
        for _ in range(args.rounds):
            for name in names:
                results[name].append(asyncio.run(poll_all(sim, targets, name,
                                                          args.concurrency)))
    n = len(targets)
    print(f"transports: {n} polls per round (half Telnyx, half Bandwidth), concurrency "
          f"{args.concurrency}, median of {args.rounds} rounds")
    print(f"  {'transport':<10} {'polls/s':>9} {'CPU s/1k polls':>15} {'failures':>9}")
    medians = {}
    for label, runs in results.items():
        rate = statistics.median(n / wall for wall, _, _ in runs)
        cpu = statistics.median(1000 * cpu / n for _, cpu, _ in runs)
        medians[label] = (rate, cpu)
        print(f"  {label:<10} {rate:9.0f} {cpu:15.2f} {sum(f for _, _, f in runs):9d}")
    (fast_rate, fast_cpu), (slow_rate, slow_cpu) = medians["aiohttp"], medians["httpx"]
    print(f"  aiohttp vs httpx: {fast_rate / slow_rate:.2f}x the polls/s, "
          f"{slow_cpu / fast_cpu:.2f}x less CPU per poll")


if __name__ == "__main__":
    main()
