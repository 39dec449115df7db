"""``poller simulate`` as a real subprocess: what it prints, and what it serves over TCP."""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from poller.model import Provider
from poller.simulator import ScenarioConfig, Simulator

STARTUP_DEADLINE_SECONDS = 20.0
TELNYX_CONFERENCE = "/conferences/{id}"
TELNYX_PARTICIPANTS = "/conferences/{conference_id}/participants"
BANDWIDTH_CONFERENCE = "/accounts/{accountId}/conferences/{conferenceId}"
SEED = 5
CONFERENCES = 8


@dataclass
class RunningSimulator:
    """A ``poller simulate`` process and what it printed before serving."""

    process: subprocess.Popen[bytes]
    output: str
    url: str

    def config(self) -> dict[str, Any]:
        """The printed ``config.toml`` snippet, parsed."""
        snippet = self.output.split("# 1. Add to config.toml:")[1].split("# 2.")[0]
        return tomllib.loads(snippet)

    def exports(self) -> dict[str, str]:
        """The printed ``export NAME=value`` lines."""
        pairs = (line.removeprefix("export ").split("=", 1)
                 for line in self.output.splitlines() if line.startswith("export "))
        return {name: value for name, value in pairs}


def _poller_command() -> list[str]:
    script = Path(sys.executable).with_name("poller")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from poller.cli import main; main()"]


@contextmanager
def running_simulator(*options: str) -> Iterator[RunningSimulator]:
    """Start ``poller simulate --port 0 …``, read its banner, stop it afterwards; fail if it
    logged a traceback."""
    command = [*_poller_command(), "simulate", "--port", "0", *options]
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            yield RunningSimulator(process, *_banner(process))
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()
        stderr.seek(0)
        logged = stderr.read().decode()
    assert "Traceback" not in logged, logged
    assert "Exception in ASGI" not in logged, logged


def _banner(process: subprocess.Popen[bytes]) -> tuple[str, str]:
    """Everything printed up to the "Serving on" line, and the URL it names."""
    assert process.stdout is not None
    received = b""
    deadline = time.monotonic() + STARTUP_DEADLINE_SECONDS
    with selectors.DefaultSelector() as selector:
        # Raw reads: a buffered reader could hold lines that select() no longer reports.
        selector.register(process.stdout, selectors.EVENT_READ)
        while b"(Ctrl-C to stop)" not in received:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no banner in time; got:\n{received.decode()}"
            if selector.select(timeout=remaining):
                chunk = os.read(process.stdout.fileno(), 65536)
                assert chunk, f"simulate exited early:\n{received.decode()}"
                received += chunk
    output = received.decode()
    return output, output.split("# Serving on ")[1].split()[0]


def _get_when_up(client: httpx.Client, path: str) -> httpx.Response:
    """GET ``path``, retrying connection refusals until a bounded deadline."""
    deadline = time.monotonic() + STARTUP_DEADLINE_SECONDS
    while True:
        try:
            return client.get(path)
        except httpx.ConnectError:
            if time.monotonic() > deadline:
                raise


def _live_throughout(provider: Provider, seconds: float) -> set[str]:
    """IDs the same world serves for the whole first ``seconds`` after its start."""
    world = Simulator(seed=SEED, scenario=ScenarioConfig(telnyx_conferences=CONFERENCES,
                                                         bandwidth_conferences=CONFERENCES))
    return {life.conference_id for life in world.timelines(provider)
            if life.exists_at(0) and life.exists_at(round(seconds * 1000))}


