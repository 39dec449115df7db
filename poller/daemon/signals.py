"""The signals ``poller run`` answers, and noting them before the daemon can.

SIGTERM / SIGINT stop the daemon gracefully (a second one stops it at once); SIGHUP reloads the
configuration. :class:`EarlySignals` is installed first thing by ``poller run``: loading the
config and migrating the database take a while, and SIGHUP's default action would kill the
process meanwhile. What it noted is handed to :meth:`poller.daemon.service.Daemon.run`, which
acts on it as soon as its event loop handles the signals itself.
"""

from __future__ import annotations

import os
import signal
import types

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
HANDLED_SIGNALS = (*STOP_SIGNALS, signal.SIGHUP)


class EarlySignals:
    """Notes SIGTERM / SIGINT / SIGHUP until the daemon handles them on its loop."""

    def __init__(self) -> None:
        self.received: list[signal.Signals] = []
        self._previous: dict[signal.Signals, object] = {}

    def install(self) -> EarlySignals:
        """Start noting the signals (main thread only)."""
        for signum in HANDLED_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._note)
        return self

    def restore(self) -> None:
        """Put the previous handlers back."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def release(self) -> None:
        """Put the previous handlers back and deliver again what was noted meanwhile (for a
        command other than ``poller run``: as if the signals had come now)."""
        received, self.received = self.received, []
        self.restore()
        for signum in received:
            os.kill(os.getpid(), signum)

    def _note(self, signum: int, _frame: types.FrameType | None) -> None:
        self.received.append(signal.Signals(signum))
