"""The simulated Bandwidth endpoints and OAuth2 token endpoint, validated against the
Bandwidth OpenAPI spec (and RFC 6749 for the token endpoint, which the spec only names)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import jsonschema
import pytest

from poller.model import Provider
from poller.simulator import FaultConfig, FaultKind, Simulator, VirtualClock, create_app

CONFERENCE = "/accounts/{accountId}/conferences/{conferenceId}"
ACCOUNT = "9900000"
BANDWIDTH_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TOKEN_RESPONSE = {
    # RFC 6749 §5.1; the Bandwidth spec gives only the token URL (securitySchemes.OAuth2).
    "type": "object",
    "required": ["access_token", "token_type", "expires_in"],
    "properties": {
        "access_token": {"type": "string", "minLength": 1},
        "token_type": {"const": "Bearer"},
        "expires_in": {"type": "integer", "minimum": 1},
        "scope": {"type": "string"},
    },
    "additionalProperties": False,
}


def _url(conference_id: str, account: str = ACCOUNT) -> str:
    return f"/api/v2/accounts/{account}/conferences/{conference_id}"


async def _token(client: httpx.AsyncClient) -> str:
    response = await client.post("/api/v1/oauth2/token",
                                 auth=("sim-client-id", "sim-client-secret"),
                                 data={"grant_type": "client_credentials"})
    assert response.status_code == 200
    return str(response.json()["access_token"])


@pytest.mark.anyio
async def test_conference_matches_spec_through_its_life(
        client: httpx.AsyncClient, simulator: Simulator, clock: VirtualClock,
        bandwidth_spec: Any, bandwidth_basic: httpx.BasicAuth) -> None:
    """Every conference, before members, while active and completed, is a spec-valid object."""
    coaching_values = set()
    for life in simulator.timelines(Provider.BANDWIDTH):
        for at_ms in (life.created_ms, life.in_progress_ms, (life.in_progress_ms
                      + life.ended_ms) // 2, life.ended_ms):
            clock.set(simulator.to_datetime(at_ms))
            response = await client.get(_url(life.conference_id), auth=bandwidth_basic)
            assert response.status_code == 200
            body = response.json()
            bandwidth_spec.validate_response(body, CONFERENCE, "get", 200)
            assert body["id"] == life.conference_id
            assert BANDWIDTH_TIME.match(body["createdTime"])
            completed = at_ms >= life.ended_ms
            assert (body["completedTime"] is not None) == completed
            if completed:
                assert body["activeMembers"] == []
            for member in body["activeMembers"]:
                assert member["conferenceId"] == life.conference_id
                assert member["memberUrl"] == (
                    f"http://sim.test/api/v2/accounts/{ACCOUNT}/conferences/"
                    f"{life.conference_id}/members/{member['callId']}")
                coaching_values.add(type(member["callIdsToCoach"]).__name__)
    assert coaching_values == {"NoneType", "list"}


@pytest.mark.anyio
async def test_oauth2_token_grants_access(
        client: httpx.AsyncClient, simulator: Simulator, bandwidth_spec: Any) -> None:
    """A client-credentials token (RFC 6749 shape) is accepted as ``Bearer``."""
    response = await client.post("/api/v1/oauth2/token",
                                 auth=("sim-client-id", "sim-client-secret"),
                                 data={"grant_type": "client_credentials"})
    assert response.status_code == 200
    jsonschema.validate(response.json(), TOKEN_RESPONSE)
    assert response.headers["cache-control"] == "no-store"
    conference_id = simulator.conference_ids(Provider.BANDWIDTH)[0]
    token = response.json()["access_token"]
    answer = await client.get(_url(conference_id),
                              headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code in (200, 404)
    if answer.status_code == 200:
        bandwidth_spec.validate_response(answer.json(), CONFERENCE, "get", 200)


@pytest.mark.parametrize(
    ("auth", "form", "status", "error"),
    [
        (("sim-client-id", "wrong"), {"grant_type": "client_credentials"}, 401,
         "invalid_client"),
        (None, {"grant_type": "client_credentials"}, 401, "invalid_client"),
        (("sim-client-id", "sim-client-secret"), {"grant_type": "password"}, 400,
         "unsupported_grant_type"),
    ],
    ids=["wrong-secret", "no-client-credentials", "wrong-grant"],
)
@pytest.mark.anyio
async def test_token_endpoint_refusals(
        client: httpx.AsyncClient, auth: tuple[str, str] | None, form: dict[str, str],
        status: int, error: str) -> None:
    """The token endpoint refuses bad clients and grants with RFC 6749 error bodies."""
    response = await client.post("/api/v1/oauth2/token", auth=auth, data=form)
    assert response.status_code == status
    assert response.json()["error"] == error


@pytest.mark.anyio
async def test_token_expires_on_the_simulator_clock(
        client: httpx.AsyncClient, simulator: Simulator, clock: VirtualClock) -> None:
    """A token works until ``expires_in`` simulated seconds pass, then it is a 401."""
    token = await _token(client)
    url = _url("conf-unknown")
    headers = {"Authorization": f"Bearer {token}"}
    assert (await client.get(url, headers=headers)).status_code == 404
    clock.advance(simulator.credentials.token_lifetime_seconds - 1)
    assert (await client.get(url, headers=headers)).status_code == 404
    clock.advance(1)
    response = await client.get(url, headers=headers)
    assert response.status_code == 401
    assert response.json()["type"] == "authentication-error"


@pytest.mark.parametrize(
    ("case", "status", "error_type"),
    [
        ("no-credentials", 401, "authentication-error"),
        ("wrong-password", 401, "authentication-error"),
        ("forged-token", 401, "authentication-error"),
        ("telnyx-key", 401, "authentication-error"),
        ("other-account", 403, "authorization-error"),
        ("unknown-conference", 404, "validation"),
    ],
)
@pytest.mark.anyio
async def test_errors_match_spec(
        client: httpx.AsyncClient, simulator: Simulator, bandwidth_spec: Any,
        bandwidth_basic: httpx.BasicAuth, case: str, status: int, error_type: str) -> None:
    """Each failure answers Bandwidth's status and ``{type, description, id}`` body."""
    conference_id = simulator.conference_ids(Provider.BANDWIDTH)[0]
    auth: httpx.Auth | None = bandwidth_basic
    headers: dict[str, str] = {}
    url = _url(conference_id)
    if case == "no-credentials":
        auth = None
    elif case == "wrong-password":
        auth = httpx.BasicAuth("sim-api-user", "nope")
    elif case == "forged-token":
        auth, headers = None, {"Authorization": "Bearer sim.1.999999999999.deadbeef"}
    elif case == "telnyx-key":
        auth, headers = None, {"Authorization": "Bearer KEYSIMULATOR0000TELNYX"}
    elif case == "other-account":
        url = _url(conference_id, account="1234567")
    else:
        url = _url("conf-00000000-00000000-0000-0000-0000-000000000000")
    response = await client.get(url, auth=auth, headers=headers)
    assert response.status_code == status
    bandwidth_spec.validate_response(response.json(), CONFERENCE, "get", status)
    assert response.json()["type"] == error_type
    if status == 404:
        assert "not found" in response.json()["description"]


