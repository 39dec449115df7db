"""The recorder's fast path: a batch's unchanged polls recorded by one guarded UPDATE.

Most polls find their conference as it was. The full path (``poller.store.batch``) locks and
loads every target and conference row of a batch to learn that; this one remembers instead.
:class:`UnchangedPolls` keeps, for each target the recorder wrote, the conference's content hash
and the target's ``last_polled_at`` (when it equals ``last_success_at``, as after every newest
observation). A later observation of that target with that hash, newer than that time, is one
parameter set of one executemany, and nothing is read back:

    UPDATE poll_target SET <an unchanged poll's bookkeeping (plan_target), and the schedule>
     WHERE account = ? AND conference_id = ?
       AND last_polled_at = <remembered> AND last_success_at = last_polled_at
       AND (lease_owner IS NULL OR lease_owner = <owner>)
       AND EXISTS (SELECT 1 FROM conference WHERE account = ? AND conference_id = ?
                   AND content_hash = <hash> AND gone_at IS NULL)

The guard is exact, not a hint. Only the recorder writes ``conference``, and every write of a
conference row also moves its target's ``last_polled_at`` or ``last_success_at`` (a newer poll,
or a newer observation: ``plan_target``), so a target row as remembered means a conference row
as remembered. PostgreSQL makes a concurrent writer of the same target wait on the UPDATE's row
lock and re-checks the guard against the row it committed. The ``EXISTS`` is a second line (a
conference row changed by hand).

When a parameter set matches no row (another daemon recorded the target, its lease moved, the
memory is out of date) the row count says so: :class:`FastPathMissed` rolls the transaction
back and the recorder writes the whole batch on the full path. What the fast path writes is
what the full path would: outcome ``unchanged``, no history row, one ``poll_target`` update.

With each state it also keeps the ``Observation.body_digest`` of an observation of it (the
response bodies it was parsed from, when known): a later observation of that target made of
the same bodies has the same content, so its hash is taken (``Observation.reuse_hash``)
rather than computed. That was the costliest part of an unchanged poll left in this thread
(about 40 µs; ``bench/write_costs.py``).
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Update,
    and_,
    bindparam,
    exists,
    null,
    or_,
    select,
    update,
)

from poller.model import Observation, PollResult, TargetKey
from poller.store.batch import CONFERENCE, TARGET, Key, key_of
from poller.store.rows import ConferenceView, ScheduleUpdate, TargetView

MAX_REMEMBERED = 50_000
"""Targets remembered at most (the least recently written are forgotten first): about 23 MB at
most, 4.5 MB at 10,000 targets (0.5 MB of it body digests). A forgotten target goes the full
path once, then is remembered."""


class FastPathMissed(Exception):
    """A guarded UPDATE matched fewer rows than it had polls: roll back, take the full path."""


class UnchangedPolls:
    """What the recorder wrote last per target, and the guarded UPDATE that relies on it."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        """Off: :meth:`split` sends every result to the full path."""
        self._last: dict[Key, tuple[str, datetime, bytes | None]] = {}
        """(account, conference_id) -> (conference content hash, target last_polled_at, the
        body digest of an observation with that hash, if known)."""

    def __len__(self) -> int:
        return len(self._last)

    def split(self, results: Sequence[PollResult], schedule: Mapping[TargetKey, ScheduleUpdate]
              ) -> tuple[list[Observation], list[PollResult]]:
        """The observations the fast path can try (the only result of their target in the
        batch, with the remembered hash, newer than the remembered poll, not retiring the
        target) and the rest, each in ``results``' order."""
        if not self.enabled:
            return [], list(results)
        per_key: defaultdict[Key, int] = defaultdict(int)
        for result in results:
            per_key[key_of(result.target)] += 1
        fast: list[Observation] = []
        rest: list[PollResult] = []
        for result in results:
            key = key_of(result.target)
            last = self._last.get(key)
            if not isinstance(result, Observation) or last is None or per_key[key] > 1:
                rest.append(result)
                continue
            hash_, polled_at, digest = last
            if digest is not None:
                result.reuse_hash(digest, hash_)
            decision = schedule.get(result.target)
            if ((decision is None or decision.state != "retired")
                    and result.observed_at > polled_at and result.content_hash() == hash_):
                fast.append(result)
            else:
                rest.append(result)
        return fast, rest

    def write(self, conn: Connection, fast: Sequence[Observation],
              schedule: Mapping[TargetKey, ScheduleUpdate], owner: str | None) -> None:
        """Record ``fast`` (from :meth:`split`) with guarded UPDATEs, one executemany per shape
        of the schedule; raise :class:`FastPathMissed` unless every poll matched its row."""
        groups: dict[_Shape, list[dict[str, Any]]] = defaultdict(list)
        leased = owner is not None
        for result in fast:
            key = key_of(result.target)
            hash_, last_polled, _ = self._last[key]
            row = {"b_account": key[0], "b_conference_id": key[1], "b_at": result.observed_at,
                   "b_last": last_polled, "b_hash": hash_}
            if leased:
                row["b_owner"] = owner
            decision = schedule.get(result.target)
            if decision is None:
                groups[(False, False, False, leased)].append(row)
            else:
                row["b_next"] = decision.next_poll_at
                groups[(True, decision.release_lease, decision.state == "active", leased)
                       ].append(row)
        for shape, rows in groups.items():
            matched = conn.execute(_statement(shape), rows).rowcount
            if matched != len(rows):
                raise FastPathMissed(f"{len(rows) - matched} of {len(rows)} unchanged polls "
                                     "found their target changed")

    def learned(self, fast: Sequence[Observation], rest: Sequence[PollResult],
                targets: Mapping[Key, TargetView], conferences: Mapping[Key, ConferenceView],
                schedule: Mapping[TargetKey, ScheduleUpdate]) -> None:
        """Remember a committed batch: ``fast`` as written, the full path's final ``targets``
        and ``conferences`` (a target left in another state, or retired, is forgotten), with
        the body digest of an observation in ``rest`` that has the conference's hash."""
        if not self.enabled:
            return
        last = self._last
        for result in fast:
            key = key_of(result.target)
            kept = last.pop(key, None)  # the same hash: its digest still says it
            digest = result.body_digest or (kept[2] if kept is not None else None)
            last[key] = (result.content_hash(), result.observed_at, digest)
        digests = {(key_of(r.target), r.content_hash()): r.body_digest for r in rest
                   if isinstance(r, Observation) and r.body_digest is not None}
        for key, target in targets.items():
            last.pop(key, None)
            conference = conferences.get(key)
            if (conference is not None and conference.content_hash is not None
                    and conference.gone_at is None and target.last_polled_at is not None
                    and target.last_polled_at == target.last_success_at):
                last[key] = (conference.content_hash, target.last_polled_at,
                             digests.get((key, conference.content_hash)))
        for target_key, decision in schedule.items():
            if decision.state == "retired":
                last.pop(key_of(target_key), None)
        while len(last) > MAX_REMEMBERED:
            del last[next(iter(last))]

    def forget(self, results: Sequence[PollResult]) -> None:
        """Forget the targets of ``results`` (their transaction did not commit)."""
        for result in results:
            self._last.pop(key_of(result.target), None)


