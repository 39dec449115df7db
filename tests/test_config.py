"""Loading ``config.toml`` into typed settings: defaults, every error naming its key, secrets."""

from __future__ import annotations

import base64
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from poller.app import App
from poller.commands.simulate import config_snippet
from poller.config import BANDWIDTH_TOKEN_URL as DEFAULT_TOKEN_URL
from poller.config import (
    TELNYX_REGIONS,
    ApiKeyCredentials,
    BandwidthAccount,
    BasicCredentials,
    Config,
    OAuth2Credentials,
    TelnyxAccount,
    config_path,
    database_url,
    format_key,
    load_config,
    parse_config,
    resolve_all_credentials,
    resolve_credentials,
    resolve_webhook_secrets,
)
from poller.errors import ConfigError
from poller.model import Provider, TargetKey
from poller.providers.http import HttpSettings
from poller.simulator import Credentials, ScenarioConfig, Simulator

REPO_ROOT = Path(__file__).resolve().parents[1]
SECRET = "s3cr3t-VALUE-never-printed"

TELNYX = """
[[accounts]]
name = "telnyx-main"
provider = "telnyx"
api_key_env = "TELNYX_API_KEY"
"""
OAUTH2 = """
[[accounts]]
name = "bw-oauth"
provider = "bandwidth"
account_id = "9900000"
client_id_env = "BW_CLIENT_ID"
client_secret_env = "BW_CLIENT_SECRET"
"""
BASIC = """
[[accounts]]
name = "bw-basic"
provider = "bandwidth"
account_id = "9900001"
username_env = "BW_USERNAME"
password_env = "BW_PASSWORD"
"""
ENVIRON = {
    "TELNYX_API_KEY": "telnyx-key",
    "BW_CLIENT_ID": "client-id",
    "BW_CLIENT_SECRET": "client-secret",
    "BW_USERNAME": "api-user",
    "BW_PASSWORD": "api-password",
}


def parse(text: str, environ: dict[str, str] | None = None) -> Config:
    """``text`` as a config file called config.toml."""
    return parse_config(tomllib.loads(text), environ=environ or {}, source="config.toml")


def error(text: str, environ: dict[str, str] | None = None) -> ConfigError:
    """The ``ConfigError`` that loading ``text`` raises."""
    with pytest.raises(ConfigError) as info:
        parse(text, environ)
    return info.value


# --- defaults ------------------------------------------------------------------------------


def test_fixed_concurrency_bounds_connections_too() -> None:
    """A fixed ``concurrency`` is also each account's connection limit, unless that is set;
    the HTTP settings follow."""
    assert parse("[polling]\nconcurrency = 50").polling.connections_per_account == 50
    polling = parse("[polling]\nconcurrency = 50\nmax_connections_per_account = 7").polling
    assert (polling.slots, polling.connections_per_account) == (50, 7)
    assert HttpSettings.for_polling(polling).max_connections == 7
    assert parse('[polling]\nconcurrency = "auto"').polling.slots is None


def test_empty_file_gives_every_default() -> None:
    """An empty file is valid: embedded SQLite, documented polling defaults, no accounts."""
    config = parse("")
    assert config.database.url == "sqlite:///conferences.db"
    assert config.database.auto_migrate is True
    polling = config.polling
    assert (polling.interval_seconds, polling.idle_interval_seconds, polling.concurrency) == (
        10, 60, "auto")
    assert (polling.slots, polling.connections_per_account) == (None, 1024)
    assert polling.not_found_retire_after == 3
    assert polling.never_found_retire_seconds == 3600
    assert polling.backoff_base_seconds <= polling.backoff_max_seconds
    assert config.retention.poll_error_days == 30
    assert config.retention.raw_payload_days is None
    assert config.metrics.address is None
    assert config.health.address is None
    assert config.accounts == ()


