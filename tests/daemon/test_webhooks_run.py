"""``poller run`` serving the webhook receiver on its own port, as a real process.

The accounts poll nothing here (no conferences): the test is about the receiver. An accepted
event is in the database once the answer arrives, so a SIGKILL right after the answer loses
nothing; refused requests leave no row.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

import httpx
from test_run import (
    STARTUP_SECONDS,
    Sim,
    _served_url,
    _terminate,
    _wait_for,
    running_daemon,
    serving_simulator,
    write_config,
)

from poller.simulator.webhooks import SIMULATOR_PUBLIC_KEY, basic_authorization, telnyx_headers

ENV = {"TX_KEY": "unused-api-key", "TX_PUBLIC": SIMULATOR_PUBLIC_KEY, "BW_ID": "id",
       "BW_SECRET": "secret", "BW_HOOK_USER": "sim-webhook-user",
       "BW_HOOK_PASSWORD": "sim-webhook-password"}


def _config(path: Path, database: Path) -> None:
    path.write_text(f'''
[database]
url = "sqlite:///{database}"

[webhooks]
listen = "127.0.0.1:0"

[[accounts]]
name = "tx"
provider = "telnyx"
base_url = "http://127.0.0.1:9/v2"
api_key_env = "TX_KEY"
webhook_public_key_env = "TX_PUBLIC"

[[accounts]]
name = "bw"
provider = "bandwidth"
base_url = "http://127.0.0.1:9/api/v2"
account_id = "99"
client_id_env = "BW_ID"
client_secret_env = "BW_SECRET"
webhook_username_env = "BW_HOOK_USER"
webhook_password_env = "BW_HOOK_PASSWORD"
''')


def test_run_takes_events_and_a_sigkill_after_the_answer_loses_none(tmp_path: Path) -> None:
    database, config = tmp_path / "hooks.db", tmp_path / "config.toml"
    _config(config, database)
    sim = Sim(url="", accounts=[], env=ENV)
    body = json.dumps({"data": {"record_type": "event", "id": "e-1",
                                "event_type": "conference.participant.left",
                                "occurred_at": "2026-03-01T11:59:58.521Z",
                                "payload": {"call_control_id": "v3:c", "conference_id": "conf-1"}
                                }}).encode()
    with running_daemon(sim, config, database) as daemon, httpx.Client(timeout=10) as http:
        found: list[str] = []

        def listening() -> bool:
            assert daemon.alive(), daemon.stderr()
            url = _served_url(daemon, "webhooks.listen")
            found.extend([url] if url else [])
            return bool(found)

        _wait_for("the receiver to listen", listening, seconds=STARTUP_SECONDS)
        base = found[0]
        assert "(webhooks.listen) for bw, tx" in daemon.stderr()
        now = int(time.time())
        refused = http.post(f"{base}/webhooks/telnyx/tx", content=body,
                            headers=telnyx_headers(body + b" ", now))
        assert refused.status_code == 401
        challenged = http.post(f"{base}/webhooks/bandwidth/bw", content=b"{}")
        assert challenged.status_code == 401
        assert challenged.headers["www-authenticate"].startswith("Basic")
        callback = json.dumps({"eventType": "conferenceMemberJoin", "callId": "c-9",
                               "conferenceId": "conf-bw",
                               "eventTime": "2026-03-01T11:59:59Z"}).encode()
        taken = http.post(f"{base}/webhooks/bandwidth/bw", content=callback,
                          headers={"authorization": basic_authorization()})
        assert (taken.status_code, taken.content) == (204, b"")
        accepted = http.post(f"{base}/webhooks/telnyx/tx", content=body,
                             headers=telnyx_headers(body, now))
        assert (accepted.status_code, accepted.content) == (200, b"")
        daemon.process.send_signal(signal.SIGKILL)  # right after the answer
        daemon.process.wait(timeout=30)
        rows = daemon.query("select provider, account, event_key, call_id, outcome, body "
                            "from webhook_event order by id")
        logged = daemon.stderr()
    assert [tuple(row[:5]) for row in rows] == [
        ("bandwidth", "bw", rows[0][2], "c-9", "pending"),
        ("telnyx", "tx", "e-1", "v3:c", "pending")]
    assert rows[1][5] == body.decode()
    assert "Traceback" not in logged
    assert ENV["BW_HOOK_PASSWORD"] not in logged


def test_run_without_webhooks_listen_serves_no_receiver(tmp_path: Path) -> None:
    """Accounts naming webhook secrets but no ``[webhooks] listen``: nothing listens, and the
    daemon stops cleanly."""
    database, config = tmp_path / "hooks.db", tmp_path / "config.toml"
    _config(config, database)
    config.write_text(config.read_text().replace('[webhooks]\nlisten = "127.0.0.1:0"\n', ""))
    with running_daemon(Sim(url="", accounts=[], env=ENV), config, database) as daemon:
        _wait_for("the daemon to start", lambda: "poller running" in daemon.stderr(),
                  seconds=STARTUP_SECONDS)
        assert _served_url(daemon, "webhooks.listen") is None
        assert _terminate(daemon) == 0, daemon.stderr()


def test_simulate_pushes_events_that_run_applies(tmp_path: Path) -> None:
    """``poller simulate --webhook-url`` and ``poller run`` with its receiver there, as the
    README's manual set-up would: events of both providers are stored and, once polled past,
    applied; Bandwidth members get exact join times from them."""
    with socket.socket() as probe:  # a free port for the receiver, named to both
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with serving_simulator("--seed", "2", "--conferences", "4", "--webhook-url",
                           f"http://127.0.0.1:{port}/webhooks") as sim:
        telnyx, bandwidth = (dict(account) for account in sim.accounts)
        telnyx["webhook_public_key_env"] = "TELNYX_PUBLIC_KEY"
        bandwidth |= {"webhook_username_env": "BW_WEBHOOK_USER",
                      "webhook_password_env": "BW_WEBHOOK_PASSWORD"}
        database, config = tmp_path / "hooks.db", tmp_path / "config.toml"
        write_config(config, database, [telnyx, bandwidth])
        config.write_text(config.read_text() + f'\n[webhooks]\nlisten = "127.0.0.1:{port}"\n')
        with running_daemon(sim, config, database) as daemon:
            def applied() -> bool:
                assert daemon.alive(), daemon.stderr()
                rows = dict(daemon.query("SELECT provider, COUNT(*) FROM webhook_event WHERE "
                                         "outcome = 'applied' GROUP BY provider"))
                exact = daemon.query("SELECT COUNT(*) FROM member WHERE joined_at_source = "
                                     "'webhook'")
                return len(rows) == 2 and bool(exact) and exact[0][0] > 0

            _wait_for("events of both providers applied", applied)
            conflicts = daemon.query("SELECT detail FROM webhook_event WHERE outcome = "
                                     "'conflict'")
            assert _terminate(daemon) == 0, daemon.stderr()
            logged = daemon.stderr()
    assert conflicts == []
    assert "Traceback" not in logged
