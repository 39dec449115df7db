"""Where poller's configuration comes from, and how it is loaded and checked.

The config file is ``--config PATH``, else ``$POLLER_CONFIG``, else ``./config.toml`` when it
exists (no file: every default applies and there are no accounts). The database URL is
``$POLLER_DATABASE_URL``, else the file's ``[database] url``, else the embedded SQLite default.

Loading has two steps, so that ``poller check-config`` can report each problem precisely:

1. ``load_config`` reads the TOML and validates it into the frozen ``Config`` of
   ``poller.config.settings`` (no environment lookups but ``POLLER_CONFIG`` and
   ``POLLER_DATABASE_URL``);
2. ``poller.config.credentials.resolve_credentials`` reads one account's secrets from the
   environment variables it names.

The file never holds secrets: keys such as ``api_key`` or ``password`` are refused with a
message pointing at their ``*_env`` form, and so is a password inside ``[database] url`` (put
the URL in ``$POLLER_DATABASE_URL``, or use ``PGPASSWORD`` / ``~/.pgpass``). Every failure is a
``ConfigError`` whose ``key`` is the dotted key (``accounts[1].conferences[3].region``) and
whose message names that key and, for secrets, the variable; no message ever contains a secret
value or a rejected input.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from poller.config.accounts import BandwidthAccount, BandwidthConference, Conference, TelnyxAccount
from poller.config.fields import (
    AUTO_MEMBER,
    COUNT_MEMBER,
    DEFAULT_DATABASE_URL,
    parse_database_url,
)
from poller.config.settings import (
    Config,
    DaemonSettings,
    DatabaseSettings,
    ListenSettings,
    PollingSettings,
    RetentionSettings,
    SpoolSettings,
)
from poller.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("config.toml")
CONFIG_ENV = "POLLER_CONFIG"
DATABASE_URL_ENV = "POLLER_DATABASE_URL"

_SECRET_KEYS = {
    "api_key": "api_key_env",
    "apikey": "api_key_env",
    "token": "api_key_env",
    "access_token": "api_key_env",
    "client_id": "client_id_env",
    "client_secret": "client_secret_env",
    "secret": "client_secret_env",
    "username": "username_env",
    "password": "password_env",
}
"""Keys that would put a credential in the file, and the ``*_env`` key to use instead."""

_MODELS: tuple[type[BaseModel], ...] = (
    Config, DatabaseSettings, PollingSettings, RetentionSettings, ListenSettings, DaemonSettings,
    SpoolSettings,
    TelnyxAccount, BandwidthAccount, Conference, BandwidthConference,
)
_KNOWN_KEYS = sorted({name for model in _MODELS for name in model.model_fields})
_PROVIDERS = ("telnyx", "bandwidth")

Environ = Mapping[str, str]
_M = TypeVar("_M", bound=BaseModel)


def config_path(explicit: Path | None = None, environ: Environ | None = None) -> Path | None:
    """The config file to read, or ``None`` when there is none (defaults apply)."""
    if explicit is not None:
        return explicit
    from_env = (os.environ if environ is None else environ).get(CONFIG_ENV)
    if from_env:
        return Path(from_env)
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None


def load_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file, turning every failure into a ``ConfigError`` that names the file."""
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"config file is a directory: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


def database_url(explicit_config: Path | None = None, environ: Environ | None = None) -> str:
    """The database URL poller uses, following the precedence in the module docstring.

    Only ``[database]`` of the file is read and checked, so ``poller db …`` works while the rest
    of the file is being written.
    """
    from_env = (os.environ if environ is None else environ).get(DATABASE_URL_ENV)
    if from_env:
        _check_override(from_env)
        return from_env
    path = config_path(explicit_config, environ)
    if path is None:
        return DEFAULT_DATABASE_URL
    document = load_toml(path)
    section = document.get("database", {})
    _refuse_password_in_url(section, str(path))
    return _validate(DatabaseSettings, section, str(path), prefix=("database",)).url


def load_config(explicit: Path | None = None, environ: Environ | None = None) -> Config:
    """The validated configuration of the file ``config_path`` picks (defaults if none)."""
    path = config_path(explicit, environ)
    document = load_toml(path) if path is not None else {}
    return parse_config(document, environ=environ, source=str(path) if path else None)


def parse_config(
    document: Mapping[str, Any], *, environ: Environ | None = None, source: str | None = None
) -> Config:
    """Validate a parsed TOML document; ``$POLLER_DATABASE_URL`` in ``environ`` wins.

    ``source`` (the file name) prefixes every error message.
    """
    environ = os.environ if environ is None else environ
    data = dict(document)
    _refuse_password_in_url(data.get("database", {}), source)
    override = environ.get(DATABASE_URL_ENV)
    if override:
        _check_override(override)
        database = data.get("database", {})
        if isinstance(database, dict):
            data["database"] = {**database, "url": override}
    return _validate(Config, data, source)


