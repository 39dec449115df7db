"""``poller simulate``: serve the provider simulator and print how to point poller at it.

Examples::

    poller simulate --port 8765                       # 20 + 20 conferences, real time
    poller simulate --port 0 --lively --speed 30      # any free port; an hour in two minutes
    poller simulate --conferences 10000 --fault-rate 0.05 --slow-seconds 30
    poller simulate --port 0 --steady --conferences 5000   # benchmarks: POST /_sim/churn
    poller simulate --latency-ms 80 --latency-jitter-ms 20   # a real provider's round trip
    poller simulate --webhook-url http://127.0.0.1:9110/webhooks   # push the events too

It binds the socket first (so ``--port 0`` picks a free port and the printed URLs are right),
prints a ``config.toml`` snippet and ``export`` lines for the simulator's fake credentials on
stdout, then serves with uvicorn until SIGINT / SIGTERM.

The snippet follows DESIGN §6: one ``[[accounts]]`` table per provider, ``base_url`` (and the
Bandwidth ``token_url``) pointing at the simulator, every served conference ID (Telnyx ones
outside the default ``US`` region as ``{ id = …, region = … }``), and the *names* of the
environment variables holding the credentials; the ``export`` lines set those variables.

With ``--webhook-url`` it also pushes every event of its conferences (Telnyx webhooks signed
with its key, Bandwidth callbacks after the Basic challenge) to poller's receiver, as
``poller.simulator.delivery`` describes; the events carry the simulated times, which poller
matches against its own clock, so this needs real time (``--speed 1``, no virtual clock).
"""

from __future__ import annotations

import asyncio
import json
import shlex
import socket

import click
import uvicorn

from poller.model import Provider
from poller.simulator import (
    Credentials,
    FaultConfig,
    LatencyConfig,
    ScenarioConfig,
    Simulator,
    VirtualClock,
    WallClock,
    create_app,
)
from poller.simulator.clock import Clock
from poller.simulator.config import DEFAULT_SLOW_DELAY_SECONDS
from poller.simulator.delivery import DeliveryFaults, EventDelivery
from poller.simulator.webhooks import (
    BANDWIDTH_WEBHOOK_PASSWORD,
    BANDWIDTH_WEBHOOK_USERNAME,
    SIMULATOR_PUBLIC_KEY,
)

TELNYX_API_KEY_ENV = "TELNYX_API_KEY"
BANDWIDTH_CLIENT_ID_ENV = "BW_CLIENT_ID"
BANDWIDTH_CLIENT_SECRET_ENV = "BW_CLIENT_SECRET"  # noqa: S105 (a variable name)
BANDWIDTH_USERNAME_ENV = "BW_USERNAME"
BANDWIDTH_PASSWORD_ENV = "BW_PASSWORD"  # noqa: S105 (a variable name)
TELNYX_PUBLIC_KEY_ENV = "TELNYX_PUBLIC_KEY"
BANDWIDTH_WEBHOOK_USER_ENV = "BW_WEBHOOK_USER"
BANDWIDTH_WEBHOOK_PASSWORD_ENV = "BW_WEBHOOK_PASSWORD"  # noqa: S105 (a variable name)

KEEP_ALIVE_SECONDS = 75
"""How long the simulator keeps an idle connection open (see ``simulate``)."""


def _toml_string(value: str) -> str:
    # JSON string syntax is valid TOML basic-string syntax for these ASCII values.
    return json.dumps(value)


def _conference_lines(entries: list[str]) -> list[str]:
    return ["conferences = ["] + [f"    {entry}," for entry in entries] + ["]"]


