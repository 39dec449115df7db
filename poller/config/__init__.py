"""Configuration: ``config.toml`` and the environment, validated into one frozen ``Config``.

The first stage of the flow (``docs/architecture.md``). It imports nothing of the HTTP stack:
``import poller.config`` loads pydantic and SQLAlchemy's URL parser, never httpx or aiohttp,
so Alembic's ``migrations/env.py`` can read the database URL cheaply.

Modules: ``loading`` (which file, TOML, error messages that name the dotted key),
``settings`` (one model per section, and ``Config``), ``accounts`` (the ``[[accounts]]``
tables and the providers' default addresses), ``credentials`` (secrets from the environment
variables an account names), ``fields`` (the base model and value types).
"""

from poller.config.accounts import (
    BANDWIDTH_BASE_URL,
    BANDWIDTH_TOKEN_URL,
    TELNYX_BASE_URL,
    TELNYX_REGIONS,
    Account,
    BandwidthAccount,
    TelnyxAccount,
)
from poller.config.credentials import (
    ApiKeyCredentials,
    BasicCredentials,
    Credentials,
    OAuth2Credentials,
    TelnyxWebhookKey,
    WebhookSecret,
    resolve_all_credentials,
    resolve_credentials,
    resolve_webhook_secrets,
)
from poller.config.fields import DEFAULT_DATABASE_URL
from poller.config.loading import (
    CONFIG_ENV,
    DATABASE_URL_ENV,
    DEFAULT_CONFIG_PATH,
    config_path,
    database_url,
    format_key,
    load_config,
    load_toml,
    parse_config,
)
from poller.config.settings import (
    Config,
    DaemonSettings,
    DatabaseSettings,
    ListenSettings,
    PollingSettings,
    RetentionSettings,
    SpoolSettings,
    WebhookSettings,
)

__all__ = [
    "BANDWIDTH_BASE_URL",
    "BANDWIDTH_TOKEN_URL",
    "CONFIG_ENV",
    "DATABASE_URL_ENV",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_DATABASE_URL",
    "TELNYX_BASE_URL",
    "TELNYX_REGIONS",
    "Account",
    "ApiKeyCredentials",
    "BandwidthAccount",
    "BasicCredentials",
    "Config",
    "Credentials",
    "DaemonSettings",
    "DatabaseSettings",
    "ListenSettings",
    "OAuth2Credentials",
    "PollingSettings",
    "RetentionSettings",
    "SpoolSettings",
    "TelnyxAccount",
    "TelnyxWebhookKey",
    "WebhookSecret",
    "WebhookSettings",
    "config_path",
    "database_url",
    "format_key",
    "load_config",
    "load_toml",
    "parse_config",
    "resolve_all_credentials",
    "resolve_credentials",
    "resolve_webhook_secrets",
]