def _check_override(url: str) -> None:
    """``ConfigError`` unless ``$POLLER_DATABASE_URL`` holds a database URL (not echoed)."""
    try:
        parse_database_url(url)
    except ValueError as exc:
        raise ConfigError(f"{DATABASE_URL_ENV} {exc}", key="database.url") from None


def _refuse_password_in_url(section: object, source: str | None) -> None:
    url = section.get("url") if isinstance(section, dict) else None
    if not isinstance(url, str):
        return
    try:
        password = parse_database_url(url).password
    except ValueError:
        return  # reported by validation, without echoing the URL
    if password:
        raise _error(source, "database.url",
                     f"holds a password; the file never holds secrets: set {DATABASE_URL_ENV} "
                     "instead, or leave the password out and use PGPASSWORD or ~/.pgpass")


def _validate(
    model: type[_M], data: object, source: str | None, prefix: tuple[str | int, ...] = ()
) -> _M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = sorted(_without_auto(exc.errors(include_input=False, include_url=False)),
                        key=_precedence)
        first = errors[0]
        key = format_key(prefix + _location(first))
        message = _message(first, key)
        if len(errors) > 1:
            others = len(errors) - 1
            message += f" (and {others} more problem{'s' if others > 1 else ''})"
        # ``from None``: a chained ValidationError would carry the rejected input (a secret?).
        raise _error(source, key, message) from None


def _without_auto(errors: list[ErrorDetails]) -> list[ErrorDetails]:
    """A count-or-``"auto"`` key's errors as one: the count's (its message says ``"auto"``
    would do too), without the union member's name in the location."""
    kept = []
    for error in errors:
        loc = error["loc"]
        if loc and loc[-1] == AUTO_MEMBER:
            continue
        if loc and loc[-1] == COUNT_MEMBER:
            error = {**error, "loc": loc[:-1],
                     "msg": error["msg"] + ' (or "auto")'}
        kept.append(error)
    return kept


def _precedence(error: ErrorDetails) -> int:
    """Which error to report first: a secret in the file, then unknown (misspelt?) keys."""
    if error["type"] != "extra_forbidden":
        return 2
    return 0 if error["loc"] and error["loc"][-1] in _SECRET_KEYS else 1


def _error(source: str | None, key: str, message: str) -> ConfigError:
    where = f"{source}: " if source else ""
    return ConfigError(f"{where}{key}: {message}" if key else f"{where}{message}", key=key or None)


def _location(error: ErrorDetails) -> tuple[str | int, ...]:
    """The error's location as config keys: union tags dropped, cross-key ``at`` appended."""
    loc = list(error["loc"])
    if len(loc) >= 3 and loc[0] == "accounts" and isinstance(loc[1], int) and loc[2] in _PROVIDERS:
        del loc[2]  # the discriminated union's tag, not a key
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        loc.append("provider")
    at = error.get("ctx", {}).get("at") if error["type"] == "config" else None
    if at:
        loc.extend(at)
    return tuple(loc)


def format_key(loc: Sequence[str | int]) -> str:
    """``("accounts", 1, "conferences", 3, "region")`` → ``accounts[1].conferences[3].region``."""
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else part)
    return key


def _message(error: ErrorDetails, key: str) -> str:
    kind = error["type"]
    last = key.rpartition(".")[2]
    if kind == "extra_forbidden":
        if key.startswith("database.") and last in ("password", "username", "user"):
            return (f"is not a key: database credentials belong in the URL; set "
                    f"{DATABASE_URL_ENV} to keep them out of the file")
        if last in _SECRET_KEYS:
            return (f"credentials are never read from the file: put the value in an "
                    f"environment variable and name it with {_SECRET_KEYS[last]} = \"VARIABLE\"")
        if last == "region":
            return "region is only for Telnyx conferences"
        if last == "discover_regions":
            return "is only for Telnyx accounts (Bandwidth has no regions)"
        close = difflib.get_close_matches(last, _KNOWN_KEYS, n=1)
        return "unknown key" + (f" (did you mean {close[0]!r}?)" if close else "")
    if kind == "missing":
        return "is required"
    if kind == "union_tag_invalid":
        return "must be 'telnyx' or 'bandwidth'"
    if kind == "union_tag_not_found":
        return "is required: 'telnyx' or 'bandwidth'"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "must be a table"
    if kind in ("tuple_type", "list_type"):
        return "must be an array" + (" of tables ([[accounts]])" if key == "accounts" else "")
    if kind == "bool_type":
        return "must be true or false"
    if kind in ("float_type", "float_parsing"):
        return "must be a number"
    if kind in ("finite_number",):
        return "must be a finite number"
    message = error["msg"].removeprefix("Value error, ")
    return message.replace("Input should be", "must be").replace("String should", "must")
