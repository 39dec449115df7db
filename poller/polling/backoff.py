"""When to ask an unavailable store again: sooner at first, then less and less often.

A database that is down, read-only or full fails every statement. Ticking into it four times a
second would flood the log with the same error and the server with connection attempts. After
a failure, :class:`StoreBackoff` says to wait ``STORE_RETRY_SECONDS[0]`` (half a second), the
wait doubling per failure in a row up to ``STORE_RETRY_SECONDS[1]`` (30 s); the first failure
is logged at ERROR, the next ones at WARNING with their count, and the first success after them
at INFO. The time is the caller's clock (a virtual one in tests).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

log = logging.getLogger(__name__)

STORE_RETRY_SECONDS = (0.5, 30.0)
"""The first wait after a failure, and the longest."""


class StoreBackoff:
    """Failures of the store in a row, and when to try it again (see the module docstring)."""

    def __init__(self) -> None:
        self.failures = 0
        """Attempts in a row the store failed (0: it works)."""
        self.retry_at: datetime | None = None
        """No attempt before this (``None``: try now)."""

    def waiting(self, now: datetime) -> bool:
        """Whether an attempt at ``now`` would come too soon after the last failure."""
        return self.retry_at is not None and now < self.retry_at

    def failed(self, now: datetime, message: str | None = None) -> None:
        """The store failed an attempt at ``now``; ``message`` is logged (with the count and
        the wait) when given."""
        self.failures += 1
        first, most = STORE_RETRY_SECONDS
        wait = min(most, first * 2 ** min(self.failures - 1, 20))
        self.retry_at = now + timedelta(seconds=wait)
        if message is not None:
            log.log(logging.ERROR if self.failures == 1 else logging.WARNING,
                    "%s (attempt %d; the next in %g s)", message, self.failures, wait)

    def worked(self) -> None:
        """The store answered: no more waiting."""
        if self.failures:
            log.info("the store works again (after %d failed attempts)", self.failures)
        self.failures = 0
        self.retry_at = None
