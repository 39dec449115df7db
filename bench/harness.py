"""What the benchmarks share: the simulator in its own process, scratch databases, /proc readings.

Not a benchmark itself; ``bench/throughput.py`` (with ``poller_run.py`` and ``baselines.py``),
``bench/soak.py`` and ``bench/transport.py`` import it (they run as ``python bench/<name>.py``,
so this directory is on ``sys.path``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from poller.simulator import Credentials

CREDENTIALS = Credentials()
"""The simulator's fake, simulator-only credentials."""
BIN = Path(sys.executable).parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class SimulatorProcess:
    """A ``poller simulate --steady`` server: its URL, pid and simulated round trip."""

    url: str
    pid: int
    latency_ms: float = 0.0

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=30) as answer:  # noqa: S310
            return json.load(answer)

    def post(self, path: str, document: object) -> Any:
        request = urllib.request.Request(  # noqa: S310 (http://127.0.0.1 only)
            self.url + path, data=json.dumps(document).encode(), method="POST",
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            return json.load(answer)

    def ids(self, provider: str) -> list[str]:
        """The conference IDs served for ``telnyx`` or ``bandwidth``."""
        return [c["id"] for c in self.get("/_sim/conferences")[provider]["conferences"]]

    def churn(self, fraction: float) -> int:
        """``POST /_sim/churn``: change ``fraction`` of the conferences now."""
        return int(self.post("/_sim/churn", {"fraction": fraction})["changed"])


@contextmanager
def simulator(conferences_per_provider: int, *, seed: int = 1, latency_ms: float = 0.0,
              jitter_ms: float = 0.0) -> Iterator[SimulatorProcess]:
    """``poller simulate --steady`` on a free port, in its own process, stopped afterwards;
    every provider answer ``latency_ms`` (+- ``jitter_ms``) late (``--latency-ms``)."""
    process = subprocess.Popen(  # noqa: S603 (our own CLI)
        [str(BIN / "poller"), "simulate", "--port", "0", "--steady", "--seed", str(seed),
         "--conferences", str(conferences_per_provider), "--log-level", "error",
         "--latency-ms", str(latency_ms), "--latency-jitter-ms", str(jitter_ms)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        url = None
        for line in process.stdout:
            found = re.match(r"# Serving on (\S+)", line)
            if found:
                url = found.group(1)
                break
        if url is None:
            raise RuntimeError(f"the simulator exited ({process.wait()}) before serving")
        process.stdout.close()
        yield SimulatorProcess(url, process.pid, latency_ms)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def memory_mb(pid: int) -> tuple[float, float]:
    """``(current RSS, peak RSS)`` of process ``pid`` in MB (``VmRSS``, ``VmHWM``)."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def open_fds(pid: int) -> int:
    """Open file descriptors of process ``pid``."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_until(condition: Any, timeout: float, what: str, step: float = 0.05) -> None:
    """Poll ``condition()`` until true; ``TimeoutError`` naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(step)