def test_account_defaults_per_provider() -> None:
    """base_url defaults to each provider's public API; requests_per_second to 10."""
    config = parse(TELNYX + OAUTH2)
    telnyx, bandwidth = config.accounts
    assert isinstance(telnyx, TelnyxAccount)
    assert telnyx.base_url == "https://api.telnyx.com/v2"
    assert isinstance(bandwidth, BandwidthAccount)
    assert bandwidth.base_url == "https://voice.bandwidth.com/api/v2"
    assert bandwidth.effective_token_url == DEFAULT_TOKEN_URL
    assert telnyx.requests_per_second == bandwidth.requests_per_second == 10
    assert telnyx.conferences == bandwidth.conferences == ()


def test_integers_are_accepted_as_seconds() -> None:
    """interval_seconds = 5 and = 2.5 both load as floats."""
    assert parse("[polling]\ninterval_seconds = 5").polling.interval_seconds == 5.0
    assert parse("[polling]\ninterval_seconds = 2.5").polling.interval_seconds == 2.5


@pytest.mark.parametrize(
    ("database", "expected"),
    [
        ('url = "sqlite:///x.db"', True),
        ('url = "postgresql+psycopg://poller@db:5432/poller"', False),
        ('url = "postgresql+psycopg://poller@db/poller"\nauto_migrate = true', True),
        ('url = "sqlite:///x.db"\nauto_migrate = false', False),
    ],
)
def test_auto_migrate_default_follows_the_database(database: str, expected: bool) -> None:
    """auto_migrate defaults to true for SQLite and false for PostgreSQL; explicit values win."""
    assert parse(f"[database]\n{database}").database.auto_migrate is expected


def test_settings_are_frozen() -> None:
    """Loaded settings cannot be changed."""
    config = parse(TELNYX)
    with pytest.raises(ValidationError):
        config.polling.interval_seconds = 1  # type: ignore[misc]


def test_timeouts_become_http_settings() -> None:
    """The [polling] request timeouts are handed to the provider clients' HttpSettings."""
    polling = parse("[polling]\nconnect_timeout_seconds = 2\nread_timeout_seconds = 7").polling
    settings = HttpSettings.for_polling(polling)
    assert (settings.connect_timeout_seconds, settings.read_timeout_seconds) == (2, 7)


def test_listen_addresses() -> None:
    """[metrics] / [health] listen parse to (host, port), IPv6 in brackets."""
    config = parse('[metrics]\nlisten = "127.0.0.1:9108"\n[health]\nlisten = "[::1]:8080"')
    assert config.metrics.address == ("127.0.0.1", 9108)
    assert config.health.address == ("::1", 8080)


# --- conferences, regions and targets ------------------------------------------------------


def test_conferences_as_strings_and_tables() -> None:
    """Conference IDs may be bare strings or { id, region } tables; targets carry the region."""
    config = parse(TELNYX + 'conferences = ["a", { id = "b", region = "Europe" }, { id = "c" }]')
    assert config.targets() == (
        TargetKey(Provider.TELNYX, "telnyx-main", "a"),
        TargetKey(Provider.TELNYX, "telnyx-main", "b", "Europe"),
        TargetKey(Provider.TELNYX, "telnyx-main", "c"),
    )


@pytest.mark.parametrize("region", TELNYX_REGIONS)
def test_every_telnyx_region_is_accepted(region: str) -> None:
    """Each region of the spec's enum (Australia, Europe, Middle East, US) loads."""
    config = parse(TELNYX + f'conferences = [{{ id = "a", region = "{region}" }}]')
    assert config.targets()[0].region == region


@pytest.mark.parametrize("region", ["us", "EU", "Middle east", "Asia", ""])
def test_unknown_regions_are_refused(region: str) -> None:
    """A region outside the enum (case matters) is an error naming the conference's key."""
    found = error(TELNYX + f'conferences = ["x", {{ id = "a", region = "{region}" }}]')
    assert found.key == "accounts[0].conferences[1].region"
    assert "Middle East" in str(found)


