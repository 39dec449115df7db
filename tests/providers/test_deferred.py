"""Bodies seen before are parsed only when read (``poller.providers.deferred``): what each
client returns for them, the requests it sends, and that nothing else changes."""

from __future__ import annotations

import copy
import pickle
from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx
import pytest

from poller.errors import BadResponse
from poller.model import ConferenceState, Observation, Provider, TargetKey
from poller.providers.deferred import DeferredObservation, Seen, SeenBodies
from poller.store.codec import decode_result, encode_result

from .fakes import (
    START,
    TELNYX_ID,
    FakeClock,
    FakeServer,
    bandwidth_client,
    bandwidth_conference,
    bandwidth_member,
    bandwidth_target,
    telnyx_client,
    telnyx_conference,
    telnyx_participant,
    telnyx_target,
)


class Script:
    """A Telnyx server whose conference and participants (one page, or ``pages`` pages of
    ``page_size``) the test changes between polls."""

    def __init__(self) -> None:
        self.conference: dict[str, Any] = telnyx_conference(status="in_progress")
        self.participants: list[dict[str, Any]] = [telnyx_participant(id="p1")]
        self.page_size = 250
        self.total_pages: int | None = 1
        self.server = FakeServer(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/participants"):
            return httpx.Response(200, json={"data": self.conference})
        number = int(request.url.params["page[number]"])
        rows = self.participants[(number - 1) * self.page_size: number * self.page_size]
        meta: dict[str, Any] = {"page_number": number, "page_size": self.page_size}
        if self.total_pages is not None:
            meta["total_pages"] = self.total_pages
        return httpx.Response(200, json={"data": rows, "meta": meta})

    def asked(self) -> list[str]:
        """The requests so far, ``conference`` or the page number, then forgets them."""
        asked = [r.url.params.get("page[number]", "conference") for r in self.server.requests]
        self.server.requests.clear()
        return asked


def never() -> Any:
    raise AssertionError("parsed")


def test_a_deferred_observation_is_an_observation_parsed_on_first_read() -> None:
    """Status without parsing; every other field from one parse, on the first read; equal to
    the observation parsing makes, both ways round; encoded and decoded as one."""
    eager = Observation(target=telnyx_target(), observed_at=START,
                        conference=ConferenceState(TELNYX_ID, "in_progress"),
                        warnings=("odd",), body_digest=b"d" * 16)
    calls: list[int] = []

    def parse() -> Any:
        calls.append(1)
        return eager.conference, eager.members, eager.members_complete, eager.warnings

    deferred = DeferredObservation(eager.target, START, b"d" * 16, "in_progress", parse)
    assert isinstance(deferred, Observation)
    assert (deferred.status, deferred.target, deferred.observed_at, deferred.body_digest,
            deferred.parsed) == ("in_progress", eager.target, START, b"d" * 16, False)
    assert deferred.warnings == ("odd",)
    assert (deferred.parsed, calls) == (True, [1])
    assert (deferred.conference, deferred.members, deferred.members_complete, calls) == (
        eager.conference, (), True, [1])
    assert deferred == eager
    assert eager == deferred
    assert deferred.content_hash() == eager.content_hash()
    assert decode_result(encode_result(deferred)) == eager
    assert deferred != replace(eager, warnings=())
    later = DeferredObservation(eager.target, START + timedelta(seconds=1), b"d" * 16,
                                "in_progress", parse)
    assert later != eager
    assert hash(deferred) == hash(eager)


@pytest.mark.parametrize("copier", [copy.copy, copy.deepcopy,
                                    lambda o: pickle.loads(pickle.dumps(o))])
def test_a_copy_of_a_deferred_observation_is_the_plain_observation(copier: Any) -> None:
    conference = ConferenceState(TELNYX_ID, "completed")
    deferred = DeferredObservation(telnyx_target(), START, b"d" * 16, "completed",
                                   lambda: (conference, (), False, ("w",)))
    copied = copier(deferred)
    assert type(copied) is Observation
    assert (copied.conference, copied.members_complete, copied.warnings, copied.body_digest) == (
        conference, False, ("w",), b"d" * 16)
    assert copied == deferred


def test_a_deferred_observation_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        DeferredObservation(telnyx_target(), START.replace(tzinfo=None), b"", "init", never)


def test_seen_bodies_forget_the_least_recently_parsed_target_first() -> None:
    seen = SeenBodies(limit=2)
    a, b, c = (TargetKey(Provider.TELNYX, "acct", name) for name in "abc")
    seen.remember(a, Seen(b"1", "init"))
    seen.remember(b, Seen(b"2", "init"))
    seen.remember(a, Seen(b"3", "completed"))  # a is the most recent again
    seen.remember(c, Seen(b"4", "init"))
    assert (seen.get(a), seen.get(b), seen.get(c), len(seen)) == (
        Seen(b"3", "completed"), None, Seen(b"4", "init"), 2)
    assert seen.again(a, b"other") is None  # other bodies: not seen again
    assert seen.again(a, b"3") == Seen(b"3", "completed")  # a is the most recent again
    seen.remember(b, Seen(b"5", "init"))
    assert (seen.get(a), seen.get(c)) == (Seen(b"3", "completed"), None)


@pytest.mark.anyio
async def test_telnyx_the_same_bodies_again_are_not_parsed() -> None:
    """The second poll of unchanged bodies is deferred, with the first's status and digest,
    and equals it once read (the clock stands still); it sent the same two requests."""
    script = Script()
    async with telnyx_client(script.server, clock=FakeClock()) as client:
        first = await client.fetch(telnyx_target())
        assert not isinstance(first, DeferredObservation)
        assert script.asked() == ["conference", "1"]
        again = await client.fetch(telnyx_target())
        assert script.asked() == ["conference", "1"]
        assert isinstance(again, DeferredObservation)
        assert (again.status, again.body_digest, again.parsed) == (
            "in_progress", first.body_digest, False)
        assert again == first
        assert again.parsed


@pytest.mark.anyio
async def test_telnyx_warnings_and_an_unknown_status_come_back_the_same() -> None:
    """What parsing the same bodies said the first time (warnings, a status poller does not
    know) it says again, in order."""
    script = Script()
    script.conference = telnyx_conference(status="paused", created_at="2024-05-01T12:00:00")
    script.total_pages = None
    async with telnyx_client(script.server, clock=FakeClock()) as client:
        first = await client.fetch(telnyx_target())
        again = await client.fetch(telnyx_target())
    assert isinstance(again, DeferredObservation)
    assert again.status == first.status == "paused"
    assert [w.split(":")[0] for w in first.warnings] == [
        "conference.status", "conference.created_at", "participants.meta.total_pages"]
    assert again.warnings == first.warnings


@pytest.mark.anyio
async def test_telnyx_a_changed_page_after_an_unchanged_conference_reads_as_ever() -> None:
    """The conference body as it was is parsed only once the page turns out changed; the
    observation, warnings in order, is what a client that remembers nothing makes."""
    script = Script()
    script.conference = telnyx_conference(status="paused")
    async with telnyx_client(script.server, clock=FakeClock()) as client, \
            telnyx_client(script.server, clock=FakeClock()) as fresh:
        await client.fetch(telnyx_target())
        script.total_pages = None  # a warning from the page, after the conference's
        script.participants.append(telnyx_participant(id="p2", status="waving"))
        changed = await client.fetch(telnyx_target())
        assert not isinstance(changed, DeferredObservation)
        assert changed == await fresh.fetch(telnyx_target())
        assert [w.split(":")[0] for w in changed.warnings] == [
            "conference.status", "participant[p2].status", "participants.meta.total_pages"]


@pytest.mark.anyio
async def test_telnyx_a_conference_cut_at_the_page_cap_is_deferred_as_cut() -> None:
    """With a one-page cap, the one page asked for is all a poll reads: the same bodies
    again are deferred, and read back incomplete, with the cap's warning."""
    script = Script()
    script.participants, script.total_pages = [telnyx_participant(id="p1")], 2
    async with telnyx_client(script.server, clock=FakeClock(), max_pages=1) as client:
        first = await client.fetch(telnyx_target())
        again = await client.fetch(telnyx_target())
    assert isinstance(again, DeferredObservation)
    assert (again.members_complete, again.warnings) == (False, first.warnings)
    assert "1-page cap" in again.warnings[-1]
    assert again == first


@pytest.mark.anyio
@pytest.mark.parametrize("change", ["conference", "participants", "both"])
async def test_telnyx_changed_bodies_are_parsed(change: str) -> None:
    """A changed conference or page is parsed (and remembered: the poll after it is deferred
    again), with the same requests as ever."""
    script = Script()
    async with telnyx_client(script.server, clock=FakeClock()) as client:
        await client.fetch(telnyx_target())
        if change in ("conference", "both"):
            script.conference = telnyx_conference(status="completed", end_reason="all_left")
        if change in ("participants", "both"):
            script.participants.append(telnyx_participant(id="p2"))
        script.asked()
        changed = await client.fetch(telnyx_target())
        assert script.asked() == ["conference", "1"]
        assert not isinstance(changed, DeferredObservation)
        assert changed.status == ("in_progress" if change == "participants" else "completed")
        assert len(changed.members) == (1 if change == "conference" else 2)
        again = await client.fetch(telnyx_target())
        assert isinstance(again, DeferredObservation)
        assert again.status == changed.status
        assert again == changed


@pytest.mark.anyio
async def test_telnyx_a_changed_conference_about_another_fails_before_the_participants() -> None:
    """Once a conference's bodies are remembered, a conference answer that is not the same
    is still read before the participants are asked for: one about another conference fails
    the poll after one request, as the first poll would."""
    script = Script()
    async with telnyx_client(script.server, clock=FakeClock()) as client:
        await client.fetch(telnyx_target())
        script.asked()
        script.conference = telnyx_conference(id="someone-else")
        with pytest.raises(BadResponse, match="about conference 'someone-else'"):
            await client.fetch(telnyx_target())
        assert script.asked() == ["conference"]


@pytest.mark.anyio
async def test_telnyx_more_than_one_page_is_always_parsed() -> None:
    """A conference whose participants take more pages is parsed on every poll (the page
    count is known only by reading each page), and asks for each page."""
    script = Script()
    everyone = [telnyx_participant(id=f"p{n}") for n in range(251)]
    script.participants, script.total_pages = everyone, 2
    async with telnyx_client(script.server, clock=FakeClock()) as client:
        for _ in range(3):
            observation = await client.fetch(telnyx_target())
            assert not isinstance(observation, DeferredObservation)
            assert [m.member_id for m in observation.members] == [p["id"] for p in everyone]
            assert script.asked() == ["conference", "1", "2"]
        script.participants = script.participants[:1]  # now one page: remembered from here
        script.total_pages = 1
        await client.fetch(telnyx_target())
        again = await client.fetch(telnyx_target())
        assert isinstance(again, DeferredObservation)
        assert [m.member_id for m in again.members] == ["p0"]


@pytest.mark.anyio
async def test_telnyx_each_target_has_its_own_memory() -> None:
    """The same bodies for a target with another region (another query) are another target's
    first poll: parsed."""
    script = Script()
    async with telnyx_client(script.server, clock=FakeClock()) as client:
        await client.fetch(telnyx_target())
        other = await client.fetch(telnyx_target(region="Europe"))
        assert not isinstance(other, DeferredObservation)
        assert other.target.region == "Europe"


@pytest.mark.anyio
async def test_bandwidth_the_same_body_again_is_not_parsed_and_a_change_is() -> None:
    body: dict[str, Any] = bandwidth_conference(activeMembers=[bandwidth_member()])

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=body)

    server = FakeServer(handle)
    async with bandwidth_client(server, clock=FakeClock()) as client:
        first = await client.fetch(bandwidth_target())
        again = await client.fetch(bandwidth_target())
        assert not isinstance(first, DeferredObservation)
        assert isinstance(again, DeferredObservation)
        assert not again.parsed
        assert (again.status, again.body_digest) == ("in_progress", first.body_digest)
        assert again == first
        body = bandwidth_conference(activeMembers=[], completedTime="2024-05-01T12:30:00Z")
        ended = await client.fetch(bandwidth_target())
        assert not isinstance(ended, DeferredObservation)
        assert ended.status == "completed"
        assert len(server.requests) == 3
