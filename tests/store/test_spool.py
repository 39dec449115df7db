"""The spool: batches kept on disk while the store is away, replayed in order, exactly."""

from __future__ import annotations

import dataclasses
import json
import logging
import resource
import signal
import zlib
from pathlib import Path

import pytest
from factories import at, failure, telnyx_member, telnyx_observation, telnyx_target

from poller.errors import SpoolInUse, StoreUnavailable
from poller.store.codec import decode_result, encode_result
from poller.store.rows import ScheduleUpdate
from poller.store.spool import HEADER, Spool, SpooledBatch, open_spool


def batch(n: int, *, at_seconds: float = 0) -> SpooledBatch:
    """``n`` observations of distinct conferences, with a schedule for each."""
    results = tuple(telnyx_observation(at=at_seconds, target=telnyx_target(f"c{i}"),
                                       members=[telnyx_member("m1")]) for i in range(n))
    return SpooledBatch(results, {r.target: ScheduleUpdate(next_poll_at=at(at_seconds + 10))
                                  for r in results}, owner="me")


def test_results_survive_json_exactly() -> None:
    """An observation (members, raw payloads, warnings) and a failure come back equal, with the
    same content hash, through the spool's JSON."""
    observation = telnyx_observation(at=5, members=[telnyx_member("a"), telnyx_member("b")])
    for result in (observation, failure(at=7, kind="rate_limited")):
        back = decode_result(json.loads(json.dumps(encode_result(result))))
        assert back == result
    back = decode_result(json.loads(json.dumps(encode_result(observation))))
    assert back.content_hash() == observation.content_hash()  # type: ignore[union-attr]


def test_the_cached_content_hash_is_not_spooled() -> None:
    """``Observation.content_hash`` is computed once and kept on the object, but the spool
    stores only the observation: a copy with other content gets its own hash."""
    observation = telnyx_observation(at=5, members=[telnyx_member("a")])
    first = observation.content_hash()
    assert observation.content_hash() is first  # computed once
    encoded = encode_result(observation)
    assert "_hash" not in json.dumps(encoded)
    other = dataclasses.replace(observation, members=(telnyx_member("b"),))
    assert other.content_hash() != first


def test_appended_batches_come_back_in_order_and_survive_a_reopen(tmp_path: Path) -> None:
    """What was appended is read back in order with its schedule and owner, also by a new
    process (a restart); consumed batches are not read again."""
    spool = Spool(tmp_path, max_bytes=10_000_000)
    first, second = batch(2, at_seconds=0), batch(3, at_seconds=10)
    spool.append(first)
    spool.append(second)
    assert (spool.results, spool.empty) == (5, False)
    spool.close()
    reopened = Spool(tmp_path, max_bytes=10_000_000)
    read = list(reopened.batches())
    assert [b for _, b in read] == [first, second]
    reopened.consumed(read[0][0])
    reopened.close()
    again = Spool(tmp_path, max_bytes=10_000_000)
    assert [b for _, b in again.batches()] == [second]
    assert again.results == 3
    again.consumed(next(iter(again.batches()))[0])
    assert again.empty
    again.close()
    assert Spool(tmp_path, max_bytes=10_000_000).empty


def test_a_record_torn_by_a_crash_is_cut_off(tmp_path: Path) -> None:
    """A record half-written when the process died (never acknowledged) is cut off on the next
    open; everything before it is intact, and appending goes on after it."""
    spool = Spool(tmp_path, max_bytes=10_000_000)
    spool.append(batch(1))
    [segment] = tmp_path.glob("*.log")
    whole = segment.stat().st_size
    with segment.open("ab") as file:
        file.write(b"\x40\x00\x00\x00garbage")
    spool.close()
    reopened = Spool(tmp_path, max_bytes=10_000_000)
    assert segment.stat().st_size == whole
    reopened.append(batch(2, at_seconds=10))
    assert [len(b.results) for _, b in reopened.batches()] == [1, 2]


def test_segments_rotate_and_replayed_ones_are_deleted(tmp_path: Path) -> None:
    """Past ``segment_bytes`` a new segment starts; a segment wholly replayed is deleted."""
    spool = Spool(tmp_path, max_bytes=10_000_000, segment_bytes=1)
    for i in range(3):
        spool.append(batch(1, at_seconds=i))
    assert len(list(tmp_path.glob("*.log"))) == 3
    positions = [position for position, _ in spool.batches()]
    spool.consumed(positions[1], 2)
    assert len(list(tmp_path.glob("*.log"))) == 1
    assert spool.results == 1


def test_fits_says_when_max_bytes_would_be_passed(tmp_path: Path) -> None:
    """``fits`` is false once a batch would take the spool past ``max_bytes``."""
    spool = Spool(tmp_path, max_bytes=3_000)
    small = batch(1)
    assert spool.fits(small)
    while spool.fits(small):
        spool.append(small)
    assert 0 < spool.bytes <= 3_000
    assert not spool.fits(small)


