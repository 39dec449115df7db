"""Waiting for a condition in real time, for tests that drive subprocesses (no bare sleeps)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(what: str, condition: Callable[[], bool], *, seconds: float,
             every: float = 0.1) -> float:
    """Poll ``condition`` every ``every`` seconds until true and return the seconds it took;
    fail the test after ``seconds``."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, f"timed out waiting for {what}"
        time.sleep(every)
    return time.monotonic() - started
