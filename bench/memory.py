"""Where ``poller run``'s memory goes: RSS second by second from the start, then by mapping.

    .venv/bin/python bench/memory.py                          # 10,000 mixed, 80 ms, SQLite, 30 s
    .venv/bin/python bench/memory.py --database postgresql --seconds 60
    .venv/bin/python bench/memory.py --targets 2000 --latency-ms 0

It serves a steady simulator world (``poller simulate --steady --latency-ms L``) and runs the real
``poller run`` CLI on it with the benchmark's config (``bench/poller_run.py``: every target due
at once at the start, polled every 10 s, ``concurrency = "auto"``), on a scratch database. It
prints the process's RSS, peak RSS (``VmHWM``), threads and open files every second, then how
the RSS divides between anonymous memory (the Python heap: objects, and what the allocator
keeps after a burst), the ``[heap]`` (glibc's small allocations) and shared libraries, from
``/proc/<pid>/smaps``. Beside them: the poll slots' limit (``poller_poll_slots``), polls a
second and their mean duration, from ``/metrics``. The imports alone take about 76 MB
(``docs/benchmarks.md``).
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from collections import Counter
from pathlib import Path

from harness import memory_mb, open_fds, simulator
from poller_run import Scrape, config_toml, free_port, poller_process, targets
from throughput import DEFAULT_POSTGRES, postgres_available
from write_costs import scratch_database

MAPPING = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")


def by_mapping(pid: int) -> Counter[str]:
    """RSS in MB by kind of mapping: ``anonymous``, ``[heap]``, ``shared libraries``, other."""
    kinds: Counter[str] = Counter()
    kind = "other"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if MAPPING.match(line):
            fields = line.split()
            name = fields[5] if len(fields) > 5 else ""
            kind = ("anonymous" if not name else "shared libraries" if ".so" in name
                    else name if name.startswith("[") else "other files")
        elif line.startswith("Rss:"):
            kinds[kind] += int(line.split()[1]) / 1024
    return kinds


def scrape(port: int) -> Scrape | None:
    """``/metrics`` now (``None`` while the daemon does not answer yet)."""
    try:
        return Scrape(port)
    except OSError:
        return None


def pace(before: Scrape | None, now: Scrape | None) -> str:
    """The poll slots' limit, polls a second and their mean duration since ``before``."""
    if now is None:
        return ""
    slots = f"{now.slots:>6}" if now.slots is not None else f"{'':>6}"
    if before is None:
        return slots
    polls = now.total - before.total
    seconds = sum(now.poll_seconds.values()) - sum(before.poll_seconds.values())
    duration = f"{1000 * seconds / polls:8.0f}" if polls else f"{'':>8}"
    return f"{slots} {polls:>8} {duration}"


def threads(pid: int) -> int:
    """Threads of process ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=10_000, help="half Telnyx, half Bandwidth")
    parser.add_argument("--latency-ms", type=float, default=80.0)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--concurrency", default="auto",
                        help="polling.concurrency (default: auto)")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    args = parser.parse_args()
    if args.database == "postgresql" and not postgres_available(args.postgres_url):
        parser.error(f"PostgreSQL does not answer at {args.postgres_url}")
    scratch = args.postgres_url if args.database == "postgresql" else None
    print(f"memory of poller run: {args.targets:,} targets (mixed) every 10 s, "
          f"{args.latency_ms:g} ms, {args.database}, {args.seconds} s")
    with simulator(args.targets // 2, latency_ms=args.latency_ms) as sim, \
            scratch_database(scratch) as url, tempfile.TemporaryDirectory() as directory:
        port = free_port()
        config = config_toml(sim, targets(sim, "mixed", args.targets), url, 10.0, port)
        if args.concurrency != "auto":
            config = config.replace("concurrency = 'auto'",
                                    f"concurrency = {int(args.concurrency)}")
        with poller_process(config, Path(directory)) as process:
            print(f"{'s':>4} {'RSS MB':>7} {'peak MB':>8} {'threads':>8} {'FDs':>5} "
                  f"{'slots':>6} {'polls/s':>8} {'poll ms':>8}")
            before: Scrape | None = None
            for second in range(1, args.seconds + 1):
                time.sleep(1)
                if process.poll() is not None:
                    raise RuntimeError(f"poller run exited ({process.returncode}):\n"
                                       f"{(Path(directory) / 'poller.log').read_text()[-2000:]}")
                rss, peak = memory_mb(process.pid)
                now = scrape(port)
                print(f"{second:>4} {rss:7.1f} {peak:8.1f} {threads(process.pid):>8} "
                      f"{open_fds(process.pid):>5} {pace(before, now)}", flush=True)
                before = now
            kinds = by_mapping(process.pid)
    print("RSS by mapping at the end: " + ", ".join(
        f"{kind} {mb:.1f} MB" for kind, mb in kinds.most_common() if mb >= 0.1))


if __name__ == "__main__":
    main()
