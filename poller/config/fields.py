"""The building blocks of the config models: the base model, value types and their checks.

Every settings model derives from :class:`Section`: frozen, unknown keys refused (a misspelt key
is an error, never silently ignored), scalars taken strictly (``"10"`` is not a number, ``1`` is
not ``true``; integers are accepted where a number of seconds is expected), infinities and NaN
refused, and rejected inputs kept out of error messages (they may be secrets).

Rules spanning several keys (unique names, one Bandwidth auth mode) raise :func:`config_error`:
a ``PydanticCustomError`` of type ``config`` whose ``ctx["at"]`` is the offending key relative
to the model, so ``poller.config.loading`` can name the exact dotted key.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict
from pydantic_core import PydanticCustomError
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

DEFAULT_DATABASE_URL = "sqlite:///conferences.db"

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

MAX_SECONDS = 366 * 86400
"""The longest duration in seconds any key takes (a year): beyond it, a value is a typo, and
date arithmetic on it would overflow."""
MAX_DAYS = 36_500
"""The longest age in days (a century)."""
MAX_COUNT = 100_000
"""The largest count (concurrency, 404s before retiring)."""

Seconds = Annotated[float, Strict(), Field(gt=0, le=MAX_SECONDS)]
"""A positive number of seconds, at most a year (integers accepted)."""
SecondsOrZero = Annotated[float, Strict(), Field(ge=0, le=MAX_SECONDS)]
Days = Annotated[float, Strict(), Field(ge=0, le=MAX_DAYS)]
Count = Annotated[int, Strict(), Field(ge=1, le=MAX_COUNT)]
CountOrAuto = Annotated[Count | Literal["auto"], Field(union_mode="left_to_right")]
"""A count, or ``"auto"`` (the program decides); errors name the key, not the union's members."""
AUTO_MEMBER = "literal['auto']"
"""How pydantic names the ``"auto"`` member of such a union in an error's location."""
COUNT_MEMBER = "constrained-int"


def config_error(message: str, *at: str | int) -> PydanticCustomError:
    """A validation error for ``message`` at key path ``at`` below the model that raises it."""
    return PydanticCustomError("config", message, {"at": at})


class Section(BaseModel):
    """Base of every settings model: frozen, unknown keys refused, inputs kept out of errors."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, hide_input_in_errors=True
    )


def _env_name(value: str) -> str:
    """``value`` if it can be an environment variable's name (never echoed: it may be a secret)."""
    if not _ENV_NAME.fullmatch(value):
        raise ValueError(
            "must be the name of an environment variable (letters, digits and _), "
            "not the secret itself"
        )
    return value


def _http_url(value: str) -> str:
    """``value`` if it is an absolute http(s) URL without credentials, query or fragment, and
    with a numeric port if it names one (with or without a path or a trailing slash)."""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError("must be an absolute http:// or https:// URL with a port from 1 to "
                         "65535, if any") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL")
    if port == 0:
        raise ValueError("must have a port from 1 to 65535, if any")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not contain credentials (they come from the environment)")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment")
    return value


EnvName = Annotated[str, Strict(), AfterValidator(_env_name)]
"""The name of an environment variable holding a secret."""
HttpUrl = Annotated[str, Strict(), AfterValidator(_http_url)]
"""An absolute http(s) URL without credentials."""


def parse_database_url(value: str) -> URL:
    """The SQLAlchemy URL of ``value``, or ``ValueError`` (the text is not echoed: passwords)."""
    try:
        return make_url(value)
    except (ArgumentError, ValueError):
        raise ValueError(
            "is not a database URL (e.g. sqlite:///conferences.db or "
            "postgresql+psycopg://user@host:5432/dbname)"
        ) from None


def masked_url(value: str) -> str:
    """``value`` with any password replaced by ``***`` (safe to print)."""
    try:
        return make_url(value).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<not a database URL>"


def split_host_port(value: str) -> tuple[str, int]:
    """``"host:port"`` / ``"[v6]:port"`` as ``(host, port)``, or ``ValueError``."""
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError('must be "host:port", e.g. "127.0.0.1:9108"')
    return host, int(port)
