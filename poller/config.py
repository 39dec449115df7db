"""Where poller's configuration comes from.

The config file is ``--config PATH``, else ``$POLLER_CONFIG``, else ``./config.toml`` when it
exists. The database URL is ``$POLLER_DATABASE_URL``, else the file's ``[database] url``, else
the embedded SQLite default. (The full typed configuration lands with the daemon.)
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from poller.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("config.toml")
DEFAULT_DATABASE_URL = "sqlite:///conferences.db"
CONFIG_ENV = "POLLER_CONFIG"
DATABASE_URL_ENV = "POLLER_DATABASE_URL"


def config_path(explicit: Path | None = None) -> Path | None:
    """The config file to read, or ``None`` when there is none (defaults apply)."""
    if explicit is not None:
        return explicit
    from_env = os.environ.get(CONFIG_ENV)
    if from_env:
        return Path(from_env)
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None


def load_toml(path: Path) -> dict[str, object]:
    """Read a TOML file, turning every failure into a ``ConfigError`` that names the file."""
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


def database_url(explicit_config: Path | None = None) -> str:
    """The database URL poller uses, following the precedence in the module docstring."""
    from_env = os.environ.get(DATABASE_URL_ENV)
    if from_env:
        return from_env
    path = config_path(explicit_config)
    if path is None:
        return DEFAULT_DATABASE_URL
    database = load_toml(path).get("database", {})
    if not isinstance(database, dict):
        raise ConfigError(f"{path}: [database] must be a table", key="database")
    url = database.get("url", DEFAULT_DATABASE_URL)
    if not isinstance(url, str) or not url:
        raise ConfigError(f"{path}: database.url must be a non-empty string", key="database.url")
    return url