# --- every error names its key -------------------------------------------------------------

ERRORS = [
    # (file, key, a fragment of the message)
    pytest.param("[polling]\nintervall_seconds = 3", "polling.intervall_seconds",
                 "did you mean 'interval_seconds'", id="misspelt-key"),
    pytest.param("[[account]]\nname = 'a'", "account", "did you mean 'accounts'",
                 id="misspelt-table"),
    pytest.param("[pollin]\n", "pollin", "unknown key", id="unknown-section"),
    pytest.param("polling = 3", "polling", "must be a table", id="section-not-table"),
    pytest.param("accounts = {}", "accounts", "[[accounts]]", id="accounts-not-array"),
    pytest.param('[polling]\ninterval_seconds = "10"', "polling.interval_seconds",
                 "must be a number", id="string-for-number"),
    pytest.param("[polling]\ninterval_seconds = true", "polling.interval_seconds",
                 "must be a number", id="bool-for-number"),
    pytest.param("[polling]\ninterval_seconds = 0", "polling.interval_seconds",
                 "greater than 0", id="zero-interval"),
    pytest.param("[polling]\ninterval_seconds = nan", "polling.interval_seconds",
                 "finite", id="nan"),
    pytest.param("[polling]\nidle_interval_seconds = inf", "polling.idle_interval_seconds",
                 "finite", id="inf"),
    pytest.param("[polling]\nconcurrency = 2.5", "polling.concurrency", "integer",
                 id="float-for-count"),
    pytest.param("[polling]\nconcurrency = 0", "polling.concurrency", "greater than or equal",
                 id="zero-concurrency"),
    pytest.param('[polling]\nconcurrency = "fast"', "polling.concurrency",
                 'must be a valid integer (or "auto")', id="concurrency-not-auto"),
    pytest.param("[polling]\nmax_connections_per_account = 0",
                 "polling.max_connections_per_account", 'greater than or equal to 1 (or "auto")',
                 id="zero-connections"),
    pytest.param("[polling]\nnot_found_retire_after = 0", "polling.not_found_retire_after",
                 "greater than or equal", id="zero-404s"),
    pytest.param("[polling]\nbackoff_base_seconds = 10\nbackoff_max_seconds = 5",
                 "polling.backoff_max_seconds", "backoff_base_seconds", id="backoff-order"),
    pytest.param("[retention]\npoll_error_days = -1", "retention.poll_error_days",
                 "greater than or equal", id="negative-days"),
    pytest.param("[database]\nauto_migrate = 1", "database.auto_migrate", "true or false",
                 id="int-for-bool"),
    pytest.param("[database]\nurl = 5", "database.url", "string", id="url-not-string"),
    pytest.param('[database]\nurl = "no url here"', "database.url", "not a database URL",
                 id="url-garbage"),
    pytest.param(f'[database]\nurl = "postgresql+psycopg://poller:{SECRET}@db/poller"',
                 "database.url", "POLLER_DATABASE_URL", id="password-in-file-url"),
    pytest.param(f'[database]\npassword = "{SECRET}"', "database.password",
                 "POLLER_DATABASE_URL", id="database-password-key"),
    pytest.param('[metrics]\nlisten = "9108"', "metrics.listen", "host:port",
                 id="listen-without-host"),
    pytest.param('[health]\nlisten = "127.0.0.1:99999"', "health.listen", "host:port",
                 id="listen-bad-port"),
    pytest.param('[metrics]\nlisten = "127.0.0.1:9108"\n[health]\nlisten = "127.0.0.1:9108"',
                 "health.listen", "metrics.listen", id="listen-clash"),
    pytest.param('[[accounts]]\nname = "a"\napi_key_env = "K"', "accounts[0].provider",
                 "is required", id="provider-missing"),
    pytest.param('[[accounts]]\nname = "a"\nprovider = "twilio"', "accounts[0].provider",
                 "'telnyx' or 'bandwidth'", id="provider-unknown"),
    pytest.param('[[accounts]]\nprovider = "telnyx"\napi_key_env = "K"', "accounts[0].name",
                 "is required", id="name-missing"),
    pytest.param('[[accounts]]\nname = ""\nprovider = "telnyx"\napi_key_env = "K"',
                 "accounts[0].name", "non-empty", id="name-empty"),
    pytest.param(TELNYX + TELNYX.replace("TELNYX_API_KEY", "OTHER_KEY"), "accounts[1].name",
                 "duplicate account name 'telnyx-main' (also accounts[0])", id="name-duplicate"),
    pytest.param('[[accounts]]\nname = "a"\nprovider = "telnyx"', "accounts[0].api_key_env",
                 "is required", id="telnyx-key-env-missing"),
    pytest.param(f'[[accounts]]\nname = "a"\nprovider = "telnyx"\napi_key_env = "K"\n'
                 f'api_key = "{SECRET}"', "accounts[0].api_key", 'api_key_env = "VARIABLE"',
                 id="api-key-in-file"),
    pytest.param(f'[[accounts]]\nname = "a"\nprovider = "telnyx"\napi_key = "{SECRET}"',
                 "accounts[0].api_key", "api_key_env", id="api-key-instead-of-env"),
    pytest.param(OAUTH2 + f'client_secret = "{SECRET}"', "accounts[0].client_secret",
                 "client_secret_env", id="client-secret-in-file"),
    pytest.param(BASIC + f'password = "{SECRET}"', "accounts[0].password", "password_env",
                 id="password-in-file"),
    pytest.param('[[accounts]]\nname = "a"\nprovider = "telnyx"\napi_key_env = "KEY-1234-abcd"',
                 "accounts[0].api_key_env", "name of an environment variable",
                 id="secret-in-env-key"),
    pytest.param(TELNYX + 'base_url = "ftp://example.com"', "accounts[0].base_url",
                 "http", id="base-url-scheme"),
    pytest.param(TELNYX + f'base_url = "https://user:{SECRET}@example.com/v2"',
                 "accounts[0].base_url", "credentials", id="base-url-credentials"),
    pytest.param(TELNYX + "requests_per_second = 0", "accounts[0].requests_per_second",
                 "greater than or equal to 0.001", id="zero-rate"),
    pytest.param("[polling]\ninterval_seconds = 1e300", "polling.interval_seconds",
                 "less than or equal to 31622400", id="interval-beyond-a-year"),
    pytest.param("[retention]\npoll_error_days = 1e9", "retention.poll_error_days",
                 "less than or equal to 36500", id="days-beyond-a-century"),
    pytest.param("[polling]\nconcurrency = 10000000", "polling.concurrency",
                 "less than or equal to 100000", id="concurrency-huge"),
    pytest.param(TELNYX + 'base_url = "http://127.0.0.1:http/v2"', "accounts[0].base_url",
                 "port from 1 to 65535", id="base-url-port-not-a-number"),
    pytest.param(TELNYX + 'base_url = "http://127.0.0.1:70000/v2"', "accounts[0].base_url",
                 "port from 1 to 65535", id="base-url-port-too-big"),
    pytest.param(TELNYX + 'conferences = "abc"', "accounts[0].conferences", "array",
                 id="conferences-not-array"),
    pytest.param(TELNYX + 'conferences = ["a", "b", "", "c"]',
                 "accounts[0].conferences[2].id", "empty", id="empty-id"),
    pytest.param(TELNYX + 'conferences = ["a", " b"]', "accounts[0].conferences[1].id",
                 "whitespace", id="id-whitespace"),
    pytest.param(TELNYX + 'conferences = ["a", ".."]', "accounts[0].conferences[1].id",
                 "dot segment", id="id-dot-segment"),
    pytest.param(TELNYX + 'conferences = ["a", "b\\u0000"]', "accounts[0].conferences[1].id",
                 "control character", id="id-control"),
    pytest.param(TELNYX + 'conferences = ["a", 3]', "accounts[0].conferences[1]",
                 "conference ID string or a table", id="id-not-string"),
    pytest.param(TELNYX + 'conferences = ["a", { region = "US" }]',
                 "accounts[0].conferences[1].id", "is required", id="table-without-id"),
    pytest.param(TELNYX + 'conferences = [{ id = "a", regoin = "US" }]',
                 "accounts[0].conferences[0].regoin", "did you mean 'region'", id="table-typo"),
    pytest.param(TELNYX + 'conferences = ["a", "b", { id = "a", region = "Europe" }]',
                 "accounts[0].conferences[2].id",
                 "duplicate conference ID 'a' (also conferences[0])", id="id-duplicate"),
    pytest.param(OAUTH2 + 'conferences = [{ id = "a", region = "US" }]',
                 "accounts[0].conferences[0].region", "only for Telnyx",
                 id="region-on-bandwidth"),
    pytest.param(BASIC + 'conferences = ["x", "y", "x"]', "accounts[0].conferences[2].id",
                 "duplicate", id="bandwidth-id-duplicate"),
    pytest.param(OAUTH2.replace('account_id = "9900000"\n', ""), "accounts[0].account_id",
                 "is required", id="account-id-missing"),
    pytest.param(OAUTH2.replace('"9900000"', "9900000"), "accounts[0].account_id",
                 'account_id = "9900000"', id="account-id-number"),
    pytest.param(TELNYX + 'account_id = "1"', "accounts[0].account_id", "unknown key",
                 id="account-id-on-telnyx"),
    pytest.param('[[accounts]]\nname = "b"\nprovider = "bandwidth"\naccount_id = "1"',
                 "accounts[0].client_id_env", "client_id_env + client_secret_env",
                 id="bandwidth-no-auth"),
    pytest.param(OAUTH2 + 'username_env = "U"\npassword_env = "P"',
                 "accounts[0].username_env", "not both", id="bandwidth-both-auth"),
    pytest.param(OAUTH2.replace('client_secret_env = "BW_CLIENT_SECRET"\n', ""),
                 "accounts[0].client_secret_env", "is required with client_id_env",
                 id="oauth2-half"),
    pytest.param(BASIC.replace('username_env = "BW_USERNAME"\n', ""),
                 "accounts[0].username_env", "is required with password_env", id="basic-half"),
    pytest.param(BASIC + 'token_url = "https://example.com/token"', "accounts[0].token_url",
                 "only for OAuth2", id="token-url-with-basic"),
    pytest.param(OAUTH2 + 'token_url = "not a url"', "accounts[0].token_url", "http",
                 id="token-url-bad"),
    pytest.param(TELNYX + OAUTH2 + 'conferences = ["a", { id = "b", region = "EU" }]',
                 "accounts[1].conferences[1]", "", id="second-account"),
]


