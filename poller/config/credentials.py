"""Credentials: the secrets of each account, read from the environment variables it names.

The config file never holds a secret: an account names the variables (``api_key_env``,
``client_id_env`` + ``client_secret_env``, ``username_env`` + ``password_env``), and
:func:`resolve_credentials` reads them when a command needs them (``check-config`` reads them
too, to report an unset one). The values are plain frozen dataclasses whose secret parts are
kept out of ``repr``; the provider clients take them as arguments.

* Telnyx: ``ApiKeyCredentials`` (``Authorization: Bearer <api key>``);
* Bandwidth, legacy API user: ``BasicCredentials`` (HTTP Basic);
* Bandwidth, OAuth2 client credentials: ``OAuth2Credentials`` (exchanged for Bearer tokens at
  ``token_url``).

A missing or empty variable is a ``ConfigError`` naming the key and the variable, never the
value.

The webhook receiver's secrets come the same way (:func:`resolve_webhook_secrets`): a Telnyx
account's Ed25519 public key (``TelnyxWebhookKey``, base64 of 32 bytes) and the Basic
credentials a Bandwidth account's callbacks carry (``BasicCredentials``).
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from poller.config.accounts import BANDWIDTH_TOKEN_URL, BandwidthAccount, TelnyxAccount
from poller.config.settings import Config
from poller.errors import ConfigError

Environ = Mapping[str, str]

DEFAULT_REFRESH_MARGIN_SECONDS = 60.0
"""An OAuth2 token is renewed this long before it expires (or at half its life if shorter)."""


@dataclass(frozen=True, slots=True)
class ApiKeyCredentials:
    """Telnyx: an API key sent as ``Authorization: Bearer <api key>``."""

    api_key: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class BasicCredentials:
    """Bandwidth legacy API user: HTTP Basic ``username:password``."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class OAuth2Credentials:
    """Bandwidth OAuth2 client credentials and where to exchange them for tokens."""

    client_id: str
    client_secret: str = field(repr=False)
    token_url: str = BANDWIDTH_TOKEN_URL
    refresh_margin_seconds: float = DEFAULT_REFRESH_MARGIN_SECONDS


Credentials = ApiKeyCredentials | BasicCredentials | OAuth2Credentials
"""Any one account's credentials."""


@dataclass(frozen=True, slots=True)
class TelnyxWebhookKey:
    """Telnyx: the account's Ed25519 public key (32 bytes) that signs its webhooks."""

    public_key: bytes


WebhookSecret = TelnyxWebhookKey | BasicCredentials
"""What proves that a webhook comes from an account's provider."""


def resolve_credentials(
    account: TelnyxAccount | BandwidthAccount,
    environ: Environ | None = None,
    *,
    key: str | None = None,
) -> Credentials:
    """The account's credentials, read from the environment variables it names.

    ``ConfigError`` names the key and the variable when one is unset or empty. ``key`` is the
    account's key for messages (``accounts[0]``; default ``accounts["<name>"]``).
    """
    environ = os.environ if environ is None else environ
    where = key or f'accounts["{account.name}"]'

    def secret(field: str, variable: str | None) -> str:
        return _secret(environ, where, account.name, field, variable)

    if isinstance(account, TelnyxAccount):
        return ApiKeyCredentials(api_key=secret("api_key_env", account.api_key_env))
    if account.auth_mode == "oauth2":
        return OAuth2Credentials(
            client_id=secret("client_id_env", account.client_id_env),
            client_secret=secret("client_secret_env", account.client_secret_env),
            token_url=account.effective_token_url,
        )
    return BasicCredentials(
        username=secret("username_env", account.username_env),
        password=secret("password_env", account.password_env),
    )


def _secret(environ: Environ, where: str, name: str, field: str, variable: str | None) -> str:
    """The value of ``variable`` (named by key ``where.field``), or a ``ConfigError``."""
    if variable is None:  # excluded by validation; kept for the type checker
        raise ConfigError(f"{where}.{field}: is required", key=f"{where}.{field}")
    value = environ.get(variable)
    if not value:
        state = "is empty" if value is not None else "is not set"
        raise ConfigError(
            f"{where}.{field}: environment variable {variable} {state} "
            f"(account {name!r} reads its credentials from it)",
            key=f"{where}.{field}",
        )
    return value


def resolve_webhook_secret(account: TelnyxAccount | BandwidthAccount,
                           environ: Environ | None = None, *, key: str | None = None
                           ) -> WebhookSecret | None:
    """The secret that proves the account's webhooks genuine (``None``: the account names
    none, so its webhooks are refused); ``ConfigError`` for an unset variable or a public key
    that is not base64 of 32 bytes (the value is never shown)."""
    environ = os.environ if environ is None else environ
    where = key or f'accounts["{account.name}"]'
    if isinstance(account, TelnyxAccount):
        if account.webhook_public_key_env is None:
            return None
        field = "webhook_public_key_env"
        text = _secret(environ, where, account.name, field, account.webhook_public_key_env)
        try:
            raw = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            raise ConfigError(
                f"{where}.{field}: environment variable {account.webhook_public_key_env} must "
                "hold the account's Ed25519 public key in base64 (32 bytes), as Telnyx's "
                "Mission Control shows it", key=f"{where}.{field}")
        return TelnyxWebhookKey(raw)
    if account.webhook_username_env is None:
        return None
    return BasicCredentials(
        username=_secret(environ, where, account.name, "webhook_username_env",
                         account.webhook_username_env),
        password=_secret(environ, where, account.name, "webhook_password_env",
                         account.webhook_password_env))


def resolve_webhook_secrets(config: Config, environ: Environ | None = None
                            ) -> dict[str, WebhookSecret]:
    """The webhook secret of every account that names one, by account name."""
    secrets = {account.name: resolve_webhook_secret(account, environ, key=f"accounts[{index}]")
               for index, account in enumerate(config.accounts)}
    return {name: secret for name, secret in secrets.items() if secret is not None}


def resolve_all_credentials(config: Config, environ: Environ | None = None
                            ) -> dict[str, Credentials]:
    """Every account's credentials by account name; the first missing variable is an error."""
    return {
        account.name: resolve_credentials(account, environ, key=f"accounts[{index}]")
        for index, account in enumerate(config.accounts)
    }
