"""The ``poller`` console script: note the daemon's signals first, then load the command line.

Importing the command line loads most of poller (about a second on a slow machine). A SIGHUP
meanwhile would kill the process with its default action (a ``systemctl reload`` right after a
start), and a SIGTERM would skip the graceful stop. So the entry point installs
:class:`~poller.daemon.signals.EarlySignals` before anything else: ``poller run`` hands what it
noted to the daemon, which acts on it once it runs; every other command puts the default
handlers back and re-delivers what was noted (``EarlySignals.release``), so it behaves as if
the signal had come a moment later.
"""

from __future__ import annotations

from poller.daemon.signals import EarlySignals


def main() -> None:
    """Console-script entry point (``[project.scripts]``)."""
    early = EarlySignals().install()
    from poller.cli import main as run_cli  # imported here, after the signals: the point

    run_cli(early=early)
