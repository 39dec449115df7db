"""The typed settings ``config.toml`` is validated into: frozen pydantic models, one per section.

``poller.config`` reads the file and turns validation failures into ``ConfigError``; this module
only says what a valid configuration is (``docs/configuration.md`` is the reference):

* every model forbids unknown keys (a misspelt key is an error, never silently ignored) and
  takes scalars strictly (``"10"`` is not a number, ``1`` is not ``true``; integers are accepted
  where a number of seconds is expected); infinities and NaN are refused;
* secrets never appear here: an account names the *environment variables* that hold them
  (``api_key_env``, ``client_secret_env``, …), resolved by ``poller.config.resolve_credentials``;
* rules spanning several keys (unique names, one Bandwidth auth mode) raise a
  ``PydanticCustomError`` of type ``config`` whose ``ctx["at"]`` is the offending key relative to
  the model, so the message can name the exact dotted key.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Sequence
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from poller.errors import InvalidConferenceId
from poller.model import Provider, TargetKey
from poller.providers.auth import DEFAULT_TOKEN_URL
from poller.providers.bandwidth import DEFAULT_BASE_URL as BANDWIDTH_BASE_URL
from poller.providers.http import HttpSettings, path_segment
from poller.providers.telnyx import DEFAULT_BASE_URL as TELNYX_BASE_URL

DEFAULT_DATABASE_URL = "sqlite:///conferences.db"

_HTTP_DEFAULTS = HttpSettings()
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_NAME_LENGTH = 100

Seconds = Annotated[float, Strict(), Field(gt=0)]
"""A positive number of seconds (integers accepted)."""
SecondsOrZero = Annotated[float, Strict(), Field(ge=0)]
Days = Annotated[float, Strict(), Field(ge=0)]
Count = Annotated[int, Strict(), Field(ge=1)]
Region = Literal["Australia", "Europe", "Middle East", "US"]
"""The Telnyx ``region`` query values the spec allows."""
TELNYX_REGIONS: tuple[str, ...] = get_args(Region)


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
    """``value`` if it is an absolute http(s) URL without credentials, query or fragment."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not contain credentials (they come from the environment)")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment")
    return value


def _conference_id(value: str) -> str:
    """``value`` if it can be sent as a conference ID (one URL path segment, no stray spaces)."""
    if value != value.strip():
        raise ValueError("conference ID has leading or trailing whitespace")
    try:
        path_segment(value)
    except InvalidConferenceId as exc:
        raise ValueError(str(exc)) from None
    return value


def _conference_entry(value: Any) -> Any:
    """A bare ID string becomes ``{id = …}``; tables pass through; anything else is refused."""
    if isinstance(value, str):
        return {"id": value}
    if isinstance(value, dict):
        return value
    raise ValueError('must be a conference ID string or a table { id = "…", region = "…" }')


EnvName = Annotated[str, Strict(), AfterValidator(_env_name)]
"""The name of an environment variable holding a secret."""
HttpUrl = Annotated[str, Strict(), AfterValidator(_http_url)]
"""An absolute http(s) URL without credentials."""
ConferenceId = Annotated[str, Strict(), AfterValidator(_conference_id)]


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


class DatabaseSettings(Section):
    """``[database]``: where the history is stored."""

    url: Annotated[str, Strict()] = DEFAULT_DATABASE_URL
    """SQLAlchemy URL; ``$POLLER_DATABASE_URL`` overrides it. SQLite paths are relative to the
    working directory."""
    auto_migrate: Annotated[bool, Strict()] = True
    """Upgrade the schema to the newest revision at start. When absent: true for SQLite (an
    embedded, single-user file), false otherwise (a shared server is migrated on purpose, with
    ``poller db upgrade``)."""

    @model_validator(mode="before")
    @classmethod
    def _default_auto_migrate(cls, data: Any) -> Any:
        if isinstance(data, dict) and "auto_migrate" not in data:
            url = data.get("url", DEFAULT_DATABASE_URL)
            try:
                sqlite = parse_database_url(url).get_backend_name() == "sqlite"
            except (TypeError, ValueError):
                sqlite = True  # the URL's own error is reported instead
            data = {**data, "auto_migrate": sqlite}
        return data

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        parse_database_url(value)
        return value

    @property
    def is_sqlite(self) -> bool:
        """Whether the database is a SQLite file (one process only)."""
        return make_url(self.url).get_backend_name() == "sqlite"

    def display_url(self) -> str:
        """The URL with any password masked, for messages and summaries."""
        return masked_url(self.url)


