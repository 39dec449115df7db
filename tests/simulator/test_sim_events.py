"""The simulator's provider events and Telnyx detail records, validated against the specs;
and its delivery of events to a receiver (poller's, in-process, on a real database)."""

from __future__ import annotations

import json
import tomllib
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from poller.config import parse_config, resolve_webhook_secrets
from poller.daemon.webhooks import WebhookReceiver
from poller.model import EventKind, Provider, utc_now
from poller.providers.telnyx import TelnyxClient
from poller.simulator import Simulator, VirtualClock, create_app
from poller.simulator.delivery import DeliveryFaults, EventDelivery
from poller.simulator.events import conference_events
from poller.simulator.webhooks import SIMULATOR_PUBLIC_KEY
from poller.store.gateway import Store
from poller.store.inbox import stored_events

TELNYX_SCHEMAS = {
    EventKind.CONFERENCE_CREATED: "ConferenceCreatedEvent",
    EventKind.CONFERENCE_ENDED: "ConferenceEndedEvent",
    EventKind.MEMBER_JOINED: "ConferenceParticipantJoinedEvent",
    EventKind.MEMBER_LEFT: "ConferenceParticipantLeftEvent",
}
BANDWIDTH_SCHEMAS = {
    EventKind.CONFERENCE_CREATED: "conferenceCreatedCallback",
    EventKind.CONFERENCE_ENDED: "conferenceCompletedCallback",
    EventKind.MEMBER_JOINED: "conferenceMemberJoinCallback",
    EventKind.MEMBER_LEFT: "conferenceMemberExitCallback",
}


def test_every_event_body_is_the_specs(simulator: Simulator, telnyx_spec: Any,
                                       bandwidth_spec: Any) -> None:
    """Each event of every conference validates against its provider's schema (strict: no
    field the spec does not have), and its time is the timeline's."""
    kinds: set[tuple[Provider, EventKind]] = set()
    for provider, spec, schemas in ((Provider.TELNYX, telnyx_spec, TELNYX_SCHEMAS),
                                    (Provider.BANDWIDTH, bandwidth_spec, BANDWIDTH_SCHEMAS)):
        for timeline in simulator.timelines(provider):
            events = conference_events(simulator, timeline)
            assert len(events) == 2 + 2 * len(timeline.members)
            for event in events:
                body = json.loads(event.body)
                document = dict(body)
                document.pop("meta", None)  # the docs' delivery metadata; not in the schema
                spec.validate_schema(document, schemas[event.kind])
                kinds.add((provider, event.kind))
                data = body.get("data", body)
                when = data.get("occurred_at") or data.get("payload", {}).get(
                    "occurred_at") or data.get("eventTime")
                assert when == simulator.iso(event.at_ms)
    assert len(kinds) == 8


@pytest.mark.anyio
async def test_detail_records_appear_after_the_end(
        simulator: Simulator, clock: VirtualClock, client: httpx.AsyncClient, telnyx_spec: Any,
        telnyx_auth: dict[str, str]) -> None:
    """Empty until ``detail_records_delay_seconds`` after the end; then one spec-valid record
    per participant, with its exact stay; the poller's client reads them all, page by page."""
    life = max(simulator.timelines(Provider.TELNYX), key=lambda t: len(t.members))
    params = {"filter[record_type]": "conference-participant",
              "filter[conference_id]": life.conference_id, "page[size]": "2"}
    clock.set(simulator.to_datetime(life.ended_ms + 1000))
    early = await client.get("/v2/detail_records", params=params, headers=telnyx_auth)
    assert early.json()["data"] == []
    clock.set(simulator.to_datetime(life.ended_ms + 61_000))
    answer = await client.get("/v2/detail_records", params=params, headers=telnyx_auth)
    assert answer.status_code == 200
    for record in answer.json()["data"]:
        telnyx_spec.validate_schema(record, "ConferenceParticipantDetailRecord")
    transport = httpx.ASGITransport(app=create_app(simulator))
    telnyx = TelnyxClient(account="tx", api_key=simulator.credentials.telnyx_api_key,
                          base_url="http://sim/v2", transport=transport, page_size=2)
    try:
        records, warnings = await telnyx.participant_records(life.conference_id)
    finally:
        await telnyx.aclose()
    assert warnings == ()
    assert sorted((r.member_id, r.joined_at, r.left_at) for r in records) == sorted(
        (m.member_id, simulator.to_datetime(m.joined_ms), simulator.to_datetime(m.left_ms))
        for m in life.members)


@pytest.mark.anyio
async def test_delivery_reaches_the_receiver_once_per_event(
        simulator: Simulator, clock: VirtualClock, engine: Engine) -> None:
    """Every due event reaches poller's receiver and is stored once: a duplicate delivery
    adds to ``deliveries``, a forged copy is refused, a dropped one never comes."""
    config = parse_config(tomllib.loads('''
[[accounts]]
name = "tx"
provider = "telnyx"
api_key_env = "K"
webhook_public_key_env = "P"
[[accounts]]
name = "bw"
provider = "bandwidth"
account_id = "1"
client_id_env = "I"
client_secret_env = "S"
webhook_username_env = "U"
webhook_password_env = "W"
'''), environ={})
    secrets = resolve_webhook_secrets(config, {"P": SIMULATOR_PUBLIC_KEY, "U": "sim-webhook-user",
                                               "W": "sim-webhook-password"})
    receiver = WebhookReceiver(config, secrets, Store(engine), clock=utc_now)  # signed now
    delivery = EventDelivery(simulator, "http://poller/webhooks",
                             {Provider.TELNYX: "tx", Provider.BANDWIDTH: "bw"},
                             faults=DeliveryFaults(drop=0.2, duplicate=0.3, forged=0.3, seed=1))
    clock.set(simulator.to_datetime(600_000))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver.app())) as http:
        for _ in range(3):
            await delivery.deliver_due(http)
    assert delivery.idle
    stored = stored_events(engine)
    assert len(stored) == len({event.key for event in delivery.delivered})
    assert sum(e.deliveries for e in stored) == delivery.stats["delivered"]
    assert delivery.stats["dropped"] > 0
    assert delivery.stats["forged_refused"] == delivery.stats["forged"] > 0
    assert {e.outcome for e in stored} == {"pending"}
