"""Several ``poller run`` processes on one real PostgreSQL database (DESIGN §8,
``docs/scaling.md``): identities, the split of the work, takeover after SIGKILL, exactly-once
history and rolling restarts. Each daemon is a real subprocess of the real CLI; the providers
are ``poller simulate`` over TCP."""

from __future__ import annotations

from pathlib import Path

import pytest
from fleet import FleetDaemon, Watch, wait_for, write_fleet_config

pytestmark = pytest.mark.postgres


def test_a_live_identity_is_refused_with_exit_2(postgres_url: str, tmp_path: Path) -> None:
    """A second ``poller run`` under the identity of a running one exits 2 and says why; once
    the first has stopped, the identity is free again."""
    config = write_fleet_config(tmp_path / "a.toml", postgres_url, [], identity="poller-a",
                                interval=5, lease=10, heartbeat=1)
    watch = Watch(postgres_url)
    first = FleetDaemon("poller-a", config, {})
    try:
        wait_for("the first daemon to register", lambda: watch.live_daemons() == ["poller-a"])
        second = FleetDaemon("poller-a", config, {})
        try:
            assert second.process.wait(timeout=60) == 2, second.stderr()
            message = second.stderr()
        finally:
            second.close()
        assert "configuration error: daemon.identity: 'poller-a' is in use by a running " \
               "poller" in message
        assert f"pid {first.process.pid}" in message
        assert first.alive(), first.stderr()
        assert first.terminate() == 0, first.stderr()
        [(stopped,)] = watch.rows("select stopped_at from poller_daemon")
        assert stopped is not None
        again = FleetDaemon("poller-a", config, {})
        try:
            wait_for("the identity to be taken again",
                     lambda: watch.live_daemons() == ["poller-a"])
            assert again.terminate() == 0, again.stderr()
        finally:
            again.close()
    finally:
        first.close()
        watch.close()