class PollingSettings(Section):
    """``[polling]``: how often, how many at once, and when to give up on a conference."""

    interval_seconds: Seconds = 10.0
    """Between polls of an active (``in_progress``) conference."""
    idle_interval_seconds: Seconds = 60.0
    """Between polls of a conference in ``init`` or not found yet."""
    concurrency: Count = 32
    """Polls in flight at once, over all accounts."""
    completion_grace_seconds: SecondsOrZero = 30.0
    """After a conference is first seen ``completed``, wait this long for one last poll (to catch
    the final member states), then retire it (0: retire at once)."""
    not_found_retire_after: Count = 3
    """Consecutive 404s after which a conference already seen is marked gone and retired."""
    never_found_retire_seconds: Seconds = 3600.0
    """A conference never seen at all is retired ``never_found`` this long after its first 404
    (in practice its first poll)."""
    backoff_base_seconds: Seconds = 2.0
    """First retry delay after a 5xx, timeout or network error; doubled per failure, jittered."""
    backoff_max_seconds: Seconds = 300.0
    """Longest retry delay."""
    shutdown_grace_seconds: SecondsOrZero = 10.0
    """On SIGTERM / SIGINT, how long in-flight polls may take to finish before being abandoned."""
    connect_timeout_seconds: Seconds = _HTTP_DEFAULTS.connect_timeout_seconds
    read_timeout_seconds: Seconds = _HTTP_DEFAULTS.read_timeout_seconds
    write_timeout_seconds: Seconds = _HTTP_DEFAULTS.write_timeout_seconds
    pool_timeout_seconds: Seconds = _HTTP_DEFAULTS.pool_timeout_seconds
    """Waiting for a free connection from the account's pool."""
    http_transport: Literal["aiohttp", "httpx"] = "aiohttp"
    """What sends the HTTP requests: ``aiohttp`` (through httpx-aiohttp; several times less CPU
    per poll, see ``docs/benchmarks.md``) or ``httpx`` (httpx's own transport)."""
    discovery_interval_seconds: Seconds = 60.0
    """How often accounts with ``discover = true`` list their conferences for new ones."""

    @model_validator(mode="after")
    def _backoff_order(self) -> PollingSettings:
        if self.backoff_max_seconds < self.backoff_base_seconds:
            raise config_error("must not be less than backoff_base_seconds",
                               "backoff_max_seconds")
        return self

    def http_settings(self) -> HttpSettings:
        """The provider clients' HTTP settings (timeouts from here, the rest defaults)."""
        return HttpSettings(
            connect_timeout_seconds=self.connect_timeout_seconds,
            read_timeout_seconds=self.read_timeout_seconds,
            write_timeout_seconds=self.write_timeout_seconds,
            pool_timeout_seconds=self.pool_timeout_seconds,
            transport=self.http_transport,
        )


class RetentionSettings(Section):
    """``[retention]``: how long history that is only useful for a while is kept."""

    poll_error_days: Days = 30.0
    """``poll_error`` rows older than this are deleted."""
    raw_payload_days: Days | None = None
    """Raw provider JSON of snapshots superseded longer ago is cleared (normalised history is
    kept). Absent: raw payloads are kept forever."""
    prune_interval_seconds: SecondsOrZero = 3600.0
    """How often ``poller run`` prunes by these settings (0: never; ``poller prune`` by hand)."""