def test_simulate_serves_what_it_prints(telnyx_spec: Any, bandwidth_spec: Any) -> None:
    """The printed config and credentials reach both providers' conferences, and 404s, each
    body valid against its provider's spec."""
    with running_simulator("--seed", str(SEED), "--conferences", str(CONFERENCES)) as sim:
        assert sim.url.startswith("http://127.0.0.1:")
        telnyx, bandwidth = sim.config()["accounts"]
        env = sim.exports()
        assert telnyx["base_url"] == f"{sim.url}/v2"
        assert bandwidth["base_url"] == f"{sim.url}/api/v2"
        assert bandwidth["token_url"] == f"{sim.url}/api/v1/oauth2/token"
        assert len(telnyx["conferences"]) == len(bandwidth["conferences"]) == CONFERENCES
        live_telnyx = _live_throughout(Provider.TELNYX, 120)
        live_bandwidth = _live_throughout(Provider.BANDWIDTH, 120)
        assert live_telnyx, "the seed must give live Telnyx conferences"
        assert live_bandwidth, "the seed must give live Bandwidth conferences"

        with httpx.Client(base_url=sim.url, timeout=10) as client:
            assert _get_when_up(client, "/_sim/clock").status_code == 200
            api_key = env[telnyx["api_key_env"]]
            headers = {"Authorization": f"Bearer {api_key}"}
            for entry in telnyx["conferences"]:
                conference_id, region = ((entry, None) if isinstance(entry, str)
                                         else (entry["id"], entry["region"]))
                params = {"region": region} if region else {}
                url = f"{telnyx['base_url']}/conferences/{conference_id}"
                response = client.get(url, params=params, headers=headers)
                if conference_id in live_telnyx:
                    assert response.status_code == 200
                    telnyx_spec.validate_response(response.json(), TELNYX_CONFERENCE, "get",
                                                  200)
                    assert response.json()["data"]["id"] == conference_id
                    participants = client.get(f"{url}/participants", params=params,
                                              headers=headers)
                    assert participants.status_code == 200
                    telnyx_spec.validate_response(participants.json(), TELNYX_PARTICIPANTS,
                                                  "get", 200)
                    assert participants.json()["meta"]["page_number"] == 1
                else:
                    assert response.status_code in (200, 404)
            unknown = client.get(f"{telnyx['base_url']}/conferences/no-such-conference",
                                 headers=headers)
            assert unknown.status_code == 404
            telnyx_spec.validate_response(unknown.json(), TELNYX_CONFERENCE, "get", 404)
            assert unknown.json()["errors"][0]["code"] == "90058"

            token = client.post(bandwidth["token_url"],
                                auth=(env[bandwidth["client_id_env"]],
                                      env[bandwidth["client_secret_env"]]),
                                data={"grant_type": "client_credentials"})
            assert token.status_code == 200
            bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
            account_url = f"{bandwidth['base_url']}/accounts/{bandwidth['account_id']}"
            for conference_id in bandwidth["conferences"]:
                response = client.get(f"{account_url}/conferences/{conference_id}",
                                      headers=bearer)
                if conference_id in live_bandwidth:
                    assert response.status_code == 200
                    bandwidth_spec.validate_response(response.json(), BANDWIDTH_CONFERENCE,
                                                     "get", 200)
                    for member in response.json()["activeMembers"]:
                        assert member["memberUrl"].startswith(f"{account_url}/conferences/")
                else:
                    assert response.status_code in (200, 404)
            unknown = client.get(f"{account_url}/conferences/conf-nope", headers=bearer)
            assert unknown.status_code == 404
            bandwidth_spec.validate_response(unknown.json(), BANDWIDTH_CONFERENCE, "get", 404)
            assert unknown.json() == {"type": "validation",
                                      "description": "Conference [conf-nope] not found",
                                      "id": None}


@pytest.mark.parametrize("attempts", [60])
def test_reset_under_uvicorn_drops_the_connection(attempts: int) -> None:
    """Under uvicorn a reset fault drops the TCP connection unanswered; the server carries on."""
    with running_simulator("--seed", "3", "--fault-rate", "1", "--slow-seconds", "0") as sim:
        conference = sim.config()["accounts"][0]["conferences"][0]
        conference_id = conference if isinstance(conference, str) else conference["id"]
        headers = {"Authorization": f"Bearer {sim.exports()['TELNYX_API_KEY']}"}
        resets = 0
        with httpx.Client(base_url=sim.url, timeout=10) as client:
            _get_when_up(client, "/_sim/clock")
            for _ in range(attempts):
                try:
                    client.get(f"/v2/conferences/{conference_id}", headers=headers)
                except (httpx.ReadError, httpx.RemoteProtocolError):
                    resets += 1
            stats = client.get("/_sim/stats").json()
        assert resets == stats["faults"]["reset"] > 0
        assert stats["requests"] == attempts
        assert sim.process.poll() is None
