"""A local, crash-safe spool of the poll results the store could not take (DESIGN §9).

While the database is away (PostgreSQL down or unreachable, SQLite locked, read-only or full),
the daemon goes on polling and appends each batch of results, with the schedule decided for
each target and the lease owner, to this spool; once the store is back, the batches are
replayed in the order they were written through the same recorder. The design follows the
write-ahead logs of Prometheus's agent and Vector's disk buffers:

* **Segments**: the spool is a directory of numbered files (``00000001.log`` …), appended to
  and rotated past ``SEGMENT_BYTES``; a segment wholly replayed is deleted.
* **Records**: each batch is one record, ``length`` and ``CRC32`` (4 bytes each, little-endian)
  then the batch as JSON (``poller.store.codec``). A batch is written and ``fsync``-ed before
  :meth:`Spool.append` returns, so a SIGKILL or a power cut loses nothing appended. A torn
  record at the end of a segment (the crash came mid-write) fails its length or checksum and
  is cut off when the spool opens; nothing after a bad record is trusted.
* **Cursor**: ``cursor`` names the first record not yet replayed (segment and offset). It is
  moved, atomically (write, ``fsync``, rename, ``fsync`` the directory), only after a batch's
  transaction has committed. A crash between the commit and the move replays that batch once
  more: the recorder ignores what it already has (an observation not newer than the
  target's last, a failure not newer than its last poll), so nothing is recorded twice.
* **Size**: ``max_bytes`` bounds what is waiting; :meth:`Spool.fits` tells the caller (which
  then keeps the changes and drops the unchanged polls, and says so).
* **One process per slot**: a spool directory takes an exclusive ``flock`` on its ``lock``
  for the life of the process, since two daemons appending to one would interleave their
  batches. The configured ``[spool] path`` is a root of *slots* (``0``, ``1`` …):
  :func:`open_spool` takes the first slot no live process holds, so several daemons may share
  one root (a fleet started from one directory), and then takes over the batches any other
  free slot still holds (a daemon that was killed and not restarted, or came back in another
  slot). A restarted daemon therefore replays what its predecessor spooled, first.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import struct
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from poller.errors import SpoolInUse, StoreUnavailable
from poller.model import PollResult, TargetKey
from poller.store.codec import decode, decode_result, encode, encode_result
from poller.store.rows import ScheduleUpdate

log = logging.getLogger(__name__)

HEADER = struct.Struct("<II")
"""A record's header: the payload's length and its CRC32."""
SEGMENT_BYTES = 8 * 1024 * 1024
"""A segment is closed and a new one started once it is this large."""
CURSOR = "cursor"


@dataclass(frozen=True, slots=True)
class SpooledBatch:
    """One recorder batch kept for later: the results, their schedule, whose leases."""

    results: tuple[PollResult, ...]
    schedule: Mapping[TargetKey, ScheduleUpdate] = field(default_factory=dict)
    owner: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The batch as a JSON object."""
        return {"owner": self.owner, "results": [encode_result(r) for r in self.results],
                "schedule": [[encode(key), encode(update)]
                             for key, update in self.schedule.items()]}

    @classmethod
    def from_json(cls, data: Any) -> SpooledBatch:
        """The batch of :meth:`to_json` (``ValueError`` if it is not one)."""
        if not isinstance(data, dict):
            raise ValueError("a spooled batch is a JSON object")
        try:
            return cls(tuple(decode_result(r) for r in data["results"]),
                       {decode(TargetKey, key): decode(ScheduleUpdate, update)
                        for key, update in data["schedule"]}, data.get("owner"))
        except (KeyError, TypeError) as error:
            raise ValueError(f"a spooled batch: {error!r}") from None


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """Where a record starts (or the spool ends): a segment and an offset in it."""

    segment: int
    offset: int


