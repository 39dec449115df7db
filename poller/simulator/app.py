"""The simulator's ASGI app: both providers' endpoints plus ``/_sim`` introspection.

``create_app(simulator)`` returns a Starlette app usable under ``httpx.ASGITransport`` (fast,
in-process tests) and under uvicorn (demos, benchmarks)::

    GET  /v2/conferences                                      Telnyx conferences (paged)
    GET  /v2/conferences/{id}                                 Telnyx conference
    GET  /v2/conferences/{id}/participants                    Telnyx participants (paged)
    GET  /api/v2/accounts/{accountId}/conferences             Bandwidth conferences (Link)
    GET  /api/v2/accounts/{accountId}/conferences/{id}        Bandwidth conference
    POST /api/v1/oauth2/token                                 Bandwidth OAuth2 token
    GET  /_sim/truth[?until=ISO|all]                          ground truth (default: until now)
    GET  /_sim/conferences                                    conference IDs served
    GET  /_sim/clock                                          simulated now and epoch
    POST /_sim/clock {"advance_seconds": N}                   move a virtual clock
    GET  /_sim/stats                                          requests, faults, tokens issued
    POST /_sim/churn {"fraction": F[, "provider": P]}         change F of the conferences now

``/_sim`` needs no credentials, never fails on purpose and answers at once; every other path
(the providers' endpoints, their errors) first waits ``Simulator.latency`` (a round trip).
Unknown paths answer in the provider's error format when they fall under its prefix.
"""

from __future__ import annotations

import asyncio
import json
import math
from datetime import datetime

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from poller.model import Provider
from poller.simulator import bandwidth_api, telnyx_api
from poller.simulator.bandwidth_api import BandwidthApi
from poller.simulator.clock import VirtualClock
from poller.simulator.faults import ABORT_EXTENSION, connection_aborter
from poller.simulator.telnyx_api import TelnyxApi
from poller.simulator.truth import ground_truth, served_conferences
from poller.simulator.world import Simulator

TELNYX_PREFIX = "/v2"
BANDWIDTH_PREFIX = "/api/v2"
TOKEN_PATH = "/api/v1/oauth2/token"  # noqa: S105 (a URL path, not a secret)
SIM_PREFIX = "/_sim"


class SimulatorApp(Starlette):
    """Starlette, plus access to the server connection so faults can reset it, and the
    simulated round trip (``Simulator.latency``) before every provider API answer."""

    simulator: Simulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            abort = connection_aborter(send)
            if abort is not None:
                extensions = {**(scope.get("extensions") or {}), ABORT_EXTENSION: abort}
                scope = {**scope, "extensions": extensions}
            if not scope["path"].startswith(SIM_PREFIX):
                delay = self.simulator.response_delay()
                if delay > 0:  # a sleep, not a block: requests wait for their answers together
                    await asyncio.sleep(delay)
        await super().__call__(scope, receive, send)


class IntrospectionApi:
    """``/_sim`` handlers: ground truth, served IDs, the clock and counters."""

    def __init__(self, simulator: Simulator) -> None:
        self.sim = simulator

    async def truth(self, request: Request) -> Response:
        """``GET /_sim/truth``: events up to ``until`` (ISO time, ``all``, default now)."""
        until = request.query_params.get("until")
        if until == "all":
            until_ms: int | None = None
        elif until is None:
            until_ms = self.sim.now_ms()
        else:
            try:
                moment = datetime.fromisoformat(until.replace("Z", "+00:00"))
            except ValueError:
                return JSONResponse({"error": "until must be an ISO time or 'all'"}, 400)
            if moment.tzinfo is None:
                return JSONResponse({"error": "until must carry a UTC offset"}, 400)
            until_ms = self.sim.to_ms(moment)
        return _json(ground_truth(self.sim, until_ms))

    async def conferences(self, request: Request) -> Response:
        """``GET /_sim/conferences``."""
        return _json(served_conferences(self.sim))

    async def clock(self, request: Request) -> Response:
        """``GET /_sim/clock``; ``POST`` advances a virtual clock."""
        if request.method == "POST":
            clock = self.sim.clock
            if not isinstance(clock, VirtualClock):
                return JSONResponse({"error": "the clock is not virtual"}, 409)
            seconds = await _advance_seconds(request)
            if seconds is None:
                return JSONResponse({"error": 'send {"advance_seconds": N}, N >= 0, finite'},
                                    400)
            try:
                clock.advance(seconds)
            except OverflowError:
                return JSONResponse({"error": "advance_seconds moves the clock out of range"},
                                    400)
        return JSONResponse({
            "now": self.sim.iso(self.sim.now_ms()),
            "epoch": self.sim.iso(0),
            "clock": repr(self.sim.clock),
        })

    async def stats(self, request: Request) -> Response:
        """``GET /_sim/stats``: provider requests, faults injected and OAuth2 tokens issued."""
        return JSONResponse({**self.sim.faults.stats(), "tokens_issued": self.sim.tokens.issued,
                             "churn_changes": self.sim.churn_changes})

    async def churn(self, request: Request) -> Response:
        """``POST /_sim/churn {"fraction": F[, "provider": "telnyx"|"bandwidth"]}``: flip a
        member's mute in ``F`` of the conferences (of that provider), now
        (``Simulator.churn``); answers how many changed."""
        try:
            body = await request.json()
            fraction = float(body["fraction"])
            provider = Provider(body["provider"]) if "provider" in body else None
            changed = self.sim.churn(fraction, provider)
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": 'send {"fraction": F}, 0 < F <= 1, and optionally '
                                          '"provider": "telnyx" or "bandwidth"'}, 400)
        return JSONResponse({"changed": changed, "at": self.sim.iso(self.sim.now_ms())})