class ListenSettings(Section):
    """``[metrics]`` / ``[health]``: an HTTP endpoint, off unless ``listen`` is set."""

    listen: Annotated[str, Strict()] | None = None
    """``host:port`` (IPv6 as ``[::1]:port``); port 0 picks any free port."""

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        split_host_port(value)
        return value

    @property
    def address(self) -> tuple[str, int] | None:
        """``(host, port)`` to listen on, or ``None`` when the endpoint is off."""
        return None if self.listen is None else split_host_port(self.listen)


def split_host_port(value: str) -> tuple[str, int]:
    """``"host:port"`` / ``"[v6]:port"`` as ``(host, port)``, or ``ValueError``."""
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError('must be "host:port", e.g. "127.0.0.1:9108"')
    return host, int(port)


class Conference(Section):
    """One configured conference: its ID and, for Telnyx, the region to query."""

    id: ConferenceId
    region: Region | None = None
    """Telnyx only: ``Australia``, ``Europe``, ``Middle East`` or ``US`` (absent: Telnyx's
    default, US)."""


class BandwidthConference(Section):
    """A Bandwidth conference: just its ID (Bandwidth has no regions)."""

    id: ConferenceId

    @property
    def region(self) -> None:
        """Always ``None``: Bandwidth conferences have no region."""
        return None


class AccountBase(Section):
    """Keys every ``[[accounts]]`` table has, whatever the provider."""

    name: Annotated[str, Strict()]
    """Unique; stored as ``account`` in every table, so renaming starts a new history."""
    base_url: HttpUrl
    requests_per_second: Annotated[float, Strict(), Field(gt=0)] = 10.0
    """The most requests poller sends this account per second (token-endpoint calls included)."""
    discover: Annotated[bool, Strict()] = False
    """List the account's conferences every ``polling.discovery_interval_seconds`` and poll every
    new one (``poll_target.source = 'discovered'``; ``docs/discovery.md``)."""
    discover_name: Annotated[str, Strict()] | None = None
    """Only discover conferences with exactly this name (case-sensitive); needs ``discover``."""
    list_polling: Annotated[bool, Strict()] | None = None
    """Poll the account's targets through its conference list where that suffices (fewer
    requests; ``docs/discovery.md``). Absent: on when ``discover`` is on, else off."""

    @field_validator("discover_name")
    @classmethod
    def _valid_discover_name(cls, value: str) -> str:
        if not value or value != value.strip() or not value.isprintable():
            raise ValueError("must be a non-empty name without leading or trailing whitespace")
        return value

    @model_validator(mode="after")
    def _discover_keys(self) -> AccountBase:
        if not self.discover:
            for key in ("discover_name", "discover_regions"):
                if key in self.model_fields_set:
                    raise config_error("is only used with discover = true", key)
        return self

    @property
    def uses_list_polling(self) -> bool:
        """``list_polling`` as set, else ``discover``."""
        return self.discover if self.list_polling is None else self.list_polling

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not value or value != value.strip():
            raise ValueError("must be non-empty, without leading or trailing whitespace")
        if len(value) > _MAX_NAME_LENGTH or not value.isprintable():
            raise ValueError(f"must be at most {_MAX_NAME_LENGTH} printable characters")
        return value

    @staticmethod
    def _unique_ids(conferences: Sequence[Conference | BandwidthConference]) -> None:
        first_index: dict[str, int] = {}
        for index, conference in enumerate(conferences):
            if conference.id in first_index:
                raise config_error(
                    f"duplicate conference ID {conference.id!r} "
                    f"(also conferences[{first_index[conference.id]}])",
                    "conferences", index, "id")
            first_index[conference.id] = index