def config_snippet(sim: Simulator, server_url: str) -> str:
    """``[[accounts]]`` tables pointing poller at the simulator served at ``server_url``."""
    server_url = server_url.rstrip("/")
    telnyx_entries = []
    for conference_id in sim.conference_ids(Provider.TELNYX):
        timeline = sim.timeline(Provider.TELNYX, conference_id)
        region = timeline.region if timeline is not None else None
        if region is None or region == "US":
            telnyx_entries.append(_toml_string(conference_id))
        else:
            telnyx_entries.append(
                f"{{ id = {_toml_string(conference_id)}, region = {_toml_string(region)} }}")
    bandwidth_entries = [_toml_string(cid) for cid in sim.conference_ids(Provider.BANDWIDTH)]
    credentials = sim.credentials
    lines = [
        "[[accounts]]",
        'name = "telnyx-sim"',
        'provider = "telnyx"',
        f"api_key_env = {_toml_string(TELNYX_API_KEY_ENV)}",
        f"# to take its webhooks ([webhooks] listen, docs/webhooks.md): "
        f"webhook_public_key_env = {_toml_string(TELNYX_PUBLIC_KEY_ENV)}",
        f"base_url = {_toml_string(server_url + '/v2')}",
        *_conference_lines(telnyx_entries),
        "",
        "[[accounts]]",
        'name = "bandwidth-sim"',
        'provider = "bandwidth"',
        f"account_id = {_toml_string(credentials.bandwidth_account_id)}",
        f"client_id_env = {_toml_string(BANDWIDTH_CLIENT_ID_ENV)}",
        f"client_secret_env = {_toml_string(BANDWIDTH_CLIENT_SECRET_ENV)}",
        f"# or Basic auth: username_env = {_toml_string(BANDWIDTH_USERNAME_ENV)}, "
        f"password_env = {_toml_string(BANDWIDTH_PASSWORD_ENV)}",
        f"# to take its callbacks: webhook_username_env = "
        f"{_toml_string(BANDWIDTH_WEBHOOK_USER_ENV)}, "
        f"webhook_password_env = {_toml_string(BANDWIDTH_WEBHOOK_PASSWORD_ENV)}",
        f"base_url = {_toml_string(server_url + '/api/v2')}",
        f"token_url = {_toml_string(server_url + '/api/v1/oauth2/token')}",
        *_conference_lines(bandwidth_entries),
    ]
    return "\n".join(lines) + "\n"


def export_lines(credentials: Credentials) -> str:
    """``export NAME=value`` lines for the simulator's fake credentials."""
    values = {
        TELNYX_API_KEY_ENV: credentials.telnyx_api_key,
        BANDWIDTH_CLIENT_ID_ENV: credentials.bandwidth_client_id,
        BANDWIDTH_CLIENT_SECRET_ENV: credentials.bandwidth_client_secret,
        BANDWIDTH_USERNAME_ENV: credentials.bandwidth_username,
        BANDWIDTH_PASSWORD_ENV: credentials.bandwidth_password,
        TELNYX_PUBLIC_KEY_ENV: SIMULATOR_PUBLIC_KEY,
        BANDWIDTH_WEBHOOK_USER_ENV: BANDWIDTH_WEBHOOK_USERNAME,
        BANDWIDTH_WEBHOOK_PASSWORD_ENV: BANDWIDTH_WEBHOOK_PASSWORD,
    }
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in values.items())


def _listening_socket(host: str, port: int) -> socket.socket:
    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose proto
    # says TCP, and without it every response waits ~40 ms for a delayed ACK.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise click.BadParameter(f"cannot listen on {host}:{port}: {exc}",
                                 param_hint="--host/--port") from exc
    sock.listen(1024)
    return sock


@click.command()
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="TCP port (0: any free port; the chosen one is printed).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--seed", type=int, default=1, show_default=True, help="Scenario seed.")
@click.option("--conferences", "conferences_per_provider", type=click.IntRange(1, 1_000_000),
              default=20, show_default=True, help="Conferences per provider.")
@click.option("--fault-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of provider requests that fail, split evenly over 429, 500, 503, "
                   "slow, reset, malformed and truncated.")
@click.option("--slow-seconds", type=click.FloatRange(0), default=DEFAULT_SLOW_DELAY_SECONDS,
              show_default=True,
              help="Real seconds a 'slow' fault holds its answer back (above poller's 15 s "
                   "read timeout by default).")
@click.option("--latency-ms", type=click.FloatRange(0, 600_000), default=0.0, show_default=True,
              help="Real milliseconds every provider API answer is held back (a round trip; "
                   "requests wait concurrently).")
@click.option("--latency-jitter-ms", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Each answer's wait is --latency-ms plus a uniform draw in +-this (at most "
                   "--latency-ms).")
@click.option("--speed", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, help="Simulated seconds per real second.")
@click.option("--lively", is_flag=True,
              help="Short conferences and busy members (Telnyx limit 30 min, Bandwidth 1 h).")
@click.option("--steady", is_flag=True,
              help="Benchmark world: every conference in progress with one member and nothing "
                   "changing, except through POST /_sim/churn.")
@click.option("--virtual-clock", is_flag=True,
              help="Freeze time; move it with POST /_sim/clock {\"advance_seconds\": N}.")
@click.option("--webhook-url", default=None, metavar="URL",
              help="Push the conferences' events to poller's receiver here "
                   "(http://HOST:PORT/webhooks, its [webhooks] listen address).")
@click.option("--webhook-accounts", default="telnyx-sim,bandwidth-sim", show_default=True,
              metavar="TELNYX,BANDWIDTH", help="The account names the events are posted for.")
