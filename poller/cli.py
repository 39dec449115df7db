"""The ``poller`` command line.

Exit codes (documented in the README):

* 0 — success;
* 1 — the command ran but failed (a poll failed in ``once``, the database was unreachable, …);
* 2 — bad usage or configuration (the message names the option or key).
"""

from __future__ import annotations

import importlib
import sys
import traceback
from pathlib import Path

import click

from poller.commands import CliState
from poller.daemon.logs import LOG_FORMATS, LOG_LEVELS, LogFormat
from poller.daemon.signals import EarlySignals
from poller.errors import ConfigError, PollerError

EXIT_FAILURE = 1
EXIT_CONFIG = 2

COMMANDS = {
    "check-config": "poller.commands.check_config:check_config",
    "db": "poller.commands.db:db",
    "demo": "poller.commands.demo:demo",
    "once": "poller.commands.once:once",
    "prune": "poller.commands.prune:prune",
    "report": "poller.commands.report:report",
    "run": "poller.commands.run:run",
    "simulate": "poller.commands.simulate:simulate",
    "status": "poller.commands.status:status",
    "watch": "poller.commands.watch:watch_group",
}
"""Each sub-command and where it lives: a command's module is imported only when it runs (or
``--help`` lists it), so ``poller report`` does not load the daemon, the HTTP stack or the
simulator (about two seconds of a slow machine's start-up)."""


class LazyGroup(click.Group):
    """A group whose sub-commands (:data:`COMMANDS`) are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every sub-command's name, sorted."""
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The sub-command ``cmd_name``, imported now; ``None`` if there is no such command."""
        where = COMMANDS.get(cmd_name)
        if where is None:
            return None
        module, name = where.split(":")
        command = getattr(importlib.import_module(module), name)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Config file (default: $POLLER_CONFIG, else ./config.toml if present).",
)
@click.option("--log-format", type=click.Choice(LOG_FORMATS), default="text", show_default=True,
              help="Log lines on stderr: text for people, json for one object per line.")
@click.option("--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False),
              default="info", show_default=True, help="Least severe log level shown.")
@click.version_option(package_name="poller")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, log_format: LogFormat,
        log_level: str) -> None:
    """Keep a durable SQL history of Telnyx and Bandwidth voice conferences."""
    early = ctx.obj if isinstance(ctx.obj, EarlySignals) else None  # from main()
    if early is not None and ctx.invoked_subcommand != "run":
        early.release()  # only the daemon answers SIGHUP: the others behave as usual
        early = None
    ctx.obj = CliState(config_path=config_path, log_level=log_level.lower(),
                       log_format=log_format, early=early)


def main(argv: list[str] | None = None, *, early: EarlySignals | None = None) -> None:
    """Runs the CLI and maps poller errors to exit codes (``poller.entry`` calls it with the
    signals it noted while this module loaded)."""
    try:
        # Without standalone mode click returns (not raises) the code of ``ctx.exit(code)``.
        code = cli.main(args=argv, prog_name="poller", standalone_mode=False, obj=early)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(EXIT_FAILURE)
    except ConfigError as exc:
        click.echo(f"poller: configuration error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    except PollerError as exc:
        click.echo(f"poller: {exc}", err=True)
        sys.exit(EXIT_FAILURE)
    except Exception as exc:  # our own bug: the traceback says where, the last line says what
        traceback.print_exc()
        click.echo(f"poller: internal error (a bug of poller's own, not of the configuration "
                   f"or the database; the traceback above says where): "
                   f"{type(exc).__name__}: {exc}", err=True)
        sys.exit(EXIT_FAILURE)
    finally:
        if early is not None:
            early.restore()
    sys.exit(code if isinstance(code, int) else 0)