@pytest.mark.parametrize(
    ("fault", "status", "error_type"),
    [(FaultKind.RATE_LIMITED, 429, "error"), (FaultKind.SERVER_ERROR, 500,
                                               "internal-server-error"),
     (FaultKind.UNAVAILABLE, 503, "system-overloaded")],
)
@pytest.mark.anyio
async def test_injected_http_errors_match_spec(
        clock: VirtualClock, bandwidth_spec: Any, bandwidth_basic: httpx.BasicAuth,
        fault: FaultKind, status: int, error_type: str) -> None:
    """Injected 429 / 500 / 503 carry Bandwidth bodies; 429 and 503 say ``Retry-After``."""
    sim = Simulator(seed=3, clock=clock, faults=FaultConfig(rates={fault: 1.0},
                                                            retry_after_seconds=4))
    transport = httpx.ASGITransport(app=create_app(sim))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim.test") as client:
        conference_id = sim.conference_ids(Provider.BANDWIDTH)[0]
        response = await client.get(_url(conference_id), auth=bandwidth_basic)
    assert response.status_code == status
    assert response.json()["type"] == error_type
    if bandwidth_spec.declares(CONFERENCE, "get", status):
        bandwidth_spec.validate_response(response.json(), CONFERENCE, "get", status)
    else:
        bandwidth_spec.validate_schema(response.json(), "voiceApiError")
    if status in (429, 503):
        assert response.headers["Retry-After"] == "4"
    if status == 429:
        assert "Retry-After" in bandwidth_spec.response(CONFERENCE, "get", 429)["headers"]


def test_validators_reject_invented_fields(telnyx_spec: Any, bandwidth_spec: Any) -> None:
    """The strict-object transform makes an unknown field fail validation in both specs."""
    with pytest.raises(jsonschema.ValidationError):
        telnyx_spec.validate_schema({"record_type": "participant", "invented": 1}, "Participant")
    with pytest.raises(jsonschema.ValidationError):
        bandwidth_spec.validate_schema({"callId": "c-1", "invented": 1}, "conferenceMember")
    bandwidth_spec.validate_schema({"callId": "c-1", "callIdsToCoach": None}, "conferenceMember")


@pytest.mark.parametrize(
    ("spec", "schema", "instance"),
    [
        ("telnyx", "call-control_Errors",
         {"errors": [{"code": "10015", "title": "t", "source": {"pointer": "no-slash"}}]}),
        ("bandwidth", "conference", {"createdTime": "2030-01-07 9am"}),
        ("bandwidth", "conference", {"conferenceEventUrl": "not a uri"}),
        ("bandwidth", "conferenceMember", {"memberUrl": "/relative/only"}),
    ],
)
def test_validators_check_formats(telnyx_spec: Any, bandwidth_spec: Any, spec: str,
                                  schema: str, instance: dict[str, Any]) -> None:
    """``format`` (date-time, uri, json-pointer) is checked, not just the type."""
    validator = telnyx_spec if spec == "telnyx" else bandwidth_spec
    with pytest.raises(jsonschema.ValidationError, match="is not a"):
        validator.validate_schema(instance, schema)
