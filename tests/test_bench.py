"""The benchmark scripts in their tiniest mode, so they cannot rot (figures: docs/benchmarks.md).

Each runs as a subprocess against a real simulator process and real ``poller run`` processes on
SQLite; the checks are that they finish and print what they promise, not the figures (the
machine is shared: see ``docs/benchmarks.md`` for the real runs).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parent.parent / "bench"


SCRIPTS = {
    "throughput": ("throughput.py", "--smoke", "--no-postgres"),
    "soak": ("soak.py", "--minutes", "0.03", "--targets", "20", "--interval", "1",
             "--database", "sqlite"),
    "transport": ("transport.py", "--targets", "20", "--rounds", "1"),
    "memory": ("memory.py", "--targets", "20", "--seconds", "2", "--latency-ms", "0"),
}


def test_benchmarks_run() -> None:
    """All at once (they share nothing; the figures are not checked, only the output)."""
    running = {name: subprocess.Popen([sys.executable, str(BENCH / script), *args],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for name, (script, *args) in SCRIPTS.items()}
    out = {}
    for name, process in running.items():
        stdout, stderr = process.communicate(timeout=180)
        assert process.returncode == 0, f"{name}: {stderr[-3000:]}"
        out[name] = stdout
    check_throughput(out["throughput"])
    check_soak(out["soak"])
    check_transport(out["transport"])
    check_memory(out["memory"])


def check_throughput(out: str) -> None:
    table, in_flight = out.split("polls in flight against the limits")
    rows = {line[:51].strip(): line[51:].split() for line in table.splitlines()
            if line.startswith(("naive", "ours"))}
    assert set(rows) == {"naive   0ms sqlite",
                         "ours     20 mixed     max            0ms sqlite",
                         "ours     20 mixed     @1s steady    80ms sqlite"}, out
    for label, row in rows.items():
        assert float(row[0]) > 0  # polls/s
        assert row[-1] == "0"  # failed
        if label.startswith("ours"):  # CPU x floor: against its floor at its mix and rate
            assert re.fullmatch(r"[\d.]+x", row[-6]), row
    # The run at 80 ms: its schedule needs 20/s x 0.12 s = 2 polls in flight; the limits (32
    # slots, as many connections an account) allow 32 / 0.12 s = 267 polls/s.
    scheduled = next(line for line in in_flight.splitlines() if "@1s steady" in line)
    assert scheduled[51:].split()[:2] == ["20", "2"], scheduled
    assert scheduled[51:].split()[-3] == "267", scheduled
    # The steady run wrote no history, and the goal line says so.
    assert re.search(r"0 history rows for unchanged polls\s+met\s+0 rows over [1-9]", out)
    assert re.search(r"CPU per poll <= 2x the same-mix, same-rate floor .*mixed 20 80ms", out)


def check_soak(out: str) -> None:
    assert re.search(r"start -> end: RSS [\d.]+ -> [\d.]+ MB \([+-][\d.]+\), FDs \d+ -> \d+, "
                     r"DB connections [1-9]\d* -> [1-9]\d*", out), out


def check_transport(out: str) -> None:
    for way in ("aiohttp", "httpx\\+aiohttp", "httpx"):
        assert re.search(rf"^  {way} +\d+ +[\d.]+ +0$", out, re.MULTILINE), out


def check_memory(out: str) -> None:
    rows = re.findall(r"^ +(\d+) +([\d.]+) +([\d.]+) +\d+ +\d+\b.*$", out, re.MULTILINE)
    assert [int(second) for second, _, _ in rows] == [1, 2], out
    assert all(float(rss) > 0 and float(peak) >= float(rss) for _, rss, peak in rows), out
    # Anonymous memory is not always the largest part two seconds in (on a loaded machine the
    # poller may still be importing: shared libraries first).
    assert re.search(r"^RSS by mapping at the end: .*\banonymous [\d.]+ MB", out, re.MULTILINE), out
