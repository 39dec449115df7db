"""The discovery and list-polling keys of ``config.toml``: defaults, and errors naming the key."""

from __future__ import annotations

from typing import Any

import pytest

from poller.config import parse_config
from poller.errors import ConfigError

TELNYX = {"name": "t", "provider": "telnyx", "api_key_env": "K"}
BANDWIDTH = {"name": "b", "provider": "bandwidth", "account_id": "1", "username_env": "U",
             "password_env": "P"}


def test_defaults() -> None:
    """Discovery is off, list polling follows it, Telnyx lists US, every 60 s."""
    config = parse_config({"accounts": [{**TELNYX, "discover": True}, BANDWIDTH,
                                        {**BANDWIDTH, "name": "b2", "list_polling": True}]},
                          environ={})
    telnyx, bandwidth, forced = config.accounts
    assert (telnyx.discover, telnyx.uses_list_polling) == (True, True)
    assert (bandwidth.discover, bandwidth.uses_list_polling) == (False, False)
    assert (forced.discover, forced.uses_list_polling) == (False, True)
    assert telnyx.discover_regions == ("US",)
    assert telnyx.discover_name is None
    assert config.polling.discovery_interval_seconds == 60


@pytest.mark.parametrize(("document", "key", "message"), [
    ({"accounts": [{**TELNYX, "discover_name": "x"}]}, "accounts[0].discover_name",
     "is only used with discover = true"),
    ({"accounts": [{**TELNYX, "discover_regions": ["US"]}]}, "accounts[0].discover_regions",
     "is only used with discover = true"),
    ({"accounts": [{**TELNYX, "discover": True, "discover_name": " x"}]},
     "accounts[0].discover_name", "without leading or trailing whitespace"),
    ({"accounts": [{**TELNYX, "discover": True, "discover_name": ""}]},
     "accounts[0].discover_name", "non-empty"),
    ({"accounts": [{**TELNYX, "discover": "yes"}]}, "accounts[0].discover",
     "must be true or false"),
    ({"accounts": [{**TELNYX, "discover": True, "list_polling": 1}]},
     "accounts[0].list_polling", "must be true or false"),
    ({"accounts": [{**TELNYX, "discover": True, "discover_regions": []}]},
     "accounts[0].discover_regions", "at least one region"),
    ({"accounts": [{**TELNYX, "discover": True, "discover_regions": ["US", "US"]}]},
     "accounts[0].discover_regions[1]", "twice"),
    ({"accounts": [{**TELNYX, "discover": True, "discover_regions": ["Mars"]}]},
     "accounts[0].discover_regions[0]", "'Europe'"),
    ({"accounts": [{**BANDWIDTH, "discover": True, "discover_regions": ["US"]}]},
     "accounts[0].discover_regions", "only for Telnyx accounts"),
    ({"polling": {"discovery_interval_seconds": 0}}, "polling.discovery_interval_seconds",
     "greater than 0"),
    ({"polling": {"discovery_interval_seconds": "60"}}, "polling.discovery_interval_seconds",
     "must be a number"),
])
def test_bad_values_name_the_key(document: dict[str, Any], key: str, message: str) -> None:
    """Each mistake is one ConfigError naming the dotted key."""
    with pytest.raises(ConfigError) as caught:
        parse_config(document, environ={})
    assert caught.value.key == key
    assert message in str(caught.value)
    assert str(caught.value).startswith(key)
