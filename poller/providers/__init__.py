"""The provider layer: Telnyx and Bandwidth conference clients over httpx.

``build_client(...)`` gives a ``ProviderClient`` for one account; ``await client.fetch(target,
pace)`` returns an ``Observation`` or raises a ``ProviderError`` (see ``poller.errors``). The
pure parsers (``parse_telnyx_conference``, ``parse_telnyx_participants``,
``parse_bandwidth_conference``) turn provider JSON into the model without any I/O.

Modules: ``base`` (the ``ProviderClient`` protocol and what both clients share), ``factory``
(``build_client``), ``telnyx`` / ``bandwidth`` (the clients), ``telnyx_parser`` /
``bandwidth_parser`` (pure parsers), ``listing`` (what the clients' ``list_conferences``
return, and the tolerant reading of list pages), ``fields`` (tolerant reading of fields and
timestamps), ``http`` (the shared client and error boundary: size cap, pacing hook,
``HttpSettings``), ``redaction`` (secrets kept out of every error), ``status`` (HTTP status ⇒
error, ``Retry-After``), ``auth`` (Bearer, Basic and OAuth2 headers), ``deferred`` (the bodies
of a target's last observation again: parsed only when read). The mapping is documented in
``docs/providers.md``.
"""

from poller.providers.bandwidth import BandwidthClient
from poller.providers.bandwidth_parser import parse_bandwidth_conference
from poller.providers.base import ProviderClient
from poller.providers.factory import build_client
from poller.providers.fields import parse_timestamp
from poller.providers.http import Clock, HttpSettings, Pace
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
    "Pace",
    "ParticipantPage",
    "ProviderClient",
    "TelnyxClient",
    "build_client",
    "parse_bandwidth_conference",
    "parse_telnyx_conference",
    "parse_telnyx_participants",
    "parse_timestamp",
]
