"""The provider layer: Telnyx and Bandwidth conference clients over httpx.

``build_client(...)`` gives a ``ProviderClient`` for one account; ``await client.fetch(target)``
returns an ``Observation`` or raises a ``ProviderError`` (see ``poller.errors``). The pure
parsers (``parse_telnyx_conference``, ``parse_telnyx_participants``,
``parse_bandwidth_conference``) turn provider JSON into the model without any I/O.

Modules: ``client`` (the protocol and ``build_client``), ``telnyx`` / ``bandwidth`` (the clients),
``telnyx_parser`` / ``bandwidth_parser`` (pure parsers), ``listing`` (what the clients'
``list_conferences`` return, and the tolerant reading of list pages), ``fields`` (tolerant
reading of fields and timestamps), ``http`` (the shared client and error boundary: size cap,
secret redaction, URL path segments), ``status`` (HTTP status ⇒ error, ``Retry-After``),
``auth`` (credentials; Bearer, Basic and OAuth2). The mapping is documented in
``docs/providers.md``.
"""

from poller.providers.bandwidth import BandwidthClient
from poller.providers.bandwidth_parser import parse_bandwidth_conference
from poller.providers.client import ProviderClient, build_client
from poller.providers.fields import parse_timestamp
from poller.providers.http import Clock, HttpSettings
from poller.providers.telnyx import TelnyxClient
from poller.providers.telnyx_parser import (
    ParticipantPage,
    parse_telnyx_conference,
    parse_telnyx_participants,
)

__all__ = [
    "BandwidthClient",
    "Clock",
    "HttpSettings",
    "ParticipantPage",
    "ProviderClient",
    "TelnyxClient",
    "build_client",
    "parse_bandwidth_conference",
    "parse_telnyx_conference",
    "parse_telnyx_participants",
    "parse_timestamp",
]