@pytest.mark.parametrize(("text", "key", "fragment"), ERRORS)
def test_every_error_names_its_key(text: str, key: str, fragment: str) -> None:
    """Each invalid file is one ConfigError whose key and message name the dotted key."""
    found = error(text)
    assert found.key is not None
    assert found.key.startswith(key)
    assert f"config.toml: {found.key}: " in str(found)
    assert fragment in str(found)


@pytest.mark.parametrize(("text", "key", "fragment"), [p for p in ERRORS if SECRET in p.values[0]])
def test_errors_never_echo_a_secret(text: str, key: str, fragment: str) -> None:
    """A secret written into the file is neither in the message nor in a chained exception."""
    found = error(text)
    assert SECRET not in str(found)
    assert found.__cause__ is None
    assert found.__suppress_context__ or found.__context__ is None


def test_only_the_first_problem_is_reported_with_a_count() -> None:
    """Several problems make one message: the first, plus how many more there are."""
    found = error("[polling]\ninterval_seconds = 0\nconcurrency = 0")
    assert found.key == "polling.interval_seconds"
    assert "(and 1 more problem)" in str(found)


def test_a_secret_key_is_reported_before_the_missing_env_key() -> None:
    """api_key = "…" alone reports the secret in the file, not the missing api_key_env."""
    found = error(f'[[accounts]]\nname = "a"\nprovider = "telnyx"\napi_key = "{SECRET}"')
    assert found.key == "accounts[0].api_key"