class TelnyxAccount(AccountBase):
    """A Telnyx account: an API key (from the environment) and its conferences."""

    provider: Literal["telnyx"]
    base_url: HttpUrl = TELNYX_BASE_URL
    api_key_env: EnvName
    """The environment variable holding the API key."""
    conferences: tuple[Annotated[Conference, BeforeValidator(_conference_entry)], ...] = ()
    discover_regions: tuple[Region, ...] = ("US",)
    """The data regions discovery lists (Telnyx lists one region per request)."""

    @model_validator(mode="after")
    def _unique(self) -> TelnyxAccount:
        self._unique_ids(self.conferences)
        if not self.discover_regions:
            raise config_error("must name at least one region", "discover_regions")
        for index, region in enumerate(self.discover_regions):
            if region in self.discover_regions[:index]:
                raise config_error(f"lists {region!r} twice", "discover_regions", index)
        return self

    @property
    def kind(self) -> Provider:
        """``Provider.TELNYX``."""
        return Provider.TELNYX

    @property
    def secret_env_names(self) -> tuple[str, ...]:
        """The environment variables this account's credentials come from."""
        return (self.api_key_env,)

    def targets(self) -> tuple[TargetKey, ...]:
        """The configured conferences as poll targets."""
        return tuple(TargetKey(Provider.TELNYX, self.name, c.id, c.region)
                     for c in self.conferences)


