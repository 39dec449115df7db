"""The typed settings ``config.toml`` is validated into: one frozen pydantic model per section.

``poller.config.loading`` reads the file and turns validation failures into ``ConfigError``;
this module (with ``accounts`` and ``fields``) only says what a valid configuration is
(``docs/configuration.md`` is the reference). :class:`Config` is the whole file.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, Strict, field_validator, model_validator
from sqlalchemy.engine import make_url

from poller.config.accounts import Account, BandwidthAccount, TelnyxAccount
from poller.config.fields import (
    DEFAULT_DATABASE_URL,
    Count,
    CountOrAuto,
    Days,
    Seconds,
    SecondsOrZero,
    Section,
    config_error,
    masked_url,
    parse_database_url,
    split_host_port,
)
from poller.model import TargetKey

AUTO_MAX_SLOTS = 1024
"""The most poll slots ``concurrency = "auto"`` grows to (``poller.polling.slots.AUTO_MAX``)."""


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
    concurrency: CountOrAuto = "auto"
    """Polls in flight at once, over all accounts: ``"auto"`` (as many as the polls' rate ×
    duration needs, 32 to 1,024: ``poller.polling.slots``) or a fixed number."""
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
    poll_deadline_seconds: Seconds = 60.0
    """The longest one poll may take, all its requests and pages together (waits for its
    account's later tokens included); a poll still running then fails as ``timeout``, so a
    server that trickles its answer byte by byte never holds a poll for longer."""
    connect_timeout_seconds: Seconds = 5.0
    read_timeout_seconds: Seconds = 15.0
    write_timeout_seconds: Seconds = 10.0
    pool_timeout_seconds: Seconds = 10.0
    """Waiting for a free connection from the account's pool."""
    max_connections_per_account: CountOrAuto = "auto"
    """Each account's connection pool: ``"auto"`` (as many as there can be poll slots, so that
    connections never hold polls back; idle ones close after 30 s) or a fixed number."""
    http_transport: Literal["aiohttp", "httpx"] = "aiohttp"
    """What sends the HTTP requests: ``aiohttp`` (called directly; several times less CPU per
    poll, see ``docs/benchmarks.md``) or ``httpx`` (httpx's own transport, which also honours
    proxy settings from the environment)."""
    discovery_interval_seconds: Seconds = 60.0
    """How often accounts with ``discover = true`` list their conferences for new ones."""
    max_retry_after_seconds: Seconds = 3600.0
    """The longest pause a provider's ``Retry-After`` (429, 503) may impose on an account; a
    longer one is cut to this, and the log line of the failed poll says so."""

    @property
    def slots(self) -> int | None:
        """The fixed number of poll slots; ``None``: ``auto``."""
        return None if self.concurrency == "auto" else self.concurrency

    @property
    def connections_per_account(self) -> int:
        """Each account's connection limit (``auto``: the most poll slots there can be)."""
        if self.max_connections_per_account != "auto":
            return self.max_connections_per_account
        return self.slots if self.slots is not None else AUTO_MAX_SLOTS

    @model_validator(mode="after")
    def _backoff_order(self) -> PollingSettings:
        if self.backoff_max_seconds < self.backoff_base_seconds:
            raise config_error("must not be less than backoff_base_seconds",
                               "backoff_max_seconds")
        return self


class RetentionSettings(Section):
    """``[retention]``: how long history that is only useful for a while is kept."""

    poll_error_days: Days = 30.0
    """``poll_error`` rows older than this are deleted."""
    raw_payload_days: Days | None = None
    """Raw provider JSON of snapshots superseded longer ago is cleared (normalised history is
    kept). Absent: raw payloads are kept forever."""
    webhook_event_days: Days | None = 30.0
    """``webhook_event`` rows received longer ago are deleted once applied (or ignored, in
    conflict, unmatched); pending ones are kept. Absent: 30 days."""
    prune_interval_seconds: SecondsOrZero = 3600.0
    """How often ``poller run`` prunes by these settings (0: never; ``poller prune`` by hand)."""


class SpoolSettings(Section):
    """``[spool]``: where poll results wait while the database is away (DESIGN §9)."""

    path: Annotated[str, Strict()] | None = None
    """A directory; absent: beside a SQLite file (``<file>.spool``), else ``poller-spool`` in
    the working directory. Several daemons may share one: each takes a slot of its own."""
    max_bytes: Annotated[int, Strict(), Field(ge=1024 * 1024, le=1024 ** 4)] = 256 * 1024 ** 2
    """The most the spool holds (256 MiB); when full, changes are kept over unchanged polls
    and what does not fit is dropped, loudly."""

    def directory(self, database: DatabaseSettings) -> Path:
        """Where the spool lives for ``database`` (see ``path``)."""
        if self.path is not None:
            return Path(self.path)
        url = make_url(database.url)
        if database.is_sqlite and url.database not in (None, "", ":memory:"):
            return Path(f"{url.database}.spool")
        return Path("poller-spool")


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


class WebhookSettings(ListenSettings):
    """``[webhooks]``: the receiver of provider events (``docs/webhooks.md``), off unless
    ``listen`` is set. An account takes events only when it names its webhook secret
    (``webhook_public_key_env``; ``webhook_username_env`` + ``webhook_password_env``)."""

    timestamp_tolerance_seconds: Seconds = 300.0
    """Telnyx: how far a request's ``telnyx-timestamp`` may be from now (either way) before
    the request is refused as stale (replays of old signed requests)."""
    max_body_bytes: Annotated[int, Strict(), Field(ge=1024, le=64 * 1024 ** 2)] = 256 * 1024
    """A larger request body is refused (413) before it is read whole."""


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
    spool: SpoolSettings = SpoolSettings()
    metrics: ListenSettings = ListenSettings()
    health: ListenSettings = ListenSettings()
    daemon: DaemonSettings = DaemonSettings()
    webhooks: WebhookSettings = WebhookSettings()
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
        listeners = (("metrics", self.metrics.address), ("health", self.health.address),
                     ("webhooks", self.webhooks.address))
        for index, (name, address) in enumerate(listeners):
            for other, taken in listeners[:index]:
                if address is not None and address == taken and address[1] != 0:
                    raise config_error(f"is the same address as {other}.listen", name,
                                       "listen")
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
