"""The ``[[accounts]]`` tables: one model per provider, and the conferences each one lists.

An account names the *environment variables* that hold its secrets (``api_key_env``,
``client_secret_env``, …), never the secrets themselves; ``poller.config.credentials`` reads
them. The providers' public API addresses are the defaults of ``base_url`` / ``token_url`` and
live here, so that the configuration never needs the HTTP layer to know them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    Strict,
    field_validator,
    model_validator,
)

from poller.config.fields import EnvName, HttpUrl, Section, config_error
from poller.errors import InvalidConferenceId
from poller.model import Provider, TargetKey, path_segment

TELNYX_BASE_URL = "https://api.telnyx.com/v2"
"""Telnyx's API (``base_url`` default)."""
BANDWIDTH_BASE_URL = "https://voice.bandwidth.com/api/v2"
"""Bandwidth's Voice API (``base_url`` default)."""
BANDWIDTH_TOKEN_URL = "https://api.bandwidth.com/api/v1/oauth2/token"  # noqa: S105 (a URL)
"""Bandwidth's OAuth2 token endpoint (``token_url`` default)."""

_MAX_NAME_LENGTH = 100
Region = Literal["Australia", "Europe", "Middle East", "US"]
"""The Telnyx ``region`` query values the spec allows."""
TELNYX_REGIONS: tuple[str, ...] = get_args(Region)


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


ConferenceId = Annotated[str, Strict(), AfterValidator(_conference_id)]

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
    requests_per_second: Annotated[float, Strict(), Field(ge=0.001, le=100_000)] = 10.0
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
    detail_records: Annotated[bool, Strict()] = False
    """After a conference completes, fetch its participant detail records and make every
    participant's join and leave exact, those polling never saw included
    (``docs/webhooks.md``)."""
    webhook_public_key_env: EnvName | None = None
    """The environment variable holding the account's webhook public key (base64, as Mission
    Control shows it); absent: this account's webhooks are refused (``docs/webhooks.md``)."""
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
    """OAuth2 token endpoint (absent: Bandwidth's, ``BANDWIDTH_TOKEN_URL``)."""
    username_env: EnvName | None = None
    password_env: EnvName | None = None
    webhook_username_env: EnvName | None = None
    webhook_password_env: EnvName | None = None
    """The Basic credentials the ``conferenceEventUrl`` names (``username`` / ``password`` of
    the BXML ``<Conference>``); absent: this account's callbacks are refused."""
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
        pairs = (("client_id_env", "client_secret_env"), ("username_env", "password_env"),
                 ("webhook_username_env", "webhook_password_env"))
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
        return self.token_url or BANDWIDTH_TOKEN_URL

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
