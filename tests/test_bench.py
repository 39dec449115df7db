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
}


def test_benchmarks_run() -> None:
    """All three at once (they share nothing; the figures are not checked, only the output)."""
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


def check_throughput(out: str) -> None:
    rows = {line[:45].strip(): line[45:].split() for line in out.splitlines()
            if line.startswith(("floor", "naive", "ours"))}
    assert set(rows) == {"floor (aiohttp GET+JSON)", "naive sqlite",
                         "ours     20 mixed     max          sqlite",
                         "ours     20 mixed     @1s steady   sqlite"}, out
    for row in rows.values():
        assert float(row[0]) > 0  # polls/s
        assert row[-1] == "0"  # failed
    # The steady run wrote no history, and the goal line says so.
    assert re.search(r"0 history rows for unchanged polls\s+met\s+0 rows over [1-9]", out)


def check_soak(out: str) -> None:
    assert re.search(r"start -> end: RSS [\d.]+ -> [\d.]+ MB \([+-][\d.]+\), FDs \d+ -> \d+, "
                     r"DB connections [1-9]\d* -> [1-9]\d*", out), out


def check_transport(out: str) -> None:
    assert re.search(r"^  aiohttp +\d+ +[\d.]+ +0$", out, re.MULTILINE), out
    assert re.search(r"^  httpx +\d+ +[\d.]+ +0$", out, re.MULTILINE), out
