"""API calls per conference per poll interval, one request per conference vs list polling.

    .venv/bin/python bench/api_calls.py       # 60 conferences per provider, 30 min, 4 s interval
    .venv/bin/python bench/api_calls.py --conferences 120 --minutes 60 --interval 10 --seed 3

Both runs poll the same seeded simulator world (both providers, in-process over
``httpx.ASGITransport``, virtual clock) with the real ``Poller`` and recorder into a scratch
SQLite file; only the accounts' ``list_polling`` differs. Every conference is a target from the
start and ``interval_seconds`` = ``idle_interval_seconds`` = ``completion_grace_seconds``, so a
conference is polled once per interval whatever its state: calls per poll = calls per
conference per interval. Ticks come every second, as in ``poller run``. The default interval is
short (4 s) because the simulated conferences spend only 1 to 20 s in ``init``: a longer one
leaves few idle polls to measure.

Each poll is classed by the conference's recorded status before and after it:
``idle`` (``init`` → ``init``), ``active`` (``in_progress`` → ``in_progress``), ``completed``
(``completed`` → ``completed``: the grace poll), ``changed`` (first sighting or a new status)
and ``404`` (not created yet or expired). Requests naming a conference (``GET``, participants)
count for its poll; list requests are shared out over the account's polls of the same tick in
proportion. OAuth2 token requests are left out (one an hour).

It prints one row per provider and class: polls, calls per poll without list polling (the
baseline measured in the same run), with it, and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine

from poller.app import App
from poller.config import parse_config, resolve_all_credentials
from poller.model import Observation, PollResult, Provider, TargetKey
from poller.polling.poller import Poller
from poller.simulator import ScenarioConfig, Simulator, VirtualClock, create_app
from poller.store import migrate
from poller.store.database import make_engine
from poller.store.recorder import Recorder, RecordStats
from poller.store.rows import ScheduleUpdate

CLASSES = ("idle", "active", "completed", "changed", "404")


class CountingTransport(httpx.AsyncBaseTransport):
    """Counts requests per conference ID, and list requests per account kind."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.per_conference: Counter[str] = Counter()
        self.lists: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        parts = request.url.path.rstrip("/").split("/")
        if parts[-1] == "token":
            pass
        elif parts[-1] == "conferences":
            self.lists["telnyx" if parts[1] == "v2" else "bandwidth"] += 1
        else:
            conference = parts[-2] if parts[-1] == "participants" else parts[-1]
            self.per_conference[conference] += 1
        return await self.inner.handle_async_request(request)


class ClassifyingRecorder(Recorder):
    """The real recorder, noting each result's class (see the module docstring)."""

    def __init__(self, engine: Engine, clock: Any) -> None:
        super().__init__(engine, clock=clock)
        self.last: dict[TargetKey, str] = {}
        self.batch: list[tuple[TargetKey, str]] = []

    def record(self, batch: Sequence[PollResult],
               schedule: Mapping[TargetKey, ScheduleUpdate] | None = None, *,
               owner: str | None = None) -> RecordStats:
        for result in batch:
            key = result.target
            if isinstance(result, Observation):
                now, before = result.conference.status, self.last.get(key)
                self.last[key] = now
                kind = {"init": "idle", "in_progress": "active", "completed": "completed"}.get(
                    now, "changed") if before == now else "changed"
            else:
                kind = "404" if result.kind == "not_found" else "failed"
            self.batch.append((key, kind))
        return super().record(batch, schedule, owner=owner)


