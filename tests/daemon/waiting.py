"""Waiting for a condition in real time, for tests that drive subprocesses (no bare sleeps)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path


def wait_for(what: str, condition: Callable[[], bool], *, seconds: float,
             every: float = 0.1) -> float:
    """Poll ``condition`` every ``every`` seconds until true and return the seconds it took;
    fail the test after ``seconds``."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, f"timed out waiting for {what}"
        time.sleep(every)
    return time.monotonic() - started


def catches(pid: int, signum: signal.Signals) -> bool:
    """Whether process ``pid`` has installed a handler for ``signum`` (Linux: the ``SigCgt``
    mask of ``/proc/PID/status``); ``False`` once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) >> (signum - 1) & 1)
