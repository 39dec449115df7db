"""The webhook receiver: what it stores, what it refuses (storing nothing), on both databases.

The receiver's ASGI app is driven over ``httpx.ASGITransport`` with a real ``Store`` on the test
database; requests are signed with the simulator's Telnyx key (``poller.simulator.webhooks``)
or with another key where the test says so. The whole process (``poller run`` serving it on a
port) is in ``test_webhooks_run.py``.
"""

from __future__ import annotations

import base64
import json
import tomllib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine

from poller.config import parse_config, resolve_webhook_secrets
from poller.daemon.metrics import PollerMetrics
from poller.daemon.webhooks import WebhookReceiver
from poller.simulator.webhooks import (
    SIMULATOR_PUBLIC_KEY,
    basic_authorization,
    telnyx_headers,
)
from poller.store.gateway import Store
from poller.store.inbox import StoredEvent, stored_events

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
CONFIG = '''
[webhooks]
listen = "127.0.0.1:0"
max_body_bytes = 4096

[[accounts]]
name = "tx"
provider = "telnyx"
api_key_env = "TX_KEY"
webhook_public_key_env = "TX_PUBLIC"

[[accounts]]
name = "bw"
provider = "bandwidth"
account_id = "99"
client_id_env = "BW_ID"
client_secret_env = "BW_SECRET"
webhook_username_env = "BW_HOOK_USER"
webhook_password_env = "BW_HOOK_PASSWORD"

[[accounts]]
name = "quiet"
provider = "telnyx"
api_key_env = "TX_KEY"
'''
ENVIRON = {"TX_PUBLIC": SIMULATOR_PUBLIC_KEY, "BW_HOOK_USER": "sim-webhook-user",
           "BW_HOOK_PASSWORD": "sim-webhook-password"}


def telnyx_joined(event_id: str = "0ccc7b54-4df3-4bca-a65a-3da1ecc777f0", **data: Any) -> bytes:
    """A spec-shaped ``conference.participant.joined`` webhook (``occurred_at`` beside the
    payload, as the spec has it for participant events)."""
    document = {"data": {"record_type": "event", "id": event_id,
                         "event_type": "conference.participant.joined",
                         "occurred_at": "2026-03-01T11:59:58.521Z",
                         "payload": {"call_control_id": "v3:call-1", "call_leg_id": "leg-1",
                                     "call_session_id": "session-1", "conference_id": "conf-1",
                                     "connection_id": "7267"}, **data},
                "meta": {"attempt": 1, "delivered_to": "https://example.com/webhooks"}}
    return json.dumps(document).encode()


def bandwidth_exit(call_id: str = "c-1") -> bytes:
    return json.dumps({"eventType": "conferenceMemberExit", "eventTime": "2026-03-01T11:59:59.000Z",
                       "conferenceId": "conf-bw", "name": "standup", "from": "+15551110000",
                       "to": "+15552220000", "callId": call_id}).encode()


@pytest.fixture
async def receiver(engine: Engine) -> AsyncIterator[tuple[httpx.AsyncClient, PollerMetrics]]:
    config = parse_config(tomllib.loads(CONFIG), environ={})
    metrics = PollerMetrics()
    hooks = WebhookReceiver(config, resolve_webhook_secrets(config, ENVIRON), Store(engine),
                            clock=lambda: NOW, metrics=metrics)
    transport = httpx.ASGITransport(app=hooks.app())
    async with httpx.AsyncClient(transport=transport, base_url="http://poller") as client:
        yield client, metrics


