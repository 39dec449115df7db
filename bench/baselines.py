"""The baselines ``bench/throughput.py`` measures ``poller run`` against, each in its own process.

* **floor** (``floor``): the cheapest poll loop there is, *paced*: it starts polls at a given
  rate (each one at its due time, ``rate`` per second, as many in flight as that takes, on an
  unlimited aiohttp connection pool), and a poll only GETs and decodes JSON: a Telnyx poll the
  conference and its participants (2 requests), a Bandwidth poll the conference (1). Run on the
  same targets (same provider mix), against the same simulator (same latency) and at the rate
  ``poller run`` achieved, its CPU seconds per poll (``time.process_time``, this process) are
  what a poll cannot cost less than, at that mix and rate;
* **naive** (``naive``): what a quick script does: sequential ``httpx.Client`` GETs, one ORM
  session, commit and snapshot row per poll, whatever changed: as fast as it goes.

``run_baseline`` runs this file as ``python bench/baselines.py SPEC.json`` (a separate process,
so its CPU and RSS are its own) and reads the JSON line it prints.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import CREDENTIALS, SimulatorProcess, memory_mb
from sqlalchemy import JSON, DateTime, Integer, String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

WARM_UP_SECONDS = 0.5
"""Each baseline runs this long before its measured window (connections opened, code warm)."""
REQUESTS_PER_POLL = {"telnyx": 2, "bandwidth": 1}
"""HTTP requests of one poll of a conference in progress with one member (steady world)."""


def run_baseline(kind: str, sim: SimulatorProcess, ids: dict[str, list[str]], seconds: float,
                 *, database_url: str | None = None, rate: float | None = None
                 ) -> dict[str, Any]:
    """Run one baseline for ``seconds``: ``{"polls", "seconds", "cpu", "failures",
    "peak_rss_mb"}`` of its measured window."""
    spec = {"kind": kind, "url": sim.url, "ids": ids, "seconds": seconds,
            "database_url": database_url, "rate": rate}
    with tempfile.NamedTemporaryFile("w", suffix=".json") as file:
        json.dump(spec, file)
        file.flush()
        done = subprocess.run(  # noqa: S603 (this script)
            [sys.executable, __file__, file.name], check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the {kind} baseline failed:\n{done.stderr[-3000:]}")
    measured: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return measured


def polls_of(base: str, ids: dict[str, list[str]]) -> list[tuple[str, list[str]]]:
    """Per poll, its provider and the URLs it GETs, the providers interleaved (so that any
    stretch of polls has the targets' mix, however short the window)."""
    telnyx = [("telnyx", [f"{base}/v2/conferences/{cid}",
                          f"{base}/v2/conferences/{cid}/participants"
                          "?page[size]=250&page[number]=1"]) for cid in ids.get("telnyx", [])]
    account = CREDENTIALS.bandwidth_account_id
    bandwidth = [("bandwidth", [f"{base}/api/v2/accounts/{account}/conferences/{cid}"])
                 for cid in ids.get("bandwidth", [])]
    polls = []
    for i in range(max(len(telnyx), len(bandwidth))):
        polls += [each[i] for each in (telnyx, bandwidth) if i < len(each)]
    return polls


def floor(spec: dict[str, Any]) -> dict[str, Any]:
    """The paced floor (module docstring): polls started at ``spec["rate"]`` a second."""
    import aiohttp

    polls = polls_of(spec["url"], spec["ids"])
    rate = float(spec["rate"])
    headers = {"telnyx": {"Authorization": f"Bearer {CREDENTIALS.telnyx_api_key}"},
               "bandwidth": {"Authorization": aiohttp.BasicAuth(
                   CREDENTIALS.bandwidth_username, CREDENTIALS.bandwidth_password).encode()}}
    failures = 0
    poll_seconds = 0.0

    async def main() -> dict[str, Any]:
        nonlocal failures, poll_seconds
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            async def poll(position: int) -> None:
                nonlocal failures, poll_seconds
                provider, urls = polls[position % len(polls)]
                started = time.perf_counter()
                for url in urls:
                    async with session.get(url, headers=headers[provider]) as answer:
                        await answer.json()
                        failures += answer.status != 200
                poll_seconds += time.perf_counter() - started

            async def paced(seconds: float, first: int) -> int:
                """Start poll n at ``start + n / rate`` for ``seconds``; wait for the last."""
                running: set[asyncio.Task[None]] = set()
                start, started = time.monotonic(), 0
                while (now := time.monotonic()) < start + seconds:
                    while started <= (now - start) * rate:
                        task = asyncio.create_task(poll(first + started))
                        running.add(task)
                        task.add_done_callback(running.discard)
                        started += 1
                    await asyncio.sleep(max(0.0, start + started / rate - time.monotonic()))
                if running:
                    await asyncio.wait(running)
                return started

            warm = await paced(WARM_UP_SECONDS, 0)
            failures, poll_seconds = 0, 0.0
            wall, cpu = time.monotonic(), time.process_time()
            done = await paced(spec["seconds"], warm)
            return {"polls": done, "seconds": time.monotonic() - wall,
                    "cpu": time.process_time() - cpu, "failures": failures,
                    "poll_seconds": poll_seconds}

    return asyncio.run(main())


class NaiveBase(DeclarativeBase):
    pass


class Snapshot(NaiveBase):
    """The naive poller's one table: a row per poll, whatever changed."""

    __tablename__ = "naive_snapshot"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conference_id: Mapped[str] = mapped_column(String)
    observed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str | None] = mapped_column(String, nullable=True)
    raw: Mapped[Any] = mapped_column(JSON)


