"""Our own bugs, met at a boundary: logged with the traceback once, counted every time.

An unexpected exception (not one of ``poller.errors``) while polling one target, deciding its
next poll, listing, pruning, reloading or beating is a bug of poller's own. The boundary that
meets it (the tick for one poll, the daemon for its jobs) hands it to :class:`InternalErrors`
and carries on:

* the first time a kind of error (where it happened, its type and message) is met, it is
  logged at ERROR with its traceback and what was being done;
* the same kind again is counted, and said again (at WARNING, without the traceback) only at
  the 10th, 100th, 1000th … time, so a bug hit by every poll does not flood the log;
* every one is told to the observer (``poller_internal_errors_total{where}``); a poll's own
  is also recorded as a failed poll of kind ``internal`` (``poll_error``).
"""

from __future__ import annotations

import logging
from typing import Protocol

log = logging.getLogger(__name__)


class InternalObserver(Protocol):
    """Told every internal error (``poller.daemon.metrics.PollerMetrics`` is one)."""

    def observe_internal_error(self, where: str) -> None:
        """One internal error happened in ``where`` (``poll``, ``schedule``, ``prune``, …)."""


class InternalErrors:
    """Logs and counts the internal errors of one poller process (see the module docstring)."""

    def __init__(self, observer: InternalObserver | None = None) -> None:
        self.observer = observer
        self.counts: dict[tuple[str, str, str], int] = {}
        """How often each kind of error (where, type, message) was met."""

    def report(self, where: str, error: BaseException, doing: str) -> None:
        """``error`` happened in ``where`` while ``doing`` (a short phrase naming the target
        or the job); the caller carries on."""
        kind = (where, type(error).__name__, str(error)[:200])
        count = self.counts.get(kind, 0) + 1
        self.counts[kind] = count
        if count == 1:
            log.error("internal error in %s while %s (a bug of poller's own, not the "
                      "provider's or the database's; carrying on): %s: %s", where, doing,
                      type(error).__name__, error, exc_info=error,
                      extra={"kind": "internal", "where": where})
        elif _is_power_of_ten(count):
            log.warning("the same internal error in %s again, %d times so far (last while "
                        "%s): %s: %s", where, count, doing, type(error).__name__, error,
                        extra={"kind": "internal", "where": where})
        if self.observer is not None:
            self.observer.observe_internal_error(where)

    @property
    def total(self) -> int:
        """Internal errors met so far, all kinds."""
        return sum(self.counts.values())


def _is_power_of_ten(n: int) -> bool:
    while n % 10 == 0:
        n //= 10
    return n == 1