class BandwidthAccount(AccountBase):
    """A Bandwidth account: its account ID, OAuth2 *or* Basic credentials, its conferences."""

    provider: Literal["bandwidth"]
    base_url: HttpUrl = BANDWIDTH_BASE_URL
    account_id: Annotated[str, Strict()]
    client_id_env: EnvName | None = None
    client_secret_env: EnvName | None = None
    token_url: HttpUrl | None = None
    """OAuth2 token endpoint (absent: Bandwidth's, ``DEFAULT_TOKEN_URL``)."""
    username_env: EnvName | None = None
    password_env: EnvName | None = None
    conferences: tuple[Annotated[BandwidthConference, BeforeValidator(_conference_entry)], ...] = ()

    @field_validator("account_id", mode="before")
    @classmethod
    def _account_id(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            raise ValueError(f'must be a quoted string: account_id = "{value}"')
        if isinstance(value, str):
            try:
                path_segment(value, "account_id")
            except InvalidConferenceId as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _one_auth_mode(self) -> BandwidthAccount:
        oauth2 = self.client_id_env is not None or self.client_secret_env is not None
        basic = self.username_env is not None or self.password_env is not None
        if oauth2 and basic:
            raise config_error(
                "choose one auth mode: OAuth2 (client_id_env + client_secret_env) or Basic "
                "(username_env + password_env), not both", "username_env")
        if not oauth2 and not basic:
            raise config_error(
                "Bandwidth needs credentials: client_id_env + client_secret_env (OAuth2) or "
                "username_env + password_env (Basic)", "client_id_env")
        pairs = (("client_id_env", "client_secret_env"), ("username_env", "password_env"))
        for first, second in pairs:
            if (getattr(self, first) is None) != (getattr(self, second) is None):
                missing, given = (first, second) if getattr(self, first) is None else (
                    second, first)
                raise config_error(f"is required with {given}", missing)
        if basic and self.token_url is not None:
            raise config_error("is only for OAuth2 (client_id_env + client_secret_env)",
                               "token_url")
        self._unique_ids(self.conferences)
        return self

    @property
    def kind(self) -> Provider:
        """``Provider.BANDWIDTH``."""
        return Provider.BANDWIDTH

    @property
    def auth_mode(self) -> Literal["oauth2", "basic"]:
        """``oauth2`` (client credentials) or ``basic`` (legacy API user)."""
        return "oauth2" if self.client_id_env is not None else "basic"

    @property
    def effective_token_url(self) -> str:
        """``token_url``, else Bandwidth's public token endpoint."""
        return self.token_url or DEFAULT_TOKEN_URL

    @property
    def secret_env_names(self) -> tuple[str, ...]:
        """The environment variables this account's credentials come from."""
        names = ((self.client_id_env, self.client_secret_env) if self.auth_mode == "oauth2"
                 else (self.username_env, self.password_env))
        return tuple(name for name in names if name is not None)

    def targets(self) -> tuple[TargetKey, ...]:
        """The configured conferences as poll targets."""
        return tuple(TargetKey(Provider.BANDWIDTH, self.name, c.id) for c in self.conferences)


Account = Annotated[TelnyxAccount | BandwidthAccount, Field(discriminator="provider")]
"""One ``[[accounts]]`` table; ``provider`` says which kind."""


MIN_LEASE_SECONDS = 60.0
"""The default lease is at least this long (or twice the read timeout when that is longer)."""
_MAX_IDENTITY_LENGTH = 200


def default_identity() -> str:
    """This process's daemon identity when ``[daemon] identity`` is absent: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _identity(value: str) -> str:
    if not 0 < len(value) <= _MAX_IDENTITY_LENGTH or any(
            c.isspace() or not c.isprintable() for c in value):
        raise ValueError(f"must be 1 to {_MAX_IDENTITY_LENGTH} characters without spaces or "
                         "control characters")
    return value


class DaemonSettings(Section):
    """``[daemon]``: who this ``poller run`` is among several sharing one PostgreSQL."""

    identity: Annotated[str, Strict(), AfterValidator(_identity)] | None = None
    """Stable name of this daemon (leases, ``poller status``); absent: ``host:pid``."""
    lease_seconds: Seconds | None = None
    """How long a claimed target stays this daemon's without a heartbeat; absent:
    ``max(60, 2 × polling.read_timeout_seconds)``."""
    heartbeat_seconds: Seconds | None = None
    """How often the daemon says it lives and renews its leases; absent: a quarter of the
    lease. At most half the lease."""

    def effective_identity(self) -> str:
        """``identity``, or ``host:pid`` of this process."""
        return self.identity if self.identity is not None else default_identity()

    def effective_lease_seconds(self, polling: PollingSettings) -> float:
        """``lease_seconds``, or its default for ``polling``'s read timeout."""
        if self.lease_seconds is not None:
            return self.lease_seconds
        return max(MIN_LEASE_SECONDS, 2 * polling.read_timeout_seconds)

    def effective_heartbeat_seconds(self, polling: PollingSettings) -> float:
        """``heartbeat_seconds``, or a quarter of the lease."""
        if self.heartbeat_seconds is not None:
            return self.heartbeat_seconds
        return self.effective_lease_seconds(polling) / 4


class Config(Section):
    """The whole validated ``config.toml`` (with ``$POLLER_DATABASE_URL`` applied)."""

    database: DatabaseSettings = DatabaseSettings()
    polling: PollingSettings = PollingSettings()
    retention: RetentionSettings = RetentionSettings()
    metrics: ListenSettings = ListenSettings()
    health: ListenSettings = ListenSettings()
    daemon: DaemonSettings = DaemonSettings()
    accounts: tuple[Account, ...] = ()

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        seen: dict[str, int] = {}
        for index, account in enumerate(self.accounts):
            if account.name in seen:
                first = seen[account.name]
                raise config_error(
                    f"duplicate account name {account.name!r} (also accounts[{first}])",
                    "accounts", index, "name")
            seen[account.name] = index
        both = self.metrics.address
        if both is not None and both == self.health.address and both[1] != 0:
            raise config_error("is the same address as metrics.listen", "health", "listen")
        lease = self.daemon.effective_lease_seconds(self.polling)
        if self.daemon.effective_heartbeat_seconds(self.polling) > lease / 2:
            where = ("daemon.lease_seconds" if self.daemon.lease_seconds is not None
                     else "the default daemon.lease_seconds")
            raise config_error(
                f"must be at most half of {where} ({lease:g} s), so that one late heartbeat "
                "does not cost the leases", "daemon", "heartbeat_seconds")
        return self

    def account(self, name: str) -> TelnyxAccount | BandwidthAccount:
        """The account called ``name`` (``KeyError`` when there is none)."""
        for account in self.accounts:
            if account.name == name:
                return account
        raise KeyError(name)

    def targets(self) -> tuple[TargetKey, ...]:
        """Every configured conference of every account, as poll targets."""
        return tuple(target for account in self.accounts for target in account.targets())