@click.option("--webhook-drop", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of events never sent.")
@click.option("--webhook-duplicate", type=click.FloatRange(0, 1), default=0.0,
              show_default=True, help="Share of events sent twice.")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]),
              default="warning", show_default=True, help="uvicorn log level (stderr).")
def simulate(port: int, host: str, seed: int, conferences_per_provider: int, fault_rate: float,
             slow_seconds: float, latency_ms: float, latency_jitter_ms: float, speed: float,
             lively: bool, steady: bool,
             virtual_clock: bool, webhook_url: str | None, webhook_accounts: str,
             webhook_drop: float, webhook_duplicate: float, log_level: str) -> None:
    """Serve a simulator of the Telnyx and Bandwidth conference APIs.

    Prints a config.toml snippet and the credentials to export, then serves until
    interrupted. Ground truth: GET /_sim/truth; served IDs: GET /_sim/conferences.
    """
    if lively and steady:
        raise click.UsageError("--lively and --steady exclude each other")
    if latency_jitter_ms > latency_ms:
        raise click.BadParameter("must not exceed --latency-ms",
                                 param_hint="--latency-jitter-ms")
    names = webhook_accounts.split(",")
    if webhook_url is not None and (speed != 1 or virtual_clock):
        raise click.UsageError("--webhook-url needs real time (--speed 1, no --virtual-clock): "
                               "poller matches the events' times against its own clock")
    if len(names) != 2 or not all(names):
        raise click.BadParameter("give two names: TELNYX,BANDWIDTH",
                                 param_hint="--webhook-accounts")
    if lively:
        scenario = ScenarioConfig.lively(conferences_per_provider)
    elif steady:
        scenario = ScenarioConfig.steady(conferences_per_provider)
    else:
        scenario = ScenarioConfig(telnyx_conferences=conferences_per_provider,
                                  bandwidth_conferences=conferences_per_provider)
    clock: Clock = VirtualClock(WallClock().now()) if virtual_clock else WallClock(speed=speed)
    simulator = Simulator(
        seed=seed,
        clock=clock,
        scenario=scenario,
        faults=FaultConfig.spread(fault_rate, seed=seed, slow_delay_seconds=slow_seconds),
        latency=LatencyConfig.ms(latency_ms, latency_jitter_ms, seed=seed),
    )
    sock = _listening_socket(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    url_host = f"[{bound_host}]" if ":" in bound_host else bound_host
    server_url = f"http://{url_host}:{bound_port}"
    click.echo(
        f"# poller simulator on {server_url} — seed {seed}, {conferences_per_provider} Telnyx "
        f"+ {conferences_per_provider} Bandwidth conferences, speed {speed:g}x, "
        f"fault rate {fault_rate:g}, latency {latency_ms:g} ms (+-{latency_jitter_ms:g})\n"
        f"# ground truth: {server_url}/_sim/truth   served IDs: {server_url}/_sim/conferences\n"
        f"#\n# 1. Add to config.toml:\n\n"
        f"{config_snippet(simulator, server_url)}\n"
        f"# 2. Set the simulator's (fake, simulator-only) credentials:\n\n"
        f"{export_lines(simulator.credentials)}"
    )
    click.echo(f"# Serving on {server_url} (Ctrl-C to stop)", nl=True)
    # Idle connections are kept 75 s (nginx's default; uvicorn's is 5 s), longer than poller
    # keeps them (30 s), as a provider's front end does: a server closing a connection just as
    # the client reuses it fails requests that a real provider would have answered.
    config = uvicorn.Config(create_app(simulator), log_level=log_level, lifespan="off",
                            access_log=log_level in ("info", "debug"),
                            timeout_keep_alive=KEEP_ALIVE_SECONDS)
    server = uvicorn.Server(config)
    if webhook_url is None:
        asyncio.run(server.serve(sockets=[sock]))
        return
    delivery = EventDelivery(simulator, webhook_url, {Provider.TELNYX: names[0],
                                                      Provider.BANDWIDTH: names[1]},
                             faults=DeliveryFaults(drop=webhook_drop,
                                                   duplicate=webhook_duplicate, seed=seed))
    click.echo(f"# Pushing events to {webhook_url}/{{telnyx,bandwidth}}/<account>", nl=True)
    asyncio.run(_serve_and_deliver(server, sock, delivery))


async def _serve_and_deliver(server: uvicorn.Server, sock: socket.socket,
                             delivery: EventDelivery) -> None:
    """Serve until stopped, pushing the events meanwhile."""
    pushing = asyncio.ensure_future(delivery.run())
    try:
        await server.serve(sockets=[sock])
    finally:
        pushing.cancel()
        await asyncio.gather(pushing, return_exceptions=True)