@pytest.mark.parametrize(
    ("loc", "key"),
    [
        (("polling", "concurrency"), "polling.concurrency"),
        (("accounts", 1, "conferences", 3, "region"), "accounts[1].conferences[3].region"),
        (("accounts",), "accounts"),
    ],
)
def test_format_key(loc: tuple[str | int, ...], key: str) -> None:
    """Locations are written as dotted keys with [index] for array items."""
    assert format_key(loc) == key


# --- secrets come only from the environment -----------------------------------------------


def test_telnyx_key_comes_from_its_variable() -> None:
    """api_key_env names the variable; the key itself is read from the environment."""
    account = parse(TELNYX).accounts[0]
    assert resolve_credentials(account, ENVIRON) == ApiKeyCredentials("telnyx-key")


def test_bandwidth_oauth2_mode() -> None:
    """client_id_env + client_secret_env give OAuth2 credentials with the default token URL."""
    account = parse(OAUTH2).accounts[0]
    assert isinstance(account, BandwidthAccount)
    assert account.auth_mode == "oauth2"
    assert account.secret_env_names == ("BW_CLIENT_ID", "BW_CLIENT_SECRET")
    credentials = resolve_credentials(account, ENVIRON)
    assert credentials == OAuth2Credentials("client-id", "client-secret", DEFAULT_TOKEN_URL)