def count(metrics: PollerMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def signed(body: bytes, *, at: datetime = NOW, key: Ed25519PrivateKey | None = None
           ) -> dict[str, str]:
    timestamp = int(at.timestamp())
    return telnyx_headers(body, timestamp) if key is None else telnyx_headers(body, timestamp, key)


async def test_a_signed_telnyx_event_is_stored_raw_before_the_200(
        receiver: tuple[httpx.AsyncClient, PollerMetrics], engine: Engine) -> None:
    client, metrics = receiver
    body = telnyx_joined()
    answer = await client.post("/webhooks/telnyx/tx", content=body, headers=signed(body))
    assert (answer.status_code, answer.content) == (200, b"")
    [event] = stored_events(engine)
    assert event == StoredEvent(
        provider="telnyx", account="tx", event_key="0ccc7b54-4df3-4bca-a65a-3da1ecc777f0",
        event_type="conference.participant.joined", kind="member_joined",
        conference_id="conf-1",
        call_id="v3:call-1", occurred_at=datetime(2026, 3, 1, 11, 59, 58, 521000, tzinfo=UTC),
        received_at=NOW, deliveries=1, body=body.decode(), outcome="pending", detail=None)
    assert count(metrics, "poller_webhook_events_total", provider="telnyx",
                 result="stored") == 1


async def test_a_repeated_delivery_is_stored_once(
        receiver: tuple[httpx.AsyncClient, PollerMetrics], engine: Engine) -> None:
    """Telnyx delivers again (signed anew, a few seconds later): same answer, one row."""
    client, metrics = receiver
    body = telnyx_joined()
    for delay in (0, 5, 9):
        answer = await client.post("/webhooks/telnyx/tx", content=body,
                                   headers=signed(body, at=NOW - timedelta(seconds=delay)))
        assert answer.status_code == 200
    [event] = stored_events(engine)
    assert event.deliveries == 3
    assert count(metrics, "poller_webhook_events_total", provider="telnyx",
                 result="duplicate") == 2


async def test_event_types_not_applied_are_kept_as_evidence(
        receiver: tuple[httpx.AsyncClient, PollerMetrics], engine: Engine) -> None:
    """A floor change (sent without the ``data`` wrapper, as the spec shows it), a type poller
    has never heard of, and a join without its call: stored, ``ignored``, with the reason."""
    client, _ = receiver
    floor = json.dumps({"event_type": "conference.floor.changed", "id": "e-floor",
                        "payload": {"conference_id": "conf-1", "call_control_id": "v3:c",
                                    "occurred_at": "2026-03-01T11:59:00Z"}}).encode()
    novel = telnyx_joined("e-novel", event_type="conference.teleported")
    callless = json.dumps({"data": {"id": "e-nocall", "event_type":
                                    "conference.participant.left",
                                    "occurred_at": "2026-03-01T11:59:00Z",
                                    "payload": {"conference_id": "conf-1"}}}).encode()
    for body in (floor, novel, callless):
        answer = await client.post("/webhooks/telnyx/tx", content=body, headers=signed(body))
        assert answer.status_code == 200
    outcomes = {e.event_key: (e.outcome, e.detail) for e in stored_events(engine)}
    assert outcomes == {
        "e-floor": ("ignored", "conference.floor.changed: not an event type poller applies"),
        "e-novel": ("ignored", "conference.teleported: not an event type poller applies"),
        "e-nocall": ("ignored", "conference.participant.left without its call ID"),
    }


OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(32))


def _refusals() -> list[Any]:
    body = telnyx_joined()
    good = signed(body)
    return [
        pytest.param("tx", body, {}, 401, "missing_signature", id="no-signature"),
        pytest.param("tx", body, {**good, "telnyx-signature-ed25519": "bm90IGEgc2lnbmF0dXJl"},
                     401, "bad_signature", id="garbage-signature"),
        pytest.param("tx", body.replace(b"call-1", b"call-2"), good, 401, "bad_signature",
                     id="tampered-body"),
        pytest.param("tx", body, signed(body, key=OTHER_KEY), 401, "bad_signature",
                     id="another-key"),
        pytest.param("tx", body, {**good, "telnyx-timestamp": str(int(NOW.timestamp()) + 1)},
                     401, "bad_signature", id="timestamp-not-the-signed-one"),
        pytest.param("tx", body, signed(body, at=NOW - timedelta(seconds=301)), 401,
                     "stale_timestamp", id="stale"),
        pytest.param("tx", body, signed(body, at=NOW + timedelta(seconds=301)), 401,
                     "stale_timestamp", id="from-the-future"),
        pytest.param("tx", b"{not json", signed(b"{not json"), 400, "malformed", id="not-json"),
        pytest.param("tx", b"[1, 2]", signed(b"[1, 2]"), 400, "malformed", id="not-an-object"),
        pytest.param("tx", b'{"data": {"event_type": "conference.created"}}',
                     signed(b'{"data": {"event_type": "conference.created"}}'), 400,
                     "malformed", id="no-event-id"),
        pytest.param("tx", b'{"data": {"id": "x", "event_type": 7}}',
                     signed(b'{"data": {"id": "x", "event_type": 7}}'), 400, "malformed",
                     id="type-not-a-string"),
        pytest.param("tx", b"\xff\xfe", signed(b"\xff\xfe"), 400, "malformed", id="not-utf8"),
        pytest.param("tx", telnyx_joined(occurred_at="yesterday"),
                     signed(telnyx_joined(occurred_at="yesterday")), 400, "malformed",
                     id="time-unreadable"),
        pytest.param("tx", b"{" + b" " * 5000 + b"}", signed(b"{" + b" " * 5000 + b"}"), 413,
                     "too_large", id="too-large"),
        pytest.param("nobody", body, good, 404, "unknown_account", id="unknown-account"),
        pytest.param("quiet", body, good, 404, "unknown_account", id="account-without-key"),
        pytest.param("bw", body, good, 404, "unknown_account", id="bandwidth-account"),
    ]