def build(seed: int, conferences: int, interval: float, list_polling: bool, database: Path
          ) -> tuple[Poller, VirtualClock, CountingTransport, ClassifyingRecorder, Engine]:
    clock = VirtualClock()
    sim = Simulator(seed=seed, clock=clock, scenario=ScenarioConfig.lively(conferences))
    counting = CountingTransport(httpx.ASGITransport(app=create_app(sim)))
    creds = sim.credentials
    telnyx = []
    for cid in sim.conference_ids(Provider.TELNYX):
        life = sim.timeline(Provider.TELNYX, cid)
        assert life is not None
        telnyx.append(cid if life.region == "US" else {"id": cid, "region": life.region})
    document = {
        "polling": {"interval_seconds": interval, "idle_interval_seconds": interval,
                    "completion_grace_seconds": interval,
                    "never_found_retire_seconds": 24 * 3600, "backoff_max_seconds": 10},
        "accounts": [
            {"name": "telnyx", "provider": "telnyx", "api_key_env": "K",
             "base_url": "http://sim/v2", "requests_per_second": 10_000,
             "list_polling": list_polling, "conferences": telnyx},
            {"name": "bandwidth", "provider": "bandwidth", "account_id":
             creds.bandwidth_account_id, "client_id_env": "I", "client_secret_env": "S",
             "base_url": "http://sim/api/v2", "token_url": "http://sim/api/v1/oauth2/token",
             "requests_per_second": 10_000, "list_polling": list_polling,
             "conferences": list(sim.conference_ids(Provider.BANDWIDTH))},
        ],
    }
    config = parse_config(document, environ={})
    environ = {"K": creds.telnyx_api_key, "I": creds.bandwidth_client_id,
               "S": creds.bandwidth_client_secret}
    url = f"sqlite:///{database}"
    migrate.upgrade(url)
    engine = make_engine(url)
    recorder = ClassifyingRecorder(engine, clock.now)

    async def no_sleep(_seconds: float) -> None:
        return None

    app = App(config, resolve_all_credentials(config, environ), transport=counting,
              clock=clock.now, sleep=no_sleep)
    poller = app.poller(app.store(engine, recorder=recorder))
    return poller, clock, counting, recorder, engine


async def measure(seed: int, conferences: int, minutes: float, interval: float,
                  list_polling: bool, database: Path
                  ) -> dict[tuple[str, str], tuple[int, float]]:
    """``(provider, class) → (polls, calls)`` over the run."""
    poller, clock, counting, recorder, engine = build(seed, conferences, interval,
                                                      list_polling, database)
    polls: Counter[tuple[str, str]] = Counter()
    calls: defaultdict[tuple[str, str], float] = defaultdict(float)
    try:
        await poller.sync(clock.now())
        end = clock.now() + timedelta(minutes=minutes)
        while clock.now() < end:
            counting.per_conference.clear()
            counting.lists.clear()
            recorder.batch.clear()
            await poller.tick(clock.now())
            by_provider: defaultdict[str, list[tuple[TargetKey, str]]] = defaultdict(list)
            for key, kind in recorder.batch:
                by_provider[key.provider.value].append((key, kind))
            for provider, polled in by_provider.items():
                share = counting.lists[provider] / len(polled)
                for key, kind in polled:
                    polls[provider, kind] += 1
                    calls[provider, kind] += counting.per_conference[key.conference_id] + share
            clock.advance(1.0)
    finally:
        await poller.aclose()
        engine.dispose()
    return {k: (n, calls[k]) for k, n in polls.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conferences", type=int, default=60, help="per provider")
    parser.add_argument("--minutes", type=float, default=30.0, help="virtual time polled")
    parser.add_argument("--interval", type=float, default=4.0, help="poll interval, seconds")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the 404s of conferences not created yet
    with tempfile.TemporaryDirectory() as scratch:
        before = asyncio.run(measure(args.seed, args.conferences, args.minutes, args.interval,
                                     False, Path(scratch) / "single.db"))
        after = asyncio.run(measure(args.seed, args.conferences, args.minutes, args.interval,
                                    True, Path(scratch) / "list.db"))
    print(f"API calls per conference per {args.interval:g} s interval "
          f"({args.conferences} conferences per provider, {args.minutes:g} virtual minutes, "
          f"seed {args.seed})")
    print(f"{'provider':<10} {'class':<10} {'polls':>7} {'before':>8} {'after':>8} "
          f"{'after/before':>13}")
    for provider in ("telnyx", "bandwidth"):
        for kind in CLASSES:
            n_before, c_before = before.get((provider, kind), (0, 0.0))
            n_after, c_after = after.get((provider, kind), (0, 0.0))
            if not n_before or not n_after:
                continue
            per_before, per_after = c_before / n_before, c_after / n_after
            ratio = f"{per_after / per_before:.2f}" if per_before else "-"
            print(f"{provider:<10} {kind:<10} {n_after:>7} {per_before:>8.2f} "
                  f"{per_after:>8.2f} {ratio:>13}")


if __name__ == "__main__":
    main()