_Shape = tuple[bool, bool, bool, bool]
"""(a schedule is written, the lease released, the target made active, a lease owner given)."""


@functools.cache
def _statement(shape: _Shape) -> Update:
    """The guarded UPDATE for one shape (built once per shape)."""
    scheduled, release, activate, leased = shape
    at = bindparam("b_at", type_=TARGET.c.last_polled_at.type)
    last = bindparam("b_last", type_=TARGET.c.last_polled_at.type)
    values: dict[str, Any] = {
        "last_polled_at": at, "last_success_at": at, "last_outcome": "unchanged",
        "consecutive_failures": 0, "last_error": null(), "not_found_since": null(),
        "poll_count": TARGET.c.poll_count + 1,
    }
    if scheduled:
        values["next_poll_at"] = bindparam("b_next")
    if release:
        values |= {"lease_owner": null(), "lease_expires_at": null()}
    if activate:
        values |= {"state": "active", "retired_reason": null(), "retired_at": null()}
    conference = and_(CONFERENCE.c.account == bindparam("b_account"),
                      CONFERENCE.c.conference_id == bindparam("b_conference_id"),
                      CONFERENCE.c.content_hash == bindparam("b_hash"),
                      CONFERENCE.c.gone_at.is_(None))
    guard = [TARGET.c.account == bindparam("b_account"),
             TARGET.c.conference_id == bindparam("b_conference_id"),
             TARGET.c.last_polled_at == last,
             TARGET.c.last_success_at == TARGET.c.last_polled_at,
             exists(select(CONFERENCE.c.id).where(conference))]
    if leased:
        guard.append(or_(TARGET.c.lease_owner.is_(None),
                         TARGET.c.lease_owner == bindparam("b_owner")))
    return update(TARGET).where(*guard).values(values)
