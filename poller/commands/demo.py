"""``poller demo``: the whole chain in one command, against the bundled simulator.

Examples::

    poller demo                                   # a minute of lively conferences into ./demo.db
    poller demo --duration 120 --speed 60 --fault-rate 0.05
    poller --log-level warning demo               # also show each failed poll on stderr

It serves the simulator (a lively scenario compressed ``--speed`` times: its durations are
divided and its clock is real time, so the providers' own times and poller's poll times agree;
``--fault-rate`` of requests fail) with uvicorn on a free ``127.0.0.1`` port in a
background thread, builds a config with one Telnyx (API key) and one Bandwidth (OAuth2)
account pointing at it and the simulator's fake credentials passed in directly, migrates the
SQLite ``--database`` and runs the daemon (:class:`poller.daemon.service.Daemon`) on it. Every few
seconds it prints what has been recorded so far, counted on a read-only connection. After
``--duration`` seconds, or on Ctrl-C / SIGTERM, the daemon stops gracefully, the summary report
is printed, and the SQL to try next.

The demo database starts afresh each run (the simulator's conference IDs repeat from run to
run, with new timelines). A file that holds anything but demo accounts is never deleted: the
command refuses it (exit 2).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click
import uvicorn

from poller.app import App
from poller.commands import CliState
from poller.commands.report import SUMMARY
from poller.commands.simulate import _listening_socket
from poller.commands.timeline import write_busiest
from poller.config import (
    ApiKeyCredentials,
    Config,
    Credentials,
    DatabaseSettings,
    OAuth2Credentials,
    parse_config,
)
from poller.daemon.logs import configure_logging
from poller.daemon.service import Daemon
from poller.errors import StoreUnavailable
from poller.model import Provider
from poller.reports.tables import render_table
from poller.simulator import FaultConfig, ScenarioConfig, Simulator, WallClock, create_app
from poller.store import reports
from poller.store.bootstrap import exclusive_sqlite, open_database
from poller.store.demo import read_progress, recorded_accounts

TELNYX_ACCOUNT = "telnyx-demo"
BANDWIDTH_ACCOUNT = "bandwidth-demo"
DEMO_ACCOUNTS = frozenset({TELNYX_ACCOUNT, BANDWIDTH_ACCOUNT})

SLOW_FAULT_SECONDS = 3.0
"""How long a 'slow' fault holds its answer back: beyond the demo's read timeout below."""
SERVER_STOP_SECONDS = 10.0
"""Bound on waiting for the simulator's thread to stop."""

NEXT_QUERIES = (
    "select * from conference_summary limit 10",
    "select * from status_transition order by observed_at limit 10",
)
"""SQL the closing message suggests."""

DEMO_POLLING: dict[str, Any] = {
    # A minute of a conference passes every two real seconds at --speed 30: poll often.
    "interval_seconds": 1.0,
    "idle_interval_seconds": 2.0,
    "completion_grace_seconds": 2.0,
    "backoff_base_seconds": 1.0,
    "backoff_max_seconds": 5.0,
    "shutdown_grace_seconds": 3.0,
    "read_timeout_seconds": 2.0,
}


def demo_config(server_url: str, simulator: Simulator, database: Path
                ) -> tuple[Config, dict[str, Credentials]]:
    """Both demo accounts pointing at the simulator, and their (fake) credentials."""
    credentials = simulator.credentials
    telnyx_conferences: list[Any] = []
    for conference_id in simulator.conference_ids(Provider.TELNYX):
        timeline = simulator.timeline(Provider.TELNYX, conference_id)
        region = timeline.region if timeline is not None else None
        telnyx_conferences.append(conference_id if region in (None, "US")
                                  else {"id": conference_id, "region": region})
    document = {
        "database": {"url": f"sqlite:///{database}", "auto_migrate": True},
        "polling": DEMO_POLLING,
        "accounts": [
            {
                "name": TELNYX_ACCOUNT,
                "provider": "telnyx",
                # Names only: the credentials are handed over below, not read from them.
                "api_key_env": "TELNYX_API_KEY",
                "base_url": f"{server_url}/v2",
                "conferences": telnyx_conferences,
            },
            {
                "name": BANDWIDTH_ACCOUNT,
                "provider": "bandwidth",
                "account_id": credentials.bandwidth_account_id,
                "client_id_env": "BW_CLIENT_ID",
                "client_secret_env": "BW_CLIENT_SECRET",
                "base_url": f"{server_url}/api/v2",
                "token_url": f"{server_url}/api/v1/oauth2/token",
                "conferences": list(simulator.conference_ids(Provider.BANDWIDTH)),
            },
        ],
    }
    # An empty environment: $POLLER_DATABASE_URL must not send the demo elsewhere.
    config = parse_config(document, environ={}, source="poller demo")
    secrets: dict[str, Credentials] = {
        TELNYX_ACCOUNT: ApiKeyCredentials(api_key=credentials.telnyx_api_key),
        BANDWIDTH_ACCOUNT: OAuth2Credentials(
            client_id=credentials.bandwidth_client_id,
            client_secret=credentials.bandwidth_client_secret,
            token_url=f"{server_url}/api/v1/oauth2/token",
        ),
    }
    return config, secrets