def test_bandwidth_oauth2_token_url() -> None:
    """token_url replaces Bandwidth's token endpoint."""
    account = parse(OAUTH2 + 'token_url = "http://127.0.0.1:8765/api/v1/oauth2/token"'
                    ).accounts[0]
    credentials = resolve_credentials(account, ENVIRON)
    assert isinstance(credentials, OAuth2Credentials)
    assert credentials.token_url == "http://127.0.0.1:8765/api/v1/oauth2/token"


def test_bandwidth_basic_mode() -> None:
    """username_env + password_env give Basic credentials."""
    account = parse(BASIC).accounts[0]
    assert isinstance(account, BandwidthAccount)
    assert account.auth_mode == "basic"
    assert resolve_credentials(account, ENVIRON) == BasicCredentials("api-user", "api-password")


@pytest.mark.parametrize(
    ("text", "unset", "key"),
    [
        (TELNYX, "TELNYX_API_KEY", "accounts[0].api_key_env"),
        (TELNYX + OAUTH2, "BW_CLIENT_ID", "accounts[1].client_id_env"),
        (TELNYX + OAUTH2, "BW_CLIENT_SECRET", "accounts[1].client_secret_env"),
        (BASIC, "BW_USERNAME", "accounts[0].username_env"),
        (BASIC, "BW_PASSWORD", "accounts[0].password_env"),
    ],
)
@pytest.mark.parametrize("how", ["unset", "empty"])
def test_missing_secret_names_the_variable(text: str, unset: str, key: str, how: str) -> None:
    """An unset or empty variable is a ConfigError naming the key and the variable."""
    environ = {name: SECRET for name in ENVIRON}
    if how == "unset":
        del environ[unset]
    else:
        environ[unset] = ""
    config = parse(text)
    with pytest.raises(ConfigError) as info:
        resolve_all_credentials(config, environ)
    assert info.value.key == key
    assert unset in str(info.value)
    assert ("is empty" if how == "empty" else "is not set") in str(info.value)
    assert SECRET not in str(info.value)


