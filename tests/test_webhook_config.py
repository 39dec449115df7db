"""The ``[webhooks]`` section and the accounts' webhook secrets: what is accepted, and every
refusal names the key (and, for a secret, the variable, never its value)."""

from __future__ import annotations

import base64
import tomllib

import pytest

from poller.config import (
    BasicCredentials,
    Config,
    TelnyxWebhookKey,
    parse_config,
    resolve_webhook_secrets,
)
from poller.errors import ConfigError

KEY = base64.b64encode(bytes(range(32))).decode()
TELNYX = '''
[[accounts]]
name = "tx"
provider = "telnyx"
api_key_env = "TX_KEY"
webhook_public_key_env = "TX_PUBLIC"
'''
BANDWIDTH = '''
[[accounts]]
name = "bw"
provider = "bandwidth"
account_id = "99"
client_id_env = "BW_ID"
client_secret_env = "BW_SECRET"
webhook_username_env = "BW_HOOK_USER"
webhook_password_env = "BW_HOOK_PASSWORD"
'''
ENVIRON = {"TX_PUBLIC": KEY, "BW_HOOK_USER": "hook", "BW_HOOK_PASSWORD": "s3cret-value"}


def parse(text: str) -> Config:
    return parse_config(tomllib.loads(text), environ={}, source="config.toml")


def refusal(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    return str(caught.value)


def test_secrets_resolved_per_account() -> None:
    """A Telnyx account gets its 32-byte key, a Bandwidth account its Basic pair; an account
    naming none takes no webhooks."""
    config = parse('[webhooks]\nlisten = "127.0.0.1:0"\n' + TELNYX + BANDWIDTH + '''
[[accounts]]
name = "plain"
provider = "telnyx"
api_key_env = "TX_KEY"
''')
    secrets = resolve_webhook_secrets(config, ENVIRON)
    assert secrets == {"tx": TelnyxWebhookKey(bytes(range(32))),
                       "bw": BasicCredentials("hook", "s3cret-value")}
    assert "s3cret-value" not in repr(secrets)
    assert config.webhooks.address == ("127.0.0.1", 0)
    assert config.webhooks.timestamp_tolerance_seconds == 300
    assert config.webhooks.max_body_bytes == 256 * 1024


@pytest.mark.parametrize(("environ", "expected"), [
    ({"BW_HOOK_USER": "hook", "BW_HOOK_PASSWORD": "x"},
     "accounts[0].webhook_public_key_env: environment variable TX_PUBLIC is not set"),
    ({**ENVIRON, "TX_PUBLIC": "not base64!"},
     "accounts[0].webhook_public_key_env: environment variable TX_PUBLIC must hold"),
    ({**ENVIRON, "TX_PUBLIC": base64.b64encode(bytes(31)).decode()},
     "accounts[0].webhook_public_key_env: environment variable TX_PUBLIC must hold"),
    ({**ENVIRON, "BW_HOOK_PASSWORD": ""},
     "accounts[1].webhook_password_env: environment variable BW_HOOK_PASSWORD is empty"),
])
def test_a_missing_or_malformed_secret_names_the_key(environ: dict[str, str],
                                                     expected: str) -> None:
    config = parse(TELNYX + BANDWIDTH)
    with pytest.raises(ConfigError) as caught:
        resolve_webhook_secrets(config, environ)
    assert expected in str(caught.value)
    assert "not base64!" not in str(caught.value)


def test_bandwidth_webhook_credentials_come_in_pairs() -> None:
    text = BANDWIDTH.replace('webhook_password_env = "BW_HOOK_PASSWORD"\n', "")
    assert refusal(text) == ("config.toml: accounts[0].webhook_password_env: is required with "
                             "webhook_username_env")


@pytest.mark.parametrize(("section", "message"), [
    ('[webhooks]\nlisten = "127.0.0.1:9108"\n[metrics]\nlisten = "127.0.0.1:9108"\n',
     "webhooks.listen: is the same address as metrics.listen"),
    ('[webhooks]\nlisten = "nohost"\n', "webhooks.listen"),
    ("[webhooks]\ntimestamp_tolerance_seconds = 0\n", "webhooks.timestamp_tolerance_seconds"),
    ("[webhooks]\nmax_body_bytes = 10\n", "webhooks.max_body_bytes"),
    ("[webhooks]\nsecret = 1\n", "webhooks.secret"),
])
def test_bad_webhook_settings_name_the_key(section: str, message: str) -> None:
    assert message in refusal(section)
