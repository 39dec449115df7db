"""The simulated Telnyx Call Control conference endpoints (served under ``/v2``).

* ``GET /v2/conferences/{id}[?region=…]`` → ``{"data": Conference}``
* ``GET /v2/conferences/{id}/participants?page[number]=&page[size]=&filter[…]=``
  → ``{"data": [Participant], "meta": PaginationMeta}``
* ``GET /v2/conferences[?region=…&filter[status]=&filter[name]=&page[number]=&page[size]=]``
  → ``{"data": [Conference], "meta": PaginationMeta}``: the conferences of one data region
  that exist now (completed ones included until they expire), in descending ``expires_at``
  order as the spec says (ties: newest ID first); ``filter[name]`` matches exactly
  (case-sensitive), ``filter[status]`` one of ``init`` / ``in_progress`` / ``completed``

Behaviour choices where the spec is silent (documented in ``docs/simulator.md``):

* a conference lives in one data region; without ``region`` the account default ``US`` is
  searched, so a conference in another region is 404 unless the request names its region;
* participants that left stay listed, with status ``left``, until the conference itself is
  gone; participants are listed in joining order;
* ``updated_at`` of a conference is the time of its latest status change; ``expires_at`` is
  ``created_at`` plus the 4-hour limit; ``ended_by`` is present for ``all_left`` (the last
  participant to leave) and ``host_left`` (the host), absent otherwise;
* ``total_pages`` is ``ceil(total_results / page_size)``, so 0 when there are no participants.
* ``GET /v2/detail_records?filter[record_type]=conference-participant&filter[conference_id]=``
  → ``{"data": [ConferenceParticipantDetailRecord], "meta": PaginationMeta}``: one record per
  participant (``joined_at`` = its ``created_at``, ``left_at`` = its leave), served from
  ``ScenarioConfig.detail_records_delay_seconds`` after the conference ended (an empty list
  before, as for a conference it does not know); other record types: an empty list.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from poller.model import ConferenceStatus, Provider
from poller.simulator.auth import AuthOutcome, check_telnyx
from poller.simulator.config import FaultKind
from poller.simulator.faults import answer_with_fault
from poller.simulator.timeline import ConferenceTimeline, MemberTimeline
from poller.simulator.world import Simulator

REGIONS = ("Australia", "Europe", "Middle East", "US")
"""The ``region`` query values the spec allows (``ConferenceRegion``)."""
DEFAULT_REGION = "US"
HOSTED_REGION = {"US": "sv1", "Europe": "fr5", "Australia": "sy1", "Middle East": "dx1"}
"""What the ``region`` field of a conference says for each data region (site names)."""
MAX_PAGE_SIZE = 250
DEFAULT_PAGE_SIZE = 20


def telnyx_error(status_code: int, code: str, title: str, detail: str, *,
                 parameter: str | None = None, headers: Mapping[str, str] | None = None
                 ) -> JSONResponse:
    """A Telnyx error response: ``{"errors": [{code, title, detail, [source], meta}]}``."""
    error: dict[str, Any] = {"code": code, "title": title, "detail": detail}
    if parameter is not None:
        error["source"] = {"parameter": parameter}
    error["meta"] = {"url": f"https://developers.telnyx.com/docs/overview/errors/{code}"}
    return JSONResponse({"errors": [error]}, status_code=status_code, headers=headers)


def not_found() -> JSONResponse:
    """The spec's ``conference_not_found`` example, code ``90058``."""
    return telnyx_error(404, "90058", "Invalid conference_id", "The conference does not exist.")


def unprocessable(parameter: str, detail: str, code: str = "10032",
                  title: str = "Invalid enumerated value") -> JSONResponse:
    """422 for a bad query parameter, naming it in ``source.parameter``."""
    return telnyx_error(422, code, title, detail, parameter=parameter)


def fault_error(fault: FaultKind, retry_after_seconds: int, limit: int) -> JSONResponse:
    """The response of an injected 429 / 500 / 503."""
    if fault is FaultKind.RATE_LIMITED:
        headers = {"x-ratelimit-limit": str(limit), "x-ratelimit-remaining": "0",
                   "x-ratelimit-reset": str(retry_after_seconds)}
        return telnyx_error(429, "10011", "Too many requests",
                            "You have exceeded the maximum number of allowed requests.",
                            headers=headers)
    if fault is FaultKind.UNAVAILABLE:
        return telnyx_error(503, "10007", "Service unavailable", "Service unavailable")
    return telnyx_error(500, "10007", "Internal server error", "Internal server error")