def test_resolve_credentials_outside_a_config_names_the_account() -> None:
    """Without an index, the message names the account by its name."""
    account = parse(TELNYX).accounts[0]
    with pytest.raises(ConfigError, match=r'accounts\["telnyx-main"\]\.api_key_env'):
        resolve_credentials(account, {})


def test_credentials_hide_their_secrets_in_repr() -> None:
    """Resolved credentials do not show the key, client secret or password in their repr."""
    environ = {**ENVIRON, "TELNYX_API_KEY": SECRET, "BW_CLIENT_SECRET": SECRET,
               "BW_PASSWORD": SECRET}
    for credentials in resolve_all_credentials(parse(TELNYX + OAUTH2 + BASIC), environ).values():
        assert SECRET not in repr(credentials)


@pytest.mark.anyio
async def test_app_builds_a_client_per_account() -> None:
    """An account plus its credentials make a provider client for that account."""
    config = parse(TELNYX + OAUTH2)
    app = App(config, resolve_all_credentials(config, ENVIRON))
    for account in config.accounts:
        client = app.client(account)
        try:
            assert (client.provider, client.account) == (account.kind, account.name)
        finally:
            await client.aclose()


# --- where the file and the database URL come from -----------------------------------------


def test_database_url_override() -> None:
    """POLLER_DATABASE_URL replaces [database] url and decides the auto_migrate default."""
    url = f"postgresql+psycopg://poller:{SECRET}@db:5432/poller"
    config = parse('[database]\nurl = "sqlite:///file.db"', {"POLLER_DATABASE_URL": url})
    assert config.database.url == url
    assert config.database.auto_migrate is False
    assert SECRET not in config.database.display_url()
    assert "***" in config.database.display_url()


def test_bad_database_url_override_is_not_echoed() -> None:
    """An unparsable POLLER_DATABASE_URL is reported by name, without its value."""
    found = error("", {"POLLER_DATABASE_URL": f"{SECRET} is not a URL"})
    assert found.key == "database.url"
    assert "POLLER_DATABASE_URL" in str(found)
    assert SECRET not in str(found)


def test_database_url_precedence(tmp_path: Path) -> None:
    """database_url(): the variable, else the file's [database] url, else the default."""
    path = tmp_path / "config.toml"
    path.write_text('[database]\nurl = "sqlite:///from-file.db"\n')
    assert database_url(path, {"POLLER_DATABASE_URL": "sqlite:///env.db"}) == "sqlite:///env.db"
    assert database_url(path, {}) == "sqlite:///from-file.db"
    path.write_text("[polling]\n")
    assert database_url(path, {}) == "sqlite:///conferences.db"


def test_database_url_refuses_a_password_in_the_file(tmp_path: Path) -> None:
    """database_url() applies the same no-secrets rule to [database] url."""
    path = tmp_path / "config.toml"
    path.write_text(f'[database]\nurl = "postgresql://u:{SECRET}@h/d"\n')
    with pytest.raises(ConfigError) as info:
        database_url(path, {})
    assert info.value.key == "database.url"
    assert SECRET not in str(info.value)


