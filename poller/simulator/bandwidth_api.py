"""The simulated Bandwidth Voice conference endpoint and OAuth2 token endpoint.

* ``GET /api/v2/accounts/{accountId}/conferences/{conferenceId}`` → the bare ``conference``
  object, ``activeMembers`` holding only the members present now;
* ``GET /api/v2/accounts/{accountId}/conferences[?name=&minCreatedTime=&maxCreatedTime=&
  pageSize=]`` → a JSON array of ``conference`` objects *without* ``activeMembers``, oldest
  ``createdTime`` first, completed ones included until they expire; ``pageSize`` is 1 to 1000
  (default 1000) and when more remain a ``Link: <url>; rel="next"`` header gives the next page
  (an opaque ``pageToken`` holding the position after the last item, filters kept in the URL);
  a bad time or size is 400 ``validation``;
* ``POST /api/v1/oauth2/token`` (Basic ``client_id:client_secret``, form
  ``grant_type=client_credentials``) → ``{"access_token", "token_type": "Bearer",
  "expires_in", "scope"}``; failures follow RFC 6749 §5.2 (``{"error": "invalid_client"}``).

Error bodies are Bandwidth's ``{"type", "description", "id"}`` as its Voice error docs show
them: 401 ``authentication-error``, 403 ``authorization-error``, 404 ``validation``
("Conference [id] not found"), 429 ``error`` with ``Retry-After``, 500
``internal-server-error``, 503 ``system-overloaded`` with ``Retry-After``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from poller.model import Provider
from poller.simulator.auth import AuthOutcome, check_bandwidth
from poller.simulator.config import FaultKind
from poller.simulator.faults import answer_with_fault
from poller.simulator.timeline import ConferenceTimeline
from poller.simulator.world import Simulator

CONFERENCE_EVENT_URL = "https://sim.example/bandwidth/webhooks/conferenceEvent"
MAX_PAGE_SIZE = 1000


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

        def answer() -> Response:
            at_ms = self.sim.now_ms()
            found = self.sim.existing(Provider.BANDWIDTH, conference_id, at_ms)
            if found is None:
                return not_found(conference_id)
            return JSONResponse(self.conference_json(found, at_ms, _base_url(request)))

        return await self._serve(request, account_id, answer)

    async def list_conferences(self, request: Request) -> Response:
        """``GET /api/v2/accounts/{account_id}/conferences``: oldest first, ``Link`` paged."""
        account_id = request.path_params["account_id"]

        def answer() -> Response:
            query = request.query_params
            bounds: dict[str, int | None] = {}
            for key in ("minCreatedTime", "maxCreatedTime"):
                raw = query.get(key)
                moment = _iso_time(raw) if raw is not None else None
                if raw is not None and moment is None:
                    return bandwidth_error(400, "validation",
                                           f"{key} must be an ISO 8601 time with an offset")
                bounds[key] = self.sim.to_ms(moment) if moment is not None else None
            raw_size = query.get("pageSize", str(MAX_PAGE_SIZE))
            if not raw_size.isdigit() or not 1 <= int(raw_size) <= MAX_PAGE_SIZE:
                return bandwidth_error(400, "validation",
                                       f"pageSize must be between 1 and {MAX_PAGE_SIZE}")
            page_size = int(raw_size)
            token = query.get("pageToken")
            after = _read_token(token) if token is not None else None
            if token is not None and after is None:
                return bandwidth_error(400, "validation", "pageToken is not valid")
            at_ms = self.sim.now_ms()
            low, high, name = bounds["minCreatedTime"], bounds["maxCreatedTime"], query.get("name")
            found = sorted(
                (c for c in self.sim.timelines(Provider.BANDWIDTH)
                 if c.exists_at(at_ms) and (name is None or c.name == name)
                 and (low is None or c.created_ms >= low)
                 and (high is None or c.created_ms <= high)
                 and (after is None or (c.created_ms, c.conference_id) > after)),
                key=lambda c: (c.created_ms, c.conference_id))
            page = found[:page_size]
            base = _base_url(request)
            body = [self.conference_json(c, at_ms, base, members=False) for c in page]
            headers = {}
            if len(found) > page_size:
                last = page[-1]
                params = [(k, v) for k, v in query.multi_items() if k != "pageToken"]
                params.append(("pageToken", _write_token(last.created_ms, last.conference_id)))
                headers["Link"] = f'<{base}{request.url.path}?{urlencode(params)}>; rel="next"'
            return JSONResponse(body, headers=headers)

        return await self._serve(request, account_id, answer)

    async def _serve(self, request: Request, account_id: str,
                     answer: Callable[[], Response]) -> Response:
        """Check the credentials, then ``answer()`` unless a fault was drawn for the request."""
        outcome = check_bandwidth(request, account_id, self.sim.credentials, self.sim.tokens,
                                  self.sim.now_ms())
        if outcome is AuthOutcome.UNAUTHENTICATED:
            return bandwidth_error(401, "authentication-error",
                                   "The credentials provided were invalid")
        if outcome is AuthOutcome.FORBIDDEN:
            return bandwidth_error(403, "authorization-error", "Access is denied")

        config = self.sim.faults.config

        def provider_error(fault: FaultKind) -> Response:
            return fault_error(fault, config.retry_after_seconds)

        return await answer_with_fault(self.sim.faults.draw(), request, config, answer,
                                       provider_error)

    def conference_json(self, conference: ConferenceTimeline, at_ms: int, base_url: str,
                        *, members: bool = True) -> dict[str, Any]:
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
            **({"activeMembers": active} if members else {}),
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


def _iso_time(text: str) -> datetime | None:
    """An ISO 8601 time with an offset (``Z`` allowed), else ``None``."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _write_token(created_ms: int, conference_id: str) -> str:
    """The opaque ``pageToken``: the position after the last conference of a page."""
    document = json.dumps({"createdMs": created_ms, "id": conference_id}).encode()
    return base64.urlsafe_b64encode(document).decode()


def _read_token(token: str) -> tuple[int, str] | None:
    """The position a ``pageToken`` holds, or ``None`` when it is not a token of ours."""
    try:
        document = json.loads(base64.urlsafe_b64decode(token.encode()))
        return int(document["createdMs"]), str(document["id"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None


def _base_url(request: Request) -> str:
    """This server's base, as the client addressed it (``http://127.0.0.1:8765``)."""
    return str(request.base_url).rstrip("/")