class Spool:
    """The spool in one directory (see the module docstring)."""

    def __init__(self, directory: Path, *, max_bytes: int,
                 segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._lock = -1
        self._rotate = False
        """Start a new segment at the next append (a failed one left bytes it could not cut)."""
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._lock = _lock(directory)
            self._cursor = self._read_cursor()
            self._end = self._recover()
            self.bytes = self._pending_bytes()
            """Bytes of records not yet replayed."""
            self.results = sum(len(batch.results) for _, batch in self.batches())
            """Results not yet replayed."""
        except OSError as error:
            self.close()
            raise StoreUnavailable(f"spool {directory}: {error}") from None
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Let go of the directory (another process may take it)."""
        if self._lock >= 0:
            os.close(self._lock)
            self._lock = -1

    # -- writing -------------------------------------------------------------------------------

    def fits(self, batch: SpooledBatch) -> bool:
        """Whether ``batch`` can be appended without passing ``max_bytes``."""
        return self.bytes + HEADER.size + len(_payload(batch)) <= self.max_bytes

    def fit(self, batch: SpooledBatch, unchanged: Callable[[PollResult], bool]
            ) -> tuple[SpooledBatch, int]:
        """``batch`` as much of it as fits (its ``unchanged`` results left out first, then
        all), and how many results were left out."""
        if self.fits(batch):
            return batch, 0
        changed = tuple(r for r in batch.results if not unchanged(r))
        kept = replace(batch, results=changed, schedule={
            r.target: batch.schedule[r.target] for r in changed if r.target in batch.schedule})
        if changed and not self.fits(kept):
            kept = replace(batch, results=(), schedule={})
        return kept, len(batch.results) - len(kept.results)

    def append(self, batch: SpooledBatch) -> None:
        """Write ``batch`` durably at the end (``StoreUnavailable`` if the disk refuses: then
        nothing of it stays behind, or the next append starts a new segment)."""
        payload = _payload(batch)
        record = HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        segment = self._end.segment
        if self._end.offset >= self.segment_bytes or self._rotate:
            segment += 1
        path = self._segment(segment)
        offset = self._end.offset if segment == self._end.segment else 0
        try:
            with path.open("ab") as file:
                file.write(record)
                file.flush()
                os.fsync(file.fileno())
            if segment != self._end.segment:
                _fsync_directory(self.directory)
        except OSError as error:
            self._rotate = not _cut(path, offset)
            raise StoreUnavailable(f"spool {self.directory}: {error}") from None
        self._rotate = False
        self._end = Position(segment, offset + len(record))
        self.bytes += len(record)
        self.results += len(batch.results)

    # -- reading -------------------------------------------------------------------------------

    @property
    def empty(self) -> bool:
        """Whether every batch appended has been replayed."""
        return self._cursor >= self._end

    def batches(self) -> Iterator[tuple[Position, SpooledBatch]]:
        """The batches not yet replayed, in order, each with the position after it. What
        cannot be read (bytes damaged on disk, a record this version cannot decode) is said
        at ERROR and stands as an empty batch, so that the cursor moves past it."""
        position = self._cursor
        while position < self._end:
            path = self._segment(position.segment)
            data = path.read_bytes() if path.exists() else b""
            end = self._end.offset if position.segment == self._end.segment else len(data)
            offset = position.offset
            while offset < end:
                payload = _payload_at(data, offset, end)
                if payload is None:
                    log.error("spool %s: the %d bytes from offset %d are damaged: skipped (the "
                              "results in them are lost)", path, end - offset, offset)
                    yield Position(position.segment, end), SpooledBatch(())
                    break
                offset += HEADER.size + len(payload)
                yield Position(position.segment, offset), _decoded(payload, path, offset)
            position = Position(position.segment + 1, 0)

    def consumed(self, position: Position, results: int = 0) -> None:
        """Every batch before ``position`` (``results`` results since the last call) is in the
        store: move the cursor there, durably, and delete the segments wholly behind it."""
        if position >= self._end:
            position = self._end
        while position.segment < self._end.segment and position.offset >= self._size(
                position.segment):  # the end of a segment is the start of the next
            position = Position(position.segment + 1, 0)
        _write_atomically(self.directory / CURSOR,
                          json.dumps({"segment": position.segment, "offset": position.offset}))
        for segment in self._segments():
            if segment < position.segment:
                self._segment(segment).unlink(missing_ok=True)
        self._cursor = position
        self.bytes = self._pending_bytes()
        self.results = 0 if self.empty else max(0, self.results - results)

    # -- files ---------------------------------------------------------------------------------

    def _segment(self, number: int) -> Path:
        return self.directory / f"{number:08d}.log"

    def _size(self, segment: int) -> int:
        path = self._segment(segment)
        return path.stat().st_size if path.exists() else 0

    def _segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self.directory.glob("*.log") if p.stem.isdigit())

    def _read_cursor(self) -> Position:
        try:
            data = json.loads((self.directory / CURSOR).read_text())
            return Position(int(data["segment"]), int(data["offset"]))
        except FileNotFoundError:
            segments = self._segments()
            return Position(segments[0] if segments else 1, 0)
        except (ValueError, KeyError, TypeError) as error:
            raise OSError(f"unreadable cursor ({error})") from None

    def _recover(self) -> Position:
        """The end of the last good record; a torn or corrupt tail is cut off (and said)."""
        segments = [s for s in self._segments() if s >= self._cursor.segment]
        if not segments:
            return self._cursor
        last = segments[-1]
        path = self._segment(last)
        data = path.read_bytes()
        offset = self._cursor.offset if last == self._cursor.segment else 0
        while (payload := _payload_at(data, offset, len(data))) is not None:
            offset += HEADER.size + len(payload)
        if offset != len(data):
            log.warning("spool %s: cut off %d bytes of a record torn by a crash (it was never "
                        "acknowledged)", path, len(data) - offset)
            with path.open("r+b") as file:
                file.truncate(offset)
                os.fsync(file.fileno())
        return Position(last, offset)

    def _pending_bytes(self) -> int:
        total = 0
        for segment in self._segments():
            if segment < self._cursor.segment:
                continue
            size = self._segment(segment).stat().st_size
            total += size - (self._cursor.offset if segment == self._cursor.segment else 0)
        return max(total, 0)


MAX_SLOTS = 1024
"""More daemons than this sharing one spool root are refused."""


def open_spool(root: Path, *, max_bytes: int, segment_bytes: int = SEGMENT_BYTES) -> Spool:
    """The spool in the first free slot of ``root``, holding every batch the other free slots
    still had (see the module docstring); ``SpoolInUse`` if ``MAX_SLOTS`` are taken."""
    spool = None
    for slot in range(MAX_SLOTS):
        try:
            spool = Spool(root / str(slot), max_bytes=max_bytes, segment_bytes=segment_bytes)
            break
        except SpoolInUse:
            continue
    if spool is None:
        raise SpoolInUse(f"all {MAX_SLOTS} slots of the spool {root} are held by running "
                         "poller processes")
    for other in sorted(root.iterdir(), key=lambda p: p.name):
        if other.is_dir() and other.name.isdigit() and other != spool.directory:
            try:
                _take_over(spool, other)
            except StoreUnavailable as error:  # this slot's disk trouble: its batches wait
                log.error("spool %s: could not take over %s: %s", spool.directory, other, error)
    return spool


def _take_over(spool: Spool, directory: Path) -> None:
    """Move what the free slot ``directory`` still holds to the end of ``spool``. Each batch
    is appended (durably) before the slot's cursor passes it, so a crash between the two
    replays that batch twice, which the recorder ignores, and loses nothing."""
    try:
        orphan = Spool(directory, max_bytes=spool.max_bytes, segment_bytes=spool.segment_bytes)
    except SpoolInUse:
        return  # a live daemon's own
    try:
        moved = 0
        for position, batch in orphan.batches():
            if batch.results:
                spool.append(batch)
            orphan.consumed(position, len(batch.results))
            moved += len(batch.results)
        if moved:
            log.warning("spool %s: took over %d results left in %s by a process that is no "
                        "longer running", spool.directory, moved, directory)
    finally:
        orphan.close()


def _lock(directory: Path) -> int:
    """An exclusive ``flock`` on the spool's ``lock`` file, kept until the process ends."""
    fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SpoolInUse(f"the spool {directory} is used by another poller process") from None
    return fd


def _payload_at(data: bytes, offset: int, end: int) -> bytes | None:
    """The payload of the record at ``offset`` of ``data[:end]``, if it is whole and sound."""
    if offset + HEADER.size > end:
        return None
    length, checksum = HEADER.unpack_from(data, offset)
    payload = data[offset + HEADER.size:offset + HEADER.size + length]
    if offset + HEADER.size + length > end or zlib.crc32(payload) != checksum:
        return None
    return payload


def _decoded(payload: bytes, path: Path, offset: int) -> SpooledBatch:
    """The batch of one record's payload; an empty one (said at ERROR) if it does not decode."""
    try:
        return SpooledBatch.from_json(json.loads(payload))
    except ValueError as error:
        log.error("spool %s: the record before offset %d does not decode (%s): skipped (the "
                  "results in it are lost)", path, offset, error)
        return SpooledBatch(())


def _cut(path: Path, offset: int) -> bool:
    """Cut ``path`` back to ``offset`` bytes (a failed append); whether that worked."""
    try:
        if offset == 0:
            path.unlink(missing_ok=True)
        else:
            with path.open("r+b") as file:
                file.truncate(offset)
                os.fsync(file.fileno())
    except OSError:
        return False
    return True


def _payload(batch: SpooledBatch) -> bytes:
    return json.dumps(batch.to_json(), separators=(",", ":")).encode()


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_suffix(".tmp")
    with temporary.open("w") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    temporary.replace(path)
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