@pytest.mark.parametrize(("account", "body", "headers", "status", "reason"), _refusals())
async def test_a_refused_telnyx_request_stores_nothing(
        receiver: tuple[httpx.AsyncClient, PollerMetrics], engine: Engine, account: str,
        body: bytes, headers: dict[str, str], status: int, reason: str) -> None:
    client, metrics = receiver
    answer = await client.post(f"/webhooks/telnyx/{account}", content=body, headers=headers)
    assert answer.status_code == status, answer.text
    assert stored_events(engine) == []
    assert count(metrics, "poller_webhook_rejected_total", provider="telnyx",
                 reason=reason) == 1


async def test_a_body_too_large_is_refused_while_it_streams(
        receiver: tuple[httpx.AsyncClient, PollerMetrics], engine: Engine) -> None:
    """Without a Content-Length (chunked), the size is counted as the body arrives."""
    client, _ = receiver

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b" " * 1000

    answer = await client.post("/webhooks/telnyx/tx", content=chunks(),
                               headers=signed(b"irrelevant"))
    assert answer.status_code == 413
    assert stored_events(engine) == []


async def test_bandwidth_challenge_then_credentials(
        receiver: tuple[httpx.AsyncClient, PollerMetrics], engine: Engine) -> None:
    """Bandwidth's flow: first without credentials (401 with a Basic challenge, nothing
    stored), then with them (an empty 204, stored); a repeat is stored once."""
    client, metrics = receiver
    body = bandwidth_exit()
    first = await client.post("/webhooks/bandwidth/bw", content=body)
    assert first.status_code == 401
    assert first.headers["www-authenticate"].startswith("Basic realm=")
    assert stored_events(engine) == []
    for _ in range(2):
        answer = await client.post("/webhooks/bandwidth/bw", content=body,
                                   headers={"authorization": basic_authorization()})
        assert (answer.status_code, answer.content) == (204, b"")
    [event] = stored_events(engine)
    assert (event.provider, event.account, event.event_type, event.conference_id,
            event.call_id, event.occurred_at, event.deliveries, event.outcome) == (
        "bandwidth", "bw", "conferenceMemberExit", "conf-bw", "c-1",
        datetime(2026, 3, 1, 11, 59, 59, tzinfo=UTC), 2, "pending")
    assert event.event_key.startswith("sha256:")
    other = bandwidth_exit("c-2")
    await client.post("/webhooks/bandwidth/bw", content=other,
                      headers={"authorization": basic_authorization()})
    assert len(stored_events(engine)) == 2
    assert count(metrics, "poller_webhook_rejected_total", provider="bandwidth",
                 reason="challenged") == 1
    assert count(metrics, "poller_webhook_events_total", provider="bandwidth",
                 result="stored") == 2


@pytest.mark.parametrize(("authorization", "status", "reason"), [
    (basic_authorization("sim-webhook-user", "wrong"), 401, "bad_credentials"),
    (basic_authorization("someone", "sim-webhook-password"), 401, "bad_credentials"),
    ("Bearer " + base64.b64encode(b"sim-webhook-user:sim-webhook-password").decode(), 401,
     "bad_credentials"),
    ("Basic not-base64!", 401, "bad_credentials"),
])
async def test_wrong_bandwidth_credentials_store_nothing(
        receiver: tuple[httpx.AsyncClient, PollerMetrics], engine: Engine, authorization: str,
        status: int, reason: str) -> None:
    client, metrics = receiver
    answer = await client.post("/webhooks/bandwidth/bw", content=bandwidth_exit(),
                               headers={"authorization": authorization})
    assert answer.status_code == status
    assert answer.headers["www-authenticate"].startswith("Basic")
    assert stored_events(engine) == []
    assert count(metrics, "poller_webhook_rejected_total", provider="bandwidth",
                 reason=reason) == 1


@pytest.mark.parametrize(("body", "status"), [
    (b"not json", 400), (b'{"eventTime": "2026-03-01T00:00:00Z"}', 400),
    (b"{" + b" " * 5000 + b"}", 413),
    (b'{"eventType": "conferenceMemberJoin", "conferenceId": "\\ud800"}', 400),
    (b'{"eventType": "conferenceMemberJoin", "conferenceId": "c", "tag": "\\udfff"}', 204),
    (b'{"eventType": "conference\\u0000Created"}', 400),
    ('{"eventType": "conferenceCreated"}'.encode("utf-16"), 400),
])
async def test_bandwidth_bodies_refused_or_kept_as_sent(
        receiver: tuple[httpx.AsyncClient, PollerMetrics], engine: Engine, body: bytes,
        status: int) -> None:
    client, _ = receiver
    answer = await client.post("/webhooks/bandwidth/bw", content=body,
                               headers={"authorization": basic_authorization()})
    assert answer.status_code == status
    # A lone surrogate in a field poller does not read is kept, escaped as it came.
    assert [e.body for e in stored_events(engine)] == ([body.decode()] if status == 204 else [])