def start_afresh(path: Path) -> None:
    """Delete a previous demo database; refuse (exit 2) a file holding anything else."""
    if not path.exists():
        return
    if path.stat().st_size:
        try:
            accounts = recorded_accounts(path)
        except StoreUnavailable as error:
            raise click.BadParameter(f"{error}; name another file",
                                     param_hint="--database") from None
        if accounts is None or not accounts <= DEMO_ACCOUNTS:
            raise click.BadParameter(
                f"{path} holds more than a previous demo; it is left alone: name another file",
                param_hint="--database")
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    shutil.rmtree(f"{path}.spool", ignore_errors=True)  # a previous demo's spool


class SimulatorThread:
    """The simulator served by uvicorn on its own thread and event loop."""

    def __init__(self, simulator: Simulator, host: str = "127.0.0.1") -> None:
        self.sock = _listening_socket(host, 0)
        port = self.sock.getsockname()[1]
        self.url = f"http://{host}:{port}"
        config = uvicorn.Config(create_app(simulator), log_level="critical", lifespan="off",
                                access_log=False, timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)
        # Off the main thread uvicorn leaves the signal handlers alone (the daemon has them).
        self.thread = threading.Thread(target=self._serve, name="poller-demo-simulator",
                                       daemon=True)

    def _serve(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def start(self) -> None:
        """Serve in the background (the socket already listens)."""
        self.thread.start()

    def stop(self) -> None:
        """Stop serving, waiting a bounded time."""
        self.server.should_exit = True
        self.thread.join(SERVER_STOP_SECONDS)
        if self.thread.is_alive():
            self.server.force_exit = True
            self.thread.join(SERVER_STOP_SECONDS)
        self.sock.close()


async def _drive(daemon: Daemon, database: Path, duration: float, every: float) -> bool:
    """Run the daemon, printing progress, until ``duration`` or a signal; whether it timed
    out (rather than being stopped)."""
    started = time.monotonic()
    running = asyncio.ensure_future(daemon.run())
    timed_out = False

    async def report_progress() -> None:
        while True:
            await asyncio.sleep(every)
            progress = await asyncio.to_thread(read_progress, database)
            if progress is not None:
                click.echo(progress.line(time.monotonic() - started))

    reporter = asyncio.ensure_future(report_progress())
    try:
        done, _ = await asyncio.wait([running], timeout=duration)
        if not done:
            timed_out = True
            click.echo(f"{duration:g} s are up: stopping the daemon…")
            daemon.request_stop("--duration elapsed")
        await running
    finally:
        reporter.cancel()
        await asyncio.gather(reporter, return_exceptions=True)
    return timed_out


@click.command()
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=60.0,
              show_default=True, help="Real seconds to poll before stopping (Ctrl-C stops "
                                      "earlier).")
@click.option("--speed", type=click.FloatRange(min=0, min_open=True), default=30.0,
              show_default=True, help="How many times faster than in life conferences "
                                      "run (their durations are divided by it).")
@click.option("--seed", type=int, default=1, show_default=True, help="Scenario seed.")
@click.option("--conferences", "conferences_per_provider", type=click.IntRange(1, 1000),
              default=12, show_default=True, help="Conferences per provider.")
@click.option("--fault-rate", type=click.FloatRange(0, 1), default=0.02, show_default=True,
              help="Share of provider requests that fail (429, 5xx, slow, reset, malformed, "
                   "truncated), to show errors being handled.")
@click.option("--database", type=click.Path(path_type=Path, dir_okay=False),
              default=Path("demo.db"), show_default=True,
              help="SQLite file to record into (a previous demo's is replaced).")