class TelnyxApi:
    """Request handlers bound to one ``Simulator``."""

    def __init__(self, simulator: Simulator) -> None:
        self.sim = simulator

    def _denied(self, request: Request) -> Response | None:
        outcome = check_telnyx(request, self.sim.credentials)
        if outcome is AuthOutcome.UNAUTHENTICATED:
            return telnyx_error(
                401, "10009", "Authentication failed",
                "The required authentication headers were either invalid or not included in "
                "the request.")
        if outcome is AuthOutcome.FORBIDDEN:
            return telnyx_error(
                403, "10010", "Not authorized",
                "You are not authorized to access the requested resource.")
        return None

    def _region(self, request: Request) -> str | Response:
        region = request.query_params.get("region", DEFAULT_REGION)
        if region not in REGIONS:
            return unprocessable("region", f"The value must be one of: {', '.join(REGIONS)}.")
        return region

    async def _serve(self, request: Request, answer: Callable[[], Response]) -> Response:
        denied = self._denied(request)
        if denied is not None:
            return denied
        config = self.sim.faults.config
        return await answer_with_fault(
            self.sim.faults.draw(), request, config, answer,
            lambda fault: fault_error(fault, config.retry_after_seconds,
                                      config.rate_limit_per_window))

    def _find(self, request: Request, region: str, at_ms: int) -> ConferenceTimeline | None:
        found = self.sim.existing(Provider.TELNYX, request.path_params["conference_id"], at_ms)
        if found is None or found.region != region:
            return None
        return found

    async def get_conference(self, request: Request) -> Response:
        """``GET /v2/conferences/{conference_id}``."""
        def answer() -> Response:
            region = self._region(request)
            if isinstance(region, Response):
                return region
            at_ms = self.sim.now_ms()
            found = self._find(request, region, at_ms)
            if found is None:
                return not_found()
            return JSONResponse({"data": self.conference_json(found, at_ms)})
        return await self._serve(request, answer)

    async def list_participants(self, request: Request) -> Response:
        """``GET /v2/conferences/{conference_id}/participants``."""
        def answer() -> Response:
            region = self._region(request)
            if isinstance(region, Response):
                return region
            paging = _page_params(request)
            if isinstance(paging, Response):
                return paging
            page_number, page_size = paging
            at_ms = self.sim.now_ms()
            found = self._find(request, region, at_ms)
            if found is None:
                return not_found()
            rows = [self.participant_json(found, m, at_ms)
                    for m in found.listed_members_at(at_ms)]
            return JSONResponse(_paged(_filtered(rows, request), page_number, page_size))
        return await self._serve(request, answer)

    async def list_conferences(self, request: Request) -> Response:
        """``GET /v2/conferences``: one region's existing conferences, paged."""
        def answer() -> Response:
            region = self._region(request)
            if isinstance(region, Response):
                return region
            paging = _page_params(request)
            if isinstance(paging, Response):
                return paging
            status = request.query_params.get("filter[status]")
            if status is not None and status not in {s.value for s in ConferenceStatus}:
                return unprocessable("filter[status]",
                                     "The value must be one of: init, in_progress, completed.")
            name = request.query_params.get("filter[name]")
            page_number, page_size = paging
            at_ms = self.sim.now_ms()
            found = [c for c in self.sim.timelines(Provider.TELNYX)
                     if c.exists_at(at_ms) and (c.region or DEFAULT_REGION) == region
                     and (name is None or c.name == name)
                     and (status is None or c.status_at(at_ms).value == status)]
            # Descending expires_at (created_at + the fixed limit), as the spec lists them.
            found.sort(key=lambda c: (c.created_ms, c.conference_id), reverse=True)
            body = _paged(found, page_number, page_size)
            body["data"] = [self.conference_json(c, at_ms) for c in body["data"]]
            return JSONResponse(body)
        return await self._serve(request, answer)

    async def detail_records(self, request: Request) -> Response:
        """``GET /v2/detail_records``: conference-participant records of one conference."""
        def answer() -> Response:
            paging = _page_params(request)
            if isinstance(paging, Response):
                return paging
            if "filter[record_type]" not in request.query_params:
                return unprocessable("filter[record_type]", "filter[record_type] is required.",
                                     "10015", "Bad Request")
            rows: list[dict[str, Any]] = []
            conference = self.sim.timeline(
                Provider.TELNYX, request.query_params.get("filter[conference_id]", ""))
            delay_ms = round(self.sim.scenario.detail_records_delay_seconds * 1000)
            if (request.query_params["filter[record_type]"] == "conference-participant"
                    and conference is not None
                    and self.sim.now_ms() >= conference.ended_ms + delay_ms):
                rows = [self.participant_record(conference, m) for m in conference.members]
            return JSONResponse(_paged(rows, *paging))
        return await self._serve(request, answer)

    def participant_record(self, conference: ConferenceTimeline, member: MemberTimeline
                           ) -> dict[str, Any]:
        """A ``ConferenceParticipantDetailRecord``."""
        seconds = (member.left_ms - member.joined_ms) // 1000
        return {"record_type": "conference_participant_detail_record", "id": member.member_id,
                "conference_id": conference.conference_id, "call_leg_id": member.call_leg_id,
                "call_session_id": member.call_session_id,
                "joined_at": self.sim.iso(member.joined_ms),
                "left_at": self.sim.iso(member.left_ms), "call_sec": seconds,
                "billed_sec": max(60, -(-seconds // 60) * 60), "is_telnyx_billable": True,
                "originating_number": "+15554440000", "destination_number": "+15553330000"}

    def conference_json(self, conference: ConferenceTimeline, at_ms: int) -> dict[str, Any]:
        """The ``Conference`` object as served at ``at_ms``."""
        status = conference.status_at(at_ms)
        body: dict[str, Any] = {
            "record_type": "conference",
            "id": conference.conference_id,
            "name": conference.name,
            "created_at": self.sim.iso(conference.created_ms),
            "updated_at": self.sim.iso(conference.updated_ms_at(at_ms)),
            "expires_at": self.sim.iso(conference.created_ms + round(
                self.sim.scenario.telnyx_max_duration_seconds * 1000)),
            "status": status.value,
            "region": HOSTED_REGION.get(conference.region or DEFAULT_REGION, "sv1"),
            "connection_id": self.connection_id,
        }
        if status is ConferenceStatus.COMPLETED:
            body["end_reason"] = conference.end_cause.value
            if conference.ended_by is not None:
                body["ended_by"] = {"call_control_id": conference.ended_by.call_id,
                                    "call_session_id": conference.ended_by.call_session_id}
        return body

    def participant_json(self, conference: ConferenceTimeline, member: MemberTimeline,
                         at_ms: int) -> dict[str, Any]:
        """The ``Participant`` object as served at ``at_ms`` (the member has joined)."""
        snapshot = member.snapshot_at(at_ms)
        assert snapshot is not None
        return {
            "record_type": "participant",
            "id": member.member_id,
            "call_control_id": member.call_id,
            "call_leg_id": member.call_leg_id,
            "conference": {"id": conference.conference_id, "name": conference.name},
            "status": snapshot.status.value,
            "muted": snapshot.muted,
            "on_hold": snapshot.on_hold,
            "whisper_call_control_ids": list(snapshot.coaching or ()),
            "end_conference_on_exit": member.end_conference_on_exit,
            "soft_end_conference_on_exit": member.soft_end_conference_on_exit,
            "created_at": self.sim.iso(member.joined_ms),
            "updated_at": self.sim.iso(snapshot.updated_ms),
        }

    @property
    def connection_id(self) -> str:
        """The Call Control application all simulated conferences belong to."""
        return f"{1_000_000_000_000_000_000 + self.sim.seed % 10**9}"


def _paged(items: list[Any], page_number: int, page_size: int) -> dict[str, Any]:
    """``{"data": <page page_number of items>, "meta": …}`` as Telnyx pages its lists."""
    start = (page_number - 1) * page_size
    return {"data": items[start:start + page_size],
            "meta": {"page_number": page_number, "page_size": page_size,
                     "total_pages": math.ceil(len(items) / page_size),
                     "total_results": len(items)}}


def _page_params(request: Request) -> tuple[int, int] | Response:
    parsed = []
    for name, default, maximum in (("page[number]", 1, None),
                                   ("page[size]", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)):
        raw = request.query_params.get(name)
        try:
            value = default if raw is None else int(raw)
        except ValueError:
            return unprocessable(name, f"{name} must be an integer.", "10015", "Bad Request")
        if value < 1 or (maximum is not None and value > maximum):
            allowed = f"1 to {maximum}" if maximum is not None else "1 or more"
            return unprocessable(name, f"The value is outside of allowed range {allowed}",
                                 "10033", "Value outside of range")
        parsed.append(value)
    return parsed[0], parsed[1]


def _filtered(rows: list[dict[str, Any]], request: Request) -> list[dict[str, Any]]:
    """Apply ``filter[muted]``, ``filter[on_hold]`` and ``filter[whispering]``."""
    wanted: dict[str, bool] = {}
    for name in ("muted", "on_hold", "whispering"):
        raw = request.query_params.get(f"filter[{name}]")
        if raw is not None:
            wanted[name] = raw.lower() == "true"
    for name, value in wanted.items():
        if name == "whispering":
            rows = [r for r in rows if bool(r["whisper_call_control_ids"]) == value]
        else:
            rows = [r for r in rows if r[name] == value]
    return rows