async def _advance_seconds(request: Request) -> float | None:
    """The finite, non-negative ``advance_seconds`` of a ``POST /_sim/clock``, else ``None``."""
    try:
        seconds = float((await request.json())["advance_seconds"])
    except (ValueError, KeyError, TypeError):
        return None
    # Python's JSON parser accepts Infinity and NaN.
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _json(document: object) -> Response:
    # Compact separators: a 10,000-conference truth document is large.
    body = json.dumps(document, separators=(",", ":")).encode()
    return Response(body, media_type="application/json")


async def _not_found(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods, in the format of the provider whose prefix they use."""
    status_code = exc.status_code if isinstance(exc, HTTPException) else 404
    path = request.url.path
    if path.startswith(TELNYX_PREFIX):
        if status_code == 405:
            return telnyx_api.telnyx_error(405, "10015", "Method not allowed",
                                           "The request method is not supported.")
        # The spec's generic "resource_not_found" example (NotFoundResponse) is 10007.
        return telnyx_api.telnyx_error(404, "10007", "Resource not found", "Resource not found")
    if path.startswith(BANDWIDTH_PREFIX):
        if status_code == 405:
            return bandwidth_api.bandwidth_error(405, "validation", "Method Not Allowed")
        return bandwidth_api.bandwidth_error(404, "validation", f"Path [{path}] not found")
    return JSONResponse({"error": "not found" if status_code == 404 else "method not allowed"},
                        status_code=status_code)


def create_app(simulator: Simulator) -> SimulatorApp:
    """The ASGI app serving ``simulator``."""
    telnyx = TelnyxApi(simulator)
    bandwidth = BandwidthApi(simulator)
    sim = IntrospectionApi(simulator)
    routes = [
        Route(f"{TELNYX_PREFIX}/conferences", telnyx.list_conferences),
        Route(f"{TELNYX_PREFIX}/conferences/{{conference_id}}", telnyx.get_conference),
        Route(f"{TELNYX_PREFIX}/conferences/{{conference_id}}/participants",
              telnyx.list_participants),
        Route(f"{TELNYX_PREFIX}/detail_records", telnyx.detail_records),
        Route(f"{BANDWIDTH_PREFIX}/accounts/{{account_id}}/conferences",
              bandwidth.list_conferences),
        Route(f"{BANDWIDTH_PREFIX}/accounts/{{account_id}}/conferences/{{conference_id}}",
              bandwidth.get_conference),
        Route(TOKEN_PATH, bandwidth.issue_token, methods=["POST"]),
        Route("/_sim/truth", sim.truth),
        Route("/_sim/conferences", sim.conferences),
        Route("/_sim/clock", sim.clock, methods=["GET", "POST"]),
        Route("/_sim/stats", sim.stats),
        Route("/_sim/churn", sim.churn, methods=["POST"]),
    ]
    app = SimulatorApp(routes=routes, exception_handlers={404: _not_found, 405: _not_found})
    app.simulator = simulator
    return app
