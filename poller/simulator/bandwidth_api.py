"""The simulated Bandwidth Voice conference endpoint and OAuth2 token endpoint.

* ``GET /api/v2/accounts/{accountId}/conferences/{conferenceId}`` → the bare ``conference``
  object, ``activeMembers`` holding only the members present now;
* ``POST /api/v1/oauth2/token`` (Basic ``client_id:client_secret``, form
  ``grant_type=client_credentials``) → ``{"access_token", "token_type": "Bearer",
  "expires_in", "scope"}``; failures follow RFC 6749 §5.2 (``{"error": "invalid_client"}``).

Error bodies are Bandwidth's ``{"type", "description", "id"}`` as its Voice error docs show
them: 401 ``authentication-error``, 403 ``authorization-error``, 404 ``validation``
("Conference [id] not found"), 429 ``error`` with ``Retry-After``, 500
``internal-server-error``, 503 ``system-overloaded`` with ``Retry-After``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from poller.model import Provider
from poller.simulator.auth import AuthOutcome, check_bandwidth
from poller.simulator.config import FaultKind
from poller.simulator.faults import answer_with_fault
from poller.simulator.timeline import ConferenceTimeline
from poller.simulator.world import Simulator

CONFERENCE_EVENT_URL = "https://sim.example/bandwidth/webhooks/conferenceEvent"


def bandwidth_error(status_code: int, error_type: str, description: str, *,
                    headers: Mapping[str, str] | None = None) -> JSONResponse:
    """A Bandwidth Voice error response."""
    return JSONResponse({"type": error_type, "description": description, "id": None},
                        status_code=status_code, headers=headers)


def not_found(conference_id: str) -> JSONResponse:
    """404 for a conference the account does not (or no longer) have."""
    return bandwidth_error(404, "validation", f"Conference [{conference_id}] not found")


def fault_error(fault: FaultKind, retry_after_seconds: int) -> JSONResponse:
    """The response of an injected 429 / 500 / 503."""
    retry_after = {"Retry-After": str(retry_after_seconds)}
    if fault is FaultKind.RATE_LIMITED:
        return bandwidth_error(429, "error", "Account rate limit exceeded", headers=retry_after)
    if fault is FaultKind.UNAVAILABLE:
        return bandwidth_error(503, "system-overloaded",
                               "The system is overloaded, please try again later",
                               headers=retry_after)
    return bandwidth_error(500, "internal-server-error",
                           "An internal server error occurred")


def _oauth_error(status_code: int, error: str, description: str) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Basic realm="oauth2"'} if status_code == 401 else None
    return JSONResponse({"error": error, "error_description": description},
                        status_code=status_code, headers=headers)


class BandwidthApi:
    """Request handlers bound to one ``Simulator``."""

    def __init__(self, simulator: Simulator) -> None:
        self.sim = simulator

    async def get_conference(self, request: Request) -> Response:
        """``GET /api/v2/accounts/{account_id}/conferences/{conference_id}``."""
        account_id = request.path_params["account_id"]
        conference_id = request.path_params["conference_id"]
        outcome = check_bandwidth(request, account_id, self.sim.credentials, self.sim.tokens,
                                  self.sim.now_ms())
        if outcome is AuthOutcome.UNAUTHENTICATED:
            return bandwidth_error(401, "authentication-error",
                                   "The credentials provided were invalid")
        if outcome is AuthOutcome.FORBIDDEN:
            return bandwidth_error(403, "authorization-error", "Access is denied")

        def answer() -> Response:
            at_ms = self.sim.now_ms()
            found = self.sim.existing(Provider.BANDWIDTH, conference_id, at_ms)
            if found is None:
                return not_found(conference_id)
            return JSONResponse(self.conference_json(found, at_ms, _base_url(request)))

        config = self.sim.faults.config

        def provider_error(fault: FaultKind) -> Response:
            return fault_error(fault, config.retry_after_seconds)

        return await answer_with_fault(self.sim.faults.draw(), request, config, answer,
                                       provider_error)

    def conference_json(self, conference: ConferenceTimeline, at_ms: int, base_url: str
                        ) -> dict[str, Any]:
        """The ``conference`` object as served at ``at_ms``."""
        account_id = self.sim.credentials.bandwidth_account_id
        completed = at_ms >= conference.ended_ms
        members_url = (f"{base_url}/api/v2/accounts/{account_id}/conferences/"
                       f"{conference.conference_id}/members")
        active = []
        for member in conference.active_members_at(at_ms):
            snapshot = member.snapshot_at(at_ms)
            assert snapshot is not None
            active.append({
                "callId": member.call_id,
                "conferenceId": conference.conference_id,
                "memberUrl": f"{members_url}/{member.call_id}",
                "mute": snapshot.muted,
                "hold": snapshot.on_hold,
                "callIdsToCoach": (list(snapshot.coaching)
                                   if snapshot.coaching is not None else None),
            })
        return {
            "id": conference.conference_id,
            "name": conference.name,
            "createdTime": self.sim.iso(conference.created_ms),
            "completedTime": self.sim.iso(conference.ended_ms) if completed else None,
            "conferenceEventUrl": CONFERENCE_EVENT_URL,
            "conferenceEventMethod": "POST",
            "tag": conference.tag,
            "activeMembers": active,
        }

    async def issue_token(self, request: Request) -> Response:
        """``POST /api/v1/oauth2/token``: the client-credentials grant."""
        if not self.sim.tokens.client_is_valid(request):
            return _oauth_error(401, "invalid_client", "Client authentication failed")
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        grant_type = form.get("grant_type", [""])[0]
        if grant_type != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type",
                                "Only grant_type=client_credentials is supported")
        token, lifetime_seconds = self.sim.tokens.issue(self.sim.now_ms())
        return JSONResponse(
            {"access_token": token, "token_type": "Bearer", "expires_in": lifetime_seconds,
             "scope": ""},
            headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


def _base_url(request: Request) -> str:
    """This server's base, as the client addressed it (``http://127.0.0.1:8765``)."""
    return str(request.base_url).rstrip("/")