@click.option("--progress-every", type=click.FloatRange(min=0, min_open=True), default=3.0,
              show_default=True, help="Seconds between progress lines.")
@click.pass_context
def demo(ctx: click.Context, duration: float, speed: float, seed: int,
         conferences_per_provider: int, fault_rate: float, database: Path,
         progress_every: float) -> None:
    """Poll a simulator of both providers into a SQLite file, then show the summary.

    No configuration or credentials needed: the simulator runs in this process. Exits 0 after
    --duration seconds or Ctrl-C.
    """
    state = ctx.find_object(CliState)
    assert state is not None  # set by the ``poller`` group
    # Failed polls are part of the show (counted in the progress lines), so by default only
    # errors are logged; an explicit --log-level wins.
    parent = ctx.parent
    explicit = (parent is not None and parent.get_parameter_source("log_level")
                not in (None, click.core.ParameterSource.DEFAULT))
    configure_logging(state.log_level if explicit else "error", state.log_format)
    logging.getLogger("httpx").setLevel(logging.WARNING)

    path = database if database.is_absolute() else Path.cwd() / database
    with exclusive_sqlite(DatabaseSettings(url=f"sqlite:///{path}")):
        start_afresh(path)
        simulator = Simulator(
            # Real time, with the scenario's lives compressed: the providers' own times stay on
            # the clock of the polls that see them (a faster clock would run ahead of them).
            seed=seed, clock=WallClock(),
            scenario=ScenarioConfig.lively(conferences_per_provider).compressed(speed),
            faults=FaultConfig.spread(fault_rate, seed=seed,
                                      slow_delay_seconds=SLOW_FAULT_SECONDS))
        server = SimulatorThread(simulator)
        config, credentials = demo_config(server.url, simulator, path)
        app = App(config, credentials)
        engine = open_database(config.database)
        server.start()
        try:
            click.echo(
                f"poller demo: simulated Telnyx + Bandwidth on {server.url} (seed {seed}, "
                f"{conferences_per_provider} + {conferences_per_provider} lively conferences, "
                f"lives compressed {speed:g}x, fault rate {fault_rate:g})\n"
                f"recording into {path} (SQLite, migrated)\n"
                f"polling for {duration:g} s; Ctrl-C stops earlier")
            daemon = app.daemon(app.store(engine), lambda: (config, credentials))
            asyncio.run(_drive(daemon, path, duration, progress_every))
        finally:
            engine.dispose()
            server.stop()

    final = read_progress(path)
    if final is not None:
        click.echo(final.line(duration).replace(f"[{duration:4.0f}s]", "[done]"))
    click.echo("\nSummary (poller report summary):\n")
    url = f"sqlite:///{path}"
    result = reports.run_report(url, reports.summary, reports.ReportFilter())
    if result.rows:
        click.echo(render_table(SUMMARY.table, result.rows), nl=False)
    else:
        click.echo(SUMMARY.empty)
    shown = shlex.quote(str(database))
    shown_url = shlex.quote(f"sqlite:///{database}")
    click.echo(f"\nThe history is in {path}. Try next:\n")
    for query in NEXT_QUERIES:
        click.echo(f"  sqlite3 {shown} {shlex.quote(query)}")
    command = _poller_command()
    for name in ("conferences", "transitions", "members", "usage"):
        click.echo(f"  {command} report {name} --database-url {shown_url}")
    click.echo("\nTo poll real accounts, see config.toml and docs/configuration.md.")
    try:
        page = write_busiest(url, path.parent)
    except (StoreUnavailable, OSError) as error:
        click.echo(f"\n(no timeline page: {error})", err=True)
        return
    if page is not None:
        shown_page = page.relative_to(Path.cwd()) if page.is_relative_to(Path.cwd()) else page
        click.echo(f"\nThe busiest conference, drawn (poller report timeline): {shown_page}")


def _poller_command() -> str:
    """How the user can type ``poller`` here: the bare name when it is on PATH, else the path
    of the running executable relative to the current directory (e.g. ``.venv/bin/poller``)."""
    running = Path(sys.argv[0]).resolve()
    on_path = shutil.which("poller")
    if on_path is not None and Path(on_path).resolve() == running:
        return "poller"
    if running.name != "poller":
        return "poller"
    return shlex.quote(os.path.relpath(running))

