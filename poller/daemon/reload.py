"""What a reload (SIGHUP) may change, and what it leaves to a restart.

A reload applies ``[polling]``, ``[retention]`` and the ``[[accounts]]``: new conferences are
polled, dropped ones retired ``removed``, changed accounts get new clients (unchanged ones keep
theirs, with their rate-limit and pause state), and the tick period follows
``interval_seconds``. ``[database]``, ``[daemon]``, ``[metrics]`` and ``[health]`` need a
restart: :func:`settle` keeps the running values of those sections and says so in the log.
"""

from __future__ import annotations

import logging

from poller.config import Config

log = logging.getLogger(__name__)

RESTART_ONLY = (
    (("database",), "[database] changed: that takes a restart; the running database is kept"),
    (("spool",), "[spool] changed: that takes a restart; the running spool is kept"),
    (("daemon",), "[daemon] changed: that takes a restart; the running identity and lease "
                  "times are kept"),
    (("metrics", "health"), "[metrics] / [health] changed: that takes a restart; the running "
                            "servers are kept"),
)
"""Sections a reload keeps as they run, with the warning logged when they changed."""


def settle(running: Config, loaded: Config) -> Config:
    """``loaded`` with the sections that need a restart put back as ``running`` has them."""
    for sections, warning in RESTART_ONLY:
        kept = {name: getattr(running, name) for name in sections}
        if any(getattr(loaded, name) != value for name, value in kept.items()):
            log.warning(warning)
            loaded = loaded.model_copy(update=kept)
    return loaded