def test_an_unreadable_cursor_is_refused(tmp_path: Path) -> None:
    """A cursor file that is not the spool's is an error, not a silent replay from scratch."""
    (tmp_path / "cursor").write_text("nonsense")
    with pytest.raises(StoreUnavailable, match="unreadable cursor"):
        Spool(tmp_path, max_bytes=1000)


def test_one_spool_one_process(tmp_path: Path) -> None:
    """A second process (here: a second spool object) cannot take a spool in use: two
    daemons would interleave their batches. Once the first lets go, it can."""
    first = Spool(tmp_path, max_bytes=1_000_000)
    with pytest.raises(SpoolInUse, match="used by another poller process"):
        Spool(tmp_path, max_bytes=1_000_000)
    first.close()
    Spool(tmp_path, max_bytes=1_000_000).close()


def test_daemons_sharing_a_root_take_slots_of_their_own(tmp_path: Path) -> None:
    """Several daemons given one spool path (a fleet started from one directory) each take a
    free slot; a slot let go is taken again by the next to start."""
    first = open_spool(tmp_path, max_bytes=1_000_000)
    second = open_spool(tmp_path, max_bytes=1_000_000)
    assert (first.directory.name, second.directory.name) == ("0", "1")
    first.close()
    third = open_spool(tmp_path, max_bytes=1_000_000)
    assert third.directory.name == "0"


def test_what_a_stopped_daemon_left_in_another_slot_is_taken_over(tmp_path: Path) -> None:
    """Batches in a slot no process holds (its daemon was killed and came back elsewhere, or
    not at all) are moved, in order, behind the new daemon's own, and leave that slot empty;
    a slot a live daemon holds is left alone."""
    own_past = Spool(tmp_path / "0", max_bytes=1_000_000)
    own_past.append(batch(1, at_seconds=0))
    own_past.close()
    live = Spool(tmp_path / "1", max_bytes=1_000_000)
    live.append(batch(4, at_seconds=0))
    orphan = Spool(tmp_path / "2", max_bytes=1_000_000)
    orphan.append(batch(2, at_seconds=5))
    orphan.append(batch(3, at_seconds=6))
    orphan.close()

    spool = open_spool(tmp_path, max_bytes=1_000_000)
    assert spool.directory.name == "0"
    assert [len(b.results) for _, b in spool.batches()] == [1, 2, 3]
    assert spool.results == 6
    assert [len(b.results) for _, b in live.batches()] == [4]
    spool.close()
    assert Spool(tmp_path / "2", max_bytes=1_000_000).empty


def test_an_append_the_disk_refuses_leaves_nothing_behind(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The disk fills up in the middle of a record (a file size limit, here): the append fails
    with ``StoreUnavailable``, the half-written bytes are cut off, and the batches before and
    after it read back whole, also after a restart."""
    spool = Spool(tmp_path, max_bytes=10_000_000)
    spool.append(batch(1))
    [segment] = tmp_path.glob("*.log")
    limit = segment.stat().st_size + 100  # room for a part of the next record only
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        with pytest.raises(StoreUnavailable, match="spool"):
            spool.append(batch(5))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert segment.stat().st_size == limit - 100, "the partial record was cut off"
    spool.append(batch(2, at_seconds=10))
    assert [len(b.results) for _, b in spool.batches()] == [1, 2]
    spool.close()
    caplog.set_level(logging.WARNING, logger="poller")
    reopened = Spool(tmp_path, max_bytes=10_000_000)
    assert [len(b.results) for _, b in reopened.batches()] == [1, 2]
    assert reopened.results == 3
    assert "damaged" not in caplog.text


def test_a_record_that_does_not_decode_is_said_and_passed(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A sound record whose JSON is not a batch this version knows (a field missing) is said
    at ERROR and stands as an empty batch: the cursor moves past it and the batches after it
    are replayed; nothing crashes, at open or at replay."""
    spool = Spool(tmp_path, max_bytes=10_000_000)
    spool.append(batch(1))
    payload = json.dumps({"owner": "me", "results": [{"kind": "observation",
                                                       "result": {"target": 7}}],
                          "schedule": []}).encode()
    [segment] = tmp_path.glob("*.log")
    with segment.open("ab") as file:
        file.write(HEADER.pack(len(payload), zlib.crc32(payload)) + payload)
    spool.close()
    caplog.set_level(logging.ERROR, logger="poller")
    reopened = Spool(tmp_path, max_bytes=10_000_000)
    reopened.append(batch(2, at_seconds=10))
    read = list(reopened.batches())
    assert [len(b.results) for _, b in read] == [1, 0, 2]
    assert "does not decode" in caplog.text
    reopened.consumed(read[-1][0], 3)
    assert reopened.empty
    assert reopened.results == 0
