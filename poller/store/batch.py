"""One recorder transaction: load what a batch touches, plan it, write it in bulk.

The steps, all inside the caller's transaction:

1. **Lock** the batch's ``poll_target`` rows, then its ``conference`` rows, each with one
   ``SELECT … WHERE (account, conference_id) IN (…) ORDER BY … FOR UPDATE`` (PostgreSQL; SQLite
   already holds the database's write lock from ``BEGIN IMMEDIATE``). Every recorder locks in
   the same order, so two of them serialise per conference instead of deadlocking. Missing
   targets are created with ``INSERT … ON CONFLICT DO NOTHING`` and locked in turn.
2. **Load** the members of the conferences whose content hash may have changed (one IN query).
3. **Plan** each result in (account, conference, observed_at) order with the pure functions of
   ``poller.store.diff``, carrying the views forward in memory.
4. **Write** with one executemany per statement shape: new conferences (``ON CONFLICT DO
   NOTHING``; a lost race raises :class:`InsertConflict` and the recorder retries), conference
   updates (only for conferences that changed: write on change), snapshot closes and inserts,
   transitions, members, member events, target bookkeeping and poll errors. A batch of
   unchanged polls writes one statement: the ``poll_target`` UPDATE. Sequence numbers
   continue from ``max(seq)`` read under the conference lock.
   Each target gets one row update per batch, whatever the number of its results: bookkeeping,
   the ``poll_count`` / ``failure_count`` counters (new values computed under the row lock) and
   the daemon's schedule (next poll time, retirement, lease release), merged. The target row's
   ``last_success_at`` (the newest recorded observation) is the staleness line and bracket
   start of the diff, read under its lock.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, bindparam, func, insert, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from poller.model import Observation, PollResult, TargetKey
from poller.store.diff import is_newer_poll, plan_failure, plan_observation, plan_target
from poller.store.rows import ConferenceView, MemberView, Outcome, ScheduleUpdate, TargetView
from poller.store.schema import Base
from poller.store.writes import HistoryWrites

TARGET: Table = Base.metadata.tables["poll_target"]
CONFERENCE: Table = Base.metadata.tables["conference"]
SNAPSHOT: Table = Base.metadata.tables["conference_snapshot"]
TRANSITION: Table = Base.metadata.tables["status_transition"]
MEMBER: Table = Base.metadata.tables["member"]
MEMBER_EVENT: Table = Base.metadata.tables["member_event"]
POLL_ERROR: Table = Base.metadata.tables["poll_error"]

IN_CHUNK = 400
"""Keys per IN list (two bound parameters each; well under every driver's limit)."""

Key = tuple[str, str]
"""(account, conference_id): the unique key of targets and conferences."""


class InsertConflict(Exception):
    """Another transaction inserted a row this one meant to create: retry the batch."""


def key_of(target: TargetKey) -> Key:
    """The unique key of a target."""
    return (target.account, target.conference_id)


class BatchWriter:
    """Applies one sorted batch on an open connection (see the module docstring)."""

    def __init__(self, conn: Connection, now: datetime,
                 schedule: Mapping[TargetKey, ScheduleUpdate], owner: str | None = None
                 ) -> None:
        self.conn = conn
        self.now = now
        self.schedule = schedule
        self.owner = owner
        """Whose results these are: a schedule is written only to a target this owner (or no
        one) leases; ``None``: to any (a caller outside the lease protocol)."""
        self.lease_owners: dict[Key, str | None] = {}
        """Who held each target's lease when it was locked."""
        self.inserted: Counter[str] = Counter()
        self.updated: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.unchanged_by_provider: Counter[str] = Counter()
        self.transitions_by_status: Counter[str] = Counter()
        self.member_events_by_kind: Counter[str] = Counter()
        self.warnings: list[tuple[TargetKey, str]] = []
        """The parser warnings of each new snapshot (a new state), by target."""
        self.final_targets: dict[Key, TargetView] = {}
        self.final_conferences: dict[Key, ConferenceView] = {}
        """The batch's target and conference rows as :meth:`apply` left them."""

    # -- loading ---------------------------------------------------------------------------

    def _select_locked(self, table: Table, keys: Iterable[Key]) -> list[Mapping[Any, Any]]:
        rows: list[Mapping[Any, Any]] = []
        ordered = sorted(set(keys))
        for start in range(0, len(ordered), IN_CHUNK):
            chunk = ordered[start:start + IN_CHUNK]
            query = (
                select(table)
                .where(tuple_(table.c.account, table.c.conference_id).in_(chunk))
                .order_by(table.c.account, table.c.conference_id)
                .with_for_update()
            )
            rows.extend(row._mapping for row in self.conn.execute(query))
        return rows

    def _upsert(self, table: Table) -> postgresql.Insert | sqlite.Insert:
        """The dialect's INSERT, which knows ``ON CONFLICT``."""
        if self.conn.dialect.name == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    def load_targets(self, results: Sequence[PollResult]) -> dict[Key, TargetView]:
        """Lock (creating where missing) the target row of every result."""
        first: dict[Key, TargetKey] = {}
        for result in results:
            first.setdefault(key_of(result.target), result.target)
        locked = self._select_locked(TARGET, first)
        self.lease_owners = {(r["account"], r["conference_id"]): r["lease_owner"] for r in locked}
        found = {(r["account"], r["conference_id"]): TargetView.from_row(r) for r in locked}
        missing = [key for key in first if key not in found]
        if missing:
            rows = []
            for key in missing:
                target, update_ = first[key], self.schedule.get(first[key])
                rows.append({"provider": target.provider.value, "account": target.account,
                             "conference_id": target.conference_id, "region": target.region,
                             "next_poll_at": update_.next_poll_at if update_ else self.now,
                             "created_at": self.now})
            stmt = self._upsert(TARGET).on_conflict_do_nothing(
                index_elements=["account", "conference_id"]).returning(TARGET.c.id)
            # Counted from RETURNING: an executemany's rowcount is not reliable on every driver.
            self.inserted["poll_target"] += len(self.conn.execute(stmt, rows).all())
            found.update({(r["account"], r["conference_id"]): TargetView.from_row(r)
                          for r in self._select_locked(TARGET, missing)})
        return found

    def load_conferences(self, keys: Iterable[Key]) -> dict[Key, ConferenceView]:
        """Lock the conference rows that exist for ``keys``."""
        return {(r["account"], r["conference_id"]): ConferenceView.from_row(r)
                for r in self._select_locked(CONFERENCE, keys)}

    def load_members(self, conference_pks: Iterable[int]) -> dict[int, dict[str, MemberView]]:
        """The stored members of the given conferences, by conference pk and member_id."""
        members: dict[int, dict[str, MemberView]] = defaultdict(dict)
        pks = sorted(set(conference_pks))
        for start in range(0, len(pks), IN_CHUNK):
            query = select(MEMBER).where(MEMBER.c.conference_pk.in_(pks[start:start + IN_CHUNK]))
            for row in self.conn.execute(query):
                mapping = row._mapping
                members[mapping["conference_pk"]][mapping["member_id"]] = MemberView.from_row(
                    mapping)
        return members

    def max_seq(self, table: Table, owner: str, pks: Iterable[int]) -> dict[int, int]:
        """The highest ``seq`` of ``table`` per ``owner`` pk (absent when it has none)."""
        column = table.c[owner]
        ordered = sorted(set(pks))
        found: dict[int, int] = {}
        for start in range(0, len(ordered), IN_CHUNK):
            query = (select(column, func.max(table.c.seq))
                     .where(column.in_(ordered[start:start + IN_CHUNK])).group_by(column))
            found.update({pk: seq for pk, seq in self.conn.execute(query)})
        return found

    # -- the batch ---------------------------------------------------------------------------

    def apply(self, results: Sequence[PollResult]) -> None:
        """Plan and write ``results`` (already sorted by account, conference, observed_at)."""
        targets = self.load_targets(results)
        keys = {key_of(r.target) for r in results}
        conferences = self.load_conferences(keys)
        hashes = {id(r): r.content_hash() for r in results if isinstance(r, Observation)}
        maybe_changed = {
            conferences[key].pk for r in results
            if isinstance(r, Observation) and (key := key_of(r.target)) in conferences
            and _is_after(r.observed_at, targets[key].last_success_at)
            and hashes[id(r)] != conferences[key].content_hash
        }
        by_pk = self.load_members(pk for pk in maybe_changed if pk is not None)
        members: dict[Key, dict[str, MemberView]] = {
            key: by_pk.get(view.pk, {}) for key, view in conferences.items() if view.pk is not None
        }
        original = dict(conferences)
        changed: set[Key] = set()
        writes = HistoryWrites()
        dirty_targets: dict[Key, TargetView] = {}
        errors: list[dict[str, Any]] = []

        for result in results:
            key = key_of(result.target)
            outcome: Outcome | None = None
            target = dirty_targets.get(key, targets[key])
            if isinstance(result, Observation):
                before = conferences.get(key)
                plan = plan_observation(before, members.get(key, {}), result,
                                        last_seen=target.last_success_at,
                                        content_hash=hashes[id(result)])
                outcome = plan.outcome
                self.outcomes[outcome.value] += 1
                if outcome is Outcome.UNCHANGED:
                    self.unchanged_by_provider[result.target.provider.value] += 1
                if outcome is not Outcome.STALE:
                    conferences[key] = plan.conference
                    members[key] = dict(plan.members)
                    # Write on change: an unchanged poll leaves the conference row alone
                    # (unless it clears gone_at); its only write is the target's bookkeeping.
                    if outcome is Outcome.CHANGED or plan.conference != before:
                        changed.add(key)
                    writes.add(key, plan)
                    if plan.snapshot is not None:
                        self.warnings += [(result.target, w) for w in plan.snapshot.warnings]
            else:
                self.outcomes["failure"] += 1
                # A failure not newer than the target's last poll (a replay, or out of order)
                # is ignored entirely: no gone_at, no poll_error row, no counter moves.
                if is_newer_poll(target, result):
                    gone = plan_failure(conferences.get(key), result, target.last_success_at)
                    if gone is not None:
                        conferences[key] = gone
                        changed.add(key)
            new_target = plan_target(target, result, outcome)
            if new_target is not None:
                dirty_targets[key] = new_target
                if not isinstance(result, Observation):
                    errors.append({"target_pk": targets[key].pk, "occurred_at": result.observed_at,
                                   "kind": result.kind, "http_status": result.http_status,
                                   "provider_code": result.provider_code,
                                   "retry_after_seconds": result.retry_after_seconds,
                                   "detail": result.message[:500]})

        self.final_targets = targets | dirty_targets
        self.final_conferences = conferences
        pks = self._write_conferences(conferences, original, changed)
        writes.write(self, pks, original, members)
        self._write_targets(targets, dirty_targets, results)
        if errors:
            self.conn.execute(insert(POLL_ERROR), errors)
            self.inserted["poll_error"] += len(errors)

    # -- writing -----------------------------------------------------------------------------

    def update_many(self, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        """``UPDATE table SET <keys> WHERE id = :b_pk`` as one executemany per key set."""
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            groups[tuple(sorted(row))].append(row)
        for group in groups.values():
            self.conn.execute(update(table).where(table.c.id == bindparam("b_pk")), group)
            self.updated[table.name] += len(group)

    def _write_conferences(self, conferences: Mapping[Key, ConferenceView],
                           original: Mapping[Key, ConferenceView], changed: set[Key]
                           ) -> dict[Key, int]:
        """Insert new conferences, update changed ones; return every key's pk."""
        pks = {key: view.pk for key, view in original.items() if view.pk is not None}
        new = [conferences[key].values() for key in sorted(changed) if key not in pks]
        if new:
            stmt = self._upsert(CONFERENCE).on_conflict_do_nothing(
                index_elements=["account", "conference_id"],
            ).returning(CONFERENCE.c.id, CONFERENCE.c.account, CONFERENCE.c.conference_id)
            returned = self.conn.execute(stmt, new).all()
            if len(returned) != len(new):
                raise InsertConflict("a conference was first recorded by another transaction")
            pks.update({(account, conference_id): pk for pk, account, conference_id in returned})
            self.inserted["conference"] += len(new)
        self.update_many(CONFERENCE, [conferences[key].values() | {"b_pk": pks[key]}
                                      for key in sorted(changed) if key in original])
        return pks

    def _owns(self, key: Key) -> bool:
        """Whether this batch's owner may write ``key``'s schedule (see ``__init__``)."""
        held_by = self.lease_owners.get(key)
        return self.owner is None or held_by is None or held_by == self.owner

    def _write_targets(self, targets: Mapping[Key, TargetView],
                       dirty: Mapping[Key, TargetView], results: Sequence[PollResult]) -> None:
        """Bookkeeping and the daemon's schedule, merged into one row update per target."""
        rows: dict[Key, dict[str, Any]] = {
            key: view.values() for key, view in dirty.items()
        }
        retire: list[dict[str, Any]] = []
        for result in results:
            decision = self.schedule.get(result.target)
            key = key_of(result.target)
            if decision is None or not self._owns(key):
                continue  # another daemon took the target over: its lease, its schedule
            rows.setdefault(key, {})["next_poll_at"] = decision.next_poll_at
            if decision.release_lease:
                rows[key] |= {"lease_owner": None, "lease_expires_at": None}
            if decision.state == "retired":
                retire.append({"b_pk": targets[key].pk, "b_reason": decision.retired_reason,
                               "b_now": self.now})
            elif decision.state is not None:
                rows[key] |= {"state": decision.state, "retired_reason": None,
                              "retired_at": None}
        self.update_many(TARGET, [row | {"b_pk": targets[key].pk} for key, row in rows.items()])
        if retire:
            stmt = update(TARGET).where(TARGET.c.id == bindparam("b_pk")).values(
                state="retired", retired_reason=bindparam("b_reason"),
                retired_at=func.coalesce(TARGET.c.retired_at, bindparam("b_now")))
            self.conn.execute(stmt, retire)


def _is_after(moment: datetime, line: datetime | None) -> bool:
    """True when ``moment`` is after ``line`` (always, when there is no line yet)."""
    return line is None or moment > line