async def test_only_post_is_served(receiver: tuple[httpx.AsyncClient, PollerMetrics]) -> None:
    client, _ = receiver
    assert (await client.get("/webhooks/telnyx/tx")).status_code == 405
    assert (await client.post("/webhooks/twilio/tx", content=b"{}")).status_code == 404


async def test_with_the_database_away_the_answer_is_503_and_the_provider_retries() -> None:
    """A store that cannot be reached: 503 with Retry-After, so the provider delivers again;
    nothing was acknowledged that is not stored."""
    from poller.store.database import make_engine

    config = parse_config(tomllib.loads(CONFIG), environ={})
    engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/nothing")
    metrics = PollerMetrics()
    hooks = WebhookReceiver(config, resolve_webhook_secrets(config, ENVIRON), Store(engine),
                            clock=lambda: NOW, metrics=metrics)
    body = telnyx_joined()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=hooks.app()),
                                 base_url="http://poller") as client:
        answer = await client.post("/webhooks/telnyx/tx", content=body, headers=signed(body))
    engine.dispose()
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "30"
    assert count(metrics, "poller_webhook_rejected_total", provider="telnyx",
                 reason="store_unavailable") == 1


async def test_a_reload_swaps_the_accounts_whole(engine: Engine) -> None:
    """After ``reconfigure`` with a config whose Telnyx account names no key, its webhooks
    are refused; the Bandwidth account (unchanged) still takes its callbacks."""
    config = parse_config(tomllib.loads(CONFIG), environ={})
    hooks = WebhookReceiver(config, resolve_webhook_secrets(config, ENVIRON), Store(engine),
                            clock=lambda: NOW)
    reloaded = parse_config(tomllib.loads(CONFIG.replace(
        'webhook_public_key_env = "TX_PUBLIC"\n', "")), environ={})
    hooks.reconfigure(reloaded, resolve_webhook_secrets(reloaded, ENVIRON))
    assert hooks.accounts == ["bw"]
    body = telnyx_joined()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=hooks.app()),
                                 base_url="http://poller") as client:
        refused = await client.post("/webhooks/telnyx/tx", content=body, headers=signed(body))
        taken = await client.post("/webhooks/bandwidth/bw", content=bandwidth_exit(),
                                  headers={"authorization": basic_authorization()})
    assert (refused.status_code, taken.status_code) == (404, 204)
    assert [e.account for e in stored_events(engine)] == ["bw"]


async def test_a_creation_event_starts_tracking_for_a_discovering_account(
        engine: Engine) -> None:
    """``discover = true``: a new conferenceCreated adds the conference as a discovered target,
    due now; with ``discover_name``, only a conference of that name; without discover, none."""
    from sqlalchemy import text

    discovering = CONFIG.replace('webhook_password_env = "BW_HOOK_PASSWORD"\n',
                                 'webhook_password_env = "BW_HOOK_PASSWORD"\ndiscover = true\n'
                                 'discover_name = "standup"\n')
    config = parse_config(tomllib.loads(discovering), environ={})
    hooks = WebhookReceiver(config, resolve_webhook_secrets(config, ENVIRON), Store(engine),
                            clock=lambda: NOW)

    def created(conference: str, name: str) -> bytes:
        return json.dumps({"eventType": "conferenceCreated", "conferenceId": conference,
                           "name": name, "eventTime": "2026-03-01T11:59:00Z"}).encode()

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=hooks.app()),
                                 base_url="http://poller") as client:
        for body in (created("conf-a", "standup"), created("conf-b", "other")):
            answer = await client.post("/webhooks/bandwidth/bw", content=body,
                                       headers={"authorization": basic_authorization()})
            assert answer.status_code == 204
    with engine.connect() as conn:
        targets = conn.execute(text("SELECT account, conference_id, source, state "
                                    "FROM poll_target")).all()
    assert [tuple(t) for t in targets] == [("bw", "conf-a", "discovered", "active")]


async def test_what_the_parser_noticed_is_kept_with_the_event(
        receiver: tuple[httpx.AsyncClient, PollerMetrics], engine: Engine) -> None:
    """A time without a zone is read as UTC and said in ``detail``, not dropped."""
    client, _ = receiver
    body = telnyx_joined(occurred_at="2026-03-01T11:59:58")
    answer = await client.post("/webhooks/telnyx/tx", content=body, headers=signed(body))
    assert answer.status_code == 200
    [event] = stored_events(engine)
    assert event.outcome == "pending"
    assert event.occurred_at == datetime(2026, 3, 1, 11, 59, 58, tzinfo=UTC)
    assert event.detail is not None
    assert "no time zone" in event.detail
