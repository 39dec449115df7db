"""Test doubles for the provider layer: a settable clock, a recording fake server, and
provider documents shaped like the specs' examples."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from poller.config import ApiKeyCredentials, BasicCredentials, Credentials, OAuth2Credentials
from poller.model import Provider, TargetKey
from poller.providers import (
    BandwidthClient,
    TelnyxClient,
    build_client,
)

API_KEY = "KEYtelnyx-secret-0123456789abcdef"
USERNAME = "bw-user"
PASSWORD = "bw-password-s3cr3t!"
CLIENT_ID = "bw-client-id"
CLIENT_SECRET = "Zq9-oauth-secret-xyz987"
ACCESS_TOKEN = "bw-access-token-AAA111"
BW_ACCOUNT_ID = "9900000"
TOKEN_URL = "https://api.bandwidth.com/api/v1/oauth2/token"
TELNYX_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
BW_ID = "conf-fe23a767-a75a5b77-20c5-4cca-b581-cbbf0776eca9"
START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

Handler = Callable[[httpx.Request], httpx.Response]


class FakeClock:
    """A clock that stands still until a test moves it."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakeServer:
    """A MockTransport handler that records every request and answers from ``handler``."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def paths(self) -> list[bytes]:
        return [r.url.raw_path for r in self.requests]

    def count(self, host: str) -> int:
        return sum(1 for r in self.requests if r.url.host == host)


def telnyx_conference(**overrides: Any) -> dict[str, Any]:
    """A Telnyx ``Conference`` object like the spec's example."""
    data: dict[str, Any] = {
        "connection_id": "3fa85f64-9191-4567-b3fc-2c963f66afa6",
        "created_at": "2019-01-23T18:10:02.574Z",
        "end_reason": "all_left",
        "ended_by": {
            "call_control_id": "v2:T02llQxIyaRkhfRKxgAP8nY511EhFLizdvdUKJiSw8d6A9BborherQczRr",
            "call_session_id": "428c31b6-abf3-3bc1-b7f4-5013ef9657c1",
        },
        "expires_at": "2019-01-23T22:10:02.574Z",
        "id": TELNYX_ID,
        "name": "All hands meeting",
        "record_type": "conference",
        "region": "sv1",
        "status": "completed",
        "updated_at": "2019-01-23T18:20:02.574Z",
    }
    data.update(overrides)
    return data


def telnyx_participant(**overrides: Any) -> dict[str, Any]:
    """A Telnyx ``Participant`` object like the spec's example."""
    data: dict[str, Any] = {
        "call_control_id": "v3:MdI91X4lWFEs7IgbBEOT9M4AigoY08M0WWZFISt1Yw2axZ_IiE4pqg",
        "call_leg_id": "3a15df2d-c801-4729-adf5-b56dd42e2abb",
        "conference": {"id": TELNYX_ID, "name": "1"},
        "created_at": "2019-01-23T18:10:02.574Z",
        "end_conference_on_exit": True,
        "id": "dfadada7-af74-47bc-83a4-554275f55f5c",
        "muted": False,
        "on_hold": True,
        "record_type": "participant",
        "soft_end_conference_on_exit": True,
        "status": "joining",
        "updated_at": "2019-01-23T18:11:02.574Z",
        "whisper_call_control_ids": ["v2:Sg1xxxQ_U3ixxxyXT", "v2:qqpb0mmvd-ovhhBr0BUQQ"],
    }
    data.update(overrides)
    return data


def bandwidth_member(**overrides: Any) -> dict[str, Any]:
    """A Bandwidth ``conferenceMember`` object like the spec's example."""
    data: dict[str, Any] = {
        "callId": "c-15ac29a2-1331029c-2cb0-4a07-b215-b22865662d85",
        "conferenceId": BW_ID,
        "memberUrl": f"https://voice.bandwidth.com/api/v2/accounts/9900000/conferences/{BW_ID}"
                     "/members/c-15ac29a2-1331029c-2cb0-4a07-b215-b22865662d85",
        "mute": False,
        "hold": True,
        "callIdsToCoach": ["c-coached-1"],
    }
    data.update(overrides)
    return data


def bandwidth_conference(**overrides: Any) -> dict[str, Any]:
    """A Bandwidth ``conference`` object like the spec's example, with one active member (of
    that conference, whatever its ``id``)."""
    conference_id = overrides.get("id", BW_ID)
    data: dict[str, Any] = {
        "id": BW_ID,
        "name": "my-conference-name",
        "createdTime": "2022-06-17T22:19:40.375Z",
        "completedTime": None,
        "conferenceEventUrl": "https://myServer.example/bandwidth/webhooks/conferenceEvent",
        "conferenceEventMethod": "POST",
        "tag": "my custom tag",
        "activeMembers": [bandwidth_member(
            conferenceId=conference_id if isinstance(conference_id, str) else BW_ID)],
    }
    data.update(copy.deepcopy(overrides))
    return data


def telnyx_target(conference_id: str = TELNYX_ID, region: str | None = None) -> TargetKey:
    return TargetKey(Provider.TELNYX, "telnyx-main", conference_id, region)


def bandwidth_target(conference_id: str = BW_ID) -> TargetKey:
    return TargetKey(Provider.BANDWIDTH, "bandwidth-main", conference_id)


def telnyx_client(server: FakeServer, clock: FakeClock | None = None, **kwargs: Any
                  ) -> TelnyxClient:
    kwargs.setdefault("base_url", "https://api.telnyx.test/v2")
    client = build_client("telnyx", account="telnyx-main",
                          credentials=ApiKeyCredentials(API_KEY), transport=server.transport,
                          clock=clock or FakeClock(), **kwargs)
    assert isinstance(client, TelnyxClient)
    return client


def bandwidth_client(server: FakeServer, clock: FakeClock | None = None,
                     credentials: Credentials | None = None, **kwargs: Any) -> BandwidthClient:
    client = build_client("bandwidth", account="bandwidth-main", account_id=BW_ACCOUNT_ID,
                          credentials=credentials or BasicCredentials(USERNAME, PASSWORD),
                          base_url="https://voice.bandwidth.test/api/v2",
                          transport=server.transport, clock=clock or FakeClock(), **kwargs)
    assert isinstance(client, BandwidthClient)
    return client


def oauth2() -> OAuth2Credentials:
    return OAuth2Credentials(CLIENT_ID, CLIENT_SECRET, token_url=TOKEN_URL)


def telnyx_ok(conference: dict[str, Any] | None = None,
              participants: list[dict[str, Any]] | None = None) -> Handler:
    """A Telnyx server with one conference and one page of participants (of that conference,
    unless ``participants`` says otherwise)."""
    conference_id = (conference or {}).get("id", TELNYX_ID)
    members = ([telnyx_participant(conference={"id": conference_id, "name": "1"})]
               if participants is None else participants)

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/participants"):
            meta = {"page_number": 1, "page_size": 250, "total_pages": 1,
                    "total_results": len(members)}
            return httpx.Response(200, json={"data": members, "meta": meta})
        return httpx.Response(200, json={"data": conference or telnyx_conference()})

    return handle