def naive(spec: dict[str, Any]) -> dict[str, Any]:
    """A quick script: sequential httpx.Client GETs, an ORM session, commit and snapshot row
    per poll."""
    import httpx

    engine = create_engine(spec["database_url"])
    NaiveBase.metadata.create_all(engine)
    polls = polls_of(spec["url"], spec["ids"])
    auth = {"telnyx": None,
            "bandwidth": httpx.BasicAuth(CREDENTIALS.bandwidth_username,
                                         CREDENTIALS.bandwidth_password)}
    headers = {"Authorization": f"Bearer {CREDENTIALS.telnyx_api_key}"}
    done = failures = 0
    with httpx.Client(headers=headers) as client:
        def poll(position: int) -> None:
            nonlocal failures
            provider, urls = polls[position % len(polls)]
            documents = []
            for url in urls:
                answer = client.get(url, auth=auth[provider] or httpx.USE_CLIENT_DEFAULT)
                failures += answer.status_code != 200
                documents.append(answer.json())
            first = documents[0].get("data", documents[0])
            with Session(engine) as session:
                session.add(Snapshot(conference_id=first.get("id"),
                                     observed_at=datetime.now(UTC),
                                     status=first.get("status") or (
                                         "completed" if first.get("completedTime") else
                                         "in_progress"),
                                     raw=documents))
                session.commit()

        warm_until = time.monotonic() + WARM_UP_SECONDS
        while time.monotonic() < warm_until:
            poll(done)
            done += 1
        done = failures = 0
        wall, cpu = time.monotonic(), time.process_time()
        deadline = wall + spec["seconds"]
        while time.monotonic() < deadline:
            poll(done)
            done += 1
    engine.dispose()
    return {"polls": done, "seconds": time.monotonic() - wall,
            "cpu": time.process_time() - cpu, "failures": failures}


def main(path: str) -> None:
    spec = json.loads(Path(path).read_text())
    measured = floor(spec) if spec["kind"] == "floor" else naive(spec)
    measured["peak_rss_mb"] = memory_mb(os.getpid())[1]
    print(json.dumps(measured))


if __name__ == "__main__":
    main(sys.argv[1])
