"""Fixtures of the daemon tests."""

from __future__ import annotations

import pytest
from factories import T0
from sqlalchemy import Engine

from poller.store.recorder import Recorder


@pytest.fixture
def recorder(engine: Engine) -> Recorder:
    """A recorder on the test database, with a fixed clock."""
    return Recorder(engine, clock=lambda: T0)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The one-line figures of the proofs (``test_proofs.py``), at the end of the run."""
    lines = [value for reports in terminalreporter.stats.values() for report in reports
             for name, value in getattr(report, "user_properties", ()) if name == "proof"]
    if lines:
        terminalreporter.section("proofs: recorded history vs ground truth")
        for line in dict.fromkeys(lines):
            terminalreporter.write_line(str(line))
