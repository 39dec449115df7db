"""``poller check-config``: validate the configuration and the environment, calling no one.

Examples::

    poller check-config                       # ./config.toml (or $POLLER_CONFIG)
    poller --config /etc/poller.toml check-config

It loads the file exactly as the daemon does, reads every account's credentials from the
environment variables the file names, and checks that the database driver is installed (and,
for SQLite, that the file's directory exists). It makes no network request and opens no
database connection. On success it prints a short summary and exits 0; otherwise
``poller.cli.main`` prints the one ``ConfigError`` (naming the key and, for a secret, the
variable) and exits 2. Secret values are never printed; the database password is masked.
"""

from __future__ import annotations

import os
from pathlib import Path

import click
from sqlalchemy.engine import make_url
from sqlalchemy.exc import NoSuchModuleError

from poller import config
from poller.commands import CliState, pass_state
from poller.config import BandwidthAccount, Config, DatabaseSettings, TelnyxAccount
from poller.errors import ConfigError


def check_database(database: DatabaseSettings) -> None:
    """``ConfigError`` unless the URL's driver is installed and a SQLite file's folder exists."""
    url = make_url(database.url)
    try:
        url.get_dialect()
    except (NoSuchModuleError, ImportError) as exc:
        raise ConfigError(
            f"database.url: no installed driver for {url.drivername!r} "
            f"({database.display_url()}): {type(exc).__name__}",
            key="database.url",
        ) from None
    if database.is_sqlite and url.database and url.database != ":memory:":
        folder = Path(url.database).parent
        if not url.database.startswith("file:") and not folder.is_dir():
            raise ConfigError(f"database.url: the folder {folder} of the SQLite file does not "
                              "exist", key="database.url")


def _auth(account: TelnyxAccount | BandwidthAccount) -> str:
    names = " + ".join(f"${name}" for name in account.secret_env_names)
    if isinstance(account, TelnyxAccount):
        return f"API key from {names}"
    mode = "OAuth2" if account.auth_mode == "oauth2" else "Basic"
    return f"account_id {account.account_id}, {mode} from {names}"


def _discovery(account: TelnyxAccount | BandwidthAccount, every: float) -> str:
    """``"; discovers every 60 s (US), list polling"``, or ``""`` for a plain account."""
    parts = []
    if account.discover:
        scope: list[str] = []
        if isinstance(account, TelnyxAccount):
            scope.extend(account.discover_regions)
        if account.discover_name is not None:
            scope.append(f"name {account.discover_name!r}")
        parts.append(f"discovers every {every:g} s" + (f" ({', '.join(scope)})" if scope else ""))
    if account.uses_list_polling:
        parts.append("list polling")
    return "; " + ", ".join(parts) if parts else ""


def _webhooks(loaded: Config) -> str:
    """``"webhooks: 127.0.0.1:9110 for tx, bw"``, or what keeps them off."""
    taking = [account.name for account in loaded.accounts
              if (account.webhook_public_key_env if isinstance(account, TelnyxAccount)
                  else account.webhook_username_env) is not None]
    if loaded.webhooks.listen is None:
        return "webhooks: off" + (f" (set webhooks.listen for {', '.join(taking)})"
                                  if taking else "")
    return (f"webhooks: {loaded.webhooks.listen} for "
            + (", ".join(taking) if taking else "no account (none names a webhook secret)"))


def summary(loaded: Config, path: Path | None, *, url_from_env: bool) -> list[str]:
    """The lines ``check-config`` prints for a valid configuration (no secret in any)."""
    database = loaded.database
    polling = loaded.polling
    origin = f"from ${config.DATABASE_URL_ENV}; " if url_from_env else ""
    lines = [
        f"config: {path if path is not None else 'none (every default applies)'}",
        f"database: {database.display_url()} "
        f"({origin}auto_migrate {'on' if database.auto_migrate else 'off'})",
        f"polling: every {polling.interval_seconds:g} s (idle {polling.idle_interval_seconds:g} "
        f"s), {polling.slots or 'auto (32 to 1024)'} at once",
        f"metrics: {loaded.metrics.listen or 'off'}; health: {loaded.health.listen or 'off'}",
        _webhooks(loaded),
        f"daemon: identity {loaded.daemon.identity or 'host:pid (default)'}, lease "
        f"{loaded.daemon.effective_lease_seconds(polling):g} s, heartbeat every "
        f"{loaded.daemon.effective_heartbeat_seconds(polling):g} s",
    ]
    if not loaded.accounts:
        lines.append("accounts: none, so there is nothing to poll (add [[accounts]] tables)")
        return lines
    lines.append(f"accounts: {len(loaded.accounts)}")
    width = max(len(account.name) for account in loaded.accounts)
    for account in loaded.accounts:
        count = len(account.conferences)
        lines.append(
            f"  {account.name:<{width}}  {account.provider:<9}  "
            f"{count:>5} conference{'' if count == 1 else 's'}  "
            f"{account.base_url}  {_auth(account)}"
            f"{_discovery(account, polling.discovery_interval_seconds)}"
        )
    total = sum(len(account.conferences) for account in loaded.accounts)
    discovering = sum(account.discover for account in loaded.accounts)
    lines.append(f"config OK: {total} conference{'' if total == 1 else 's'} in "
                 f"{len(loaded.accounts)} account{'' if len(loaded.accounts) == 1 else 's'}"
                 + (f", {discovering} of them discovering more" if discovering else ""))
    return lines


@click.command("check-config")
@pass_state
def check_config(state: CliState) -> None:
    """Validate config.toml and the credentials' environment variables; call nothing.

    Prints a summary and exits 0, or prints the problem (naming the key and, for a missing
    secret, the environment variable) and exits 2.
    """
    path = config.config_path(state.config_path)
    loaded = config.load_config(state.config_path)
    config.resolve_all_credentials(loaded)
    config.resolve_webhook_secrets(loaded)
    check_database(loaded.database)
    url_from_env = bool(os.environ.get(config.DATABASE_URL_ENV))
    click.echo("\n".join(summary(loaded, path, url_from_env=url_from_env)))