def test_config_path_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--config, else POLLER_CONFIG, else ./config.toml when it exists, else none."""
    monkeypatch.chdir(tmp_path)
    explicit = tmp_path / "explicit.toml"
    assert config_path(explicit, {"POLLER_CONFIG": "env.toml"}) == explicit
    assert config_path(None, {"POLLER_CONFIG": "env.toml"}) == Path("env.toml")
    assert config_path(None, {}) is None
    (tmp_path / "config.toml").write_text("")
    assert config_path(None, {}) == Path("config.toml")


def test_load_config_reads_the_file(tmp_path: Path) -> None:
    """load_config() reads the named file; a missing file or bad TOML names the file."""
    path = tmp_path / "poller.toml"
    path.write_text(TELNYX)
    assert load_config(path, {}).accounts[0].name == "telnyx-main"
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml", {})
    path.write_text("[polling\n")
    with pytest.raises(ConfigError, match=r"poller\.toml: not valid TOML"):
        load_config(path, {})


def test_load_config_error_names_the_file(tmp_path: Path) -> None:
    """Validation errors from a file start with the file's path."""
    path = tmp_path / "poller.toml"
    path.write_text("[polling]\nconcurrency = 0\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert str(info.value).startswith(f"{path}: polling.concurrency: ")


# --- the files poller itself writes or ships -----------------------------------------------


@pytest.mark.parametrize("server_url", ["http://127.0.0.1:8765", "http://[::1]:40123/"])
def test_simulate_snippet_loads_cleanly(server_url: str) -> None:
    """The config.toml snippet `poller simulate` prints loads, with every served conference."""
    simulator = Simulator(seed=7)
    config = parse(config_snippet(simulator, server_url))
    targets = config.targets()
    assert {t.conference_id for t in targets if t.provider is Provider.TELNYX} == set(
        simulator.conference_ids(Provider.TELNYX))
    assert {t.conference_id for t in targets if t.provider is Provider.BANDWIDTH} == set(
        simulator.conference_ids(Provider.BANDWIDTH))
    assert any(t.region not in (None, "US") for t in targets)
    fake = Credentials()
    environ = {"TELNYX_API_KEY": fake.telnyx_api_key, "BW_CLIENT_ID": fake.bandwidth_client_id,
               "BW_CLIENT_SECRET": fake.bandwidth_client_secret}
    assert len(resolve_all_credentials(config, environ)) == 2


def test_repository_config_example_matches_the_simulator() -> None:
    """./config.toml loads, and its demo accounts list what `poller simulate` serves by default."""
    document: dict[str, Any] = tomllib.loads((REPO_ROOT / "config.toml").read_text())
    config = parse_config(document, environ={})
    simulator = Simulator(seed=1, scenario=ScenarioConfig(telnyx_conferences=20,
                                                          bandwidth_conferences=20))
    expected = parse(config_snippet(simulator, "http://127.0.0.1:8765"))
    assert config.accounts == expected.accounts
    assert config.database.url == "sqlite:///conferences.db"


def _documented_example() -> str:
    """The ```toml block under "Full example" in docs/configuration.md."""
    text = (REPO_ROOT / "docs" / "configuration.md").read_text()
    return text.split("## Full example", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]


def test_documented_full_example_loads() -> None:
    """The full example in docs/configuration.md is valid and sets every key of the sections."""
    config = parse(_documented_example(), ENVIRON)
    assert [account.name for account in config.accounts] == [
        "telnyx-main", "bandwidth-main", "bandwidth-legacy"]
    assert len(resolve_all_credentials(config, ENVIRON)) == 3
    example = tomllib.loads(_documented_example())
    secrets = resolve_webhook_secrets(config, ENVIRON | {
        "TELNYX_PUBLIC_KEY": base64.b64encode(bytes(32)).decode(),
        "BW_WEBHOOK_USER": "u", "BW_WEBHOOK_PASSWORD": "p"})
    assert sorted(secrets) == ["bandwidth-main", "telnyx-main"]
    for section in ("database", "polling", "retention", "daemon", "webhooks"):
        assert set(example[section]) == set(type(getattr(config, section)).model_fields), section


def test_every_key_is_documented() -> None:
    """Every section and key has its own entry in docs/configuration.md."""
    text = (REPO_ROOT / "docs" / "configuration.md").read_text()
    for section in Config.model_fields:
        assert f"## `[{section}]`" in text or f"`[{section}]`" in text or (
            f"## `[[{section}]]`" in text), section
    models = [*[type(getattr(Config(), name)) for name in ("database", "polling",
                                                                   "retention", "metrics",
                                                                   "daemon", "webhooks")],
              TelnyxAccount, BandwidthAccount]
    for model in models:
        for name in model.model_fields:
            assert f"`{name}`" in text or f"`conferences[].{name}`" in text, name
