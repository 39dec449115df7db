"""The ``poll_target`` table as the poller sees it: syncing the config in, claiming due targets.

* :func:`sync_targets` makes the table match the config's conferences: new ones are inserted
  (``source='config'``, due now), ones dropped from the config are retired ``removed``, a
  ``removed`` one that comes back is reactivated, and a changed Telnyx region is updated.
  Targets from other sources (``discovered``, ``cli``) are never retired by it.
* :func:`claim_due` leases the active targets that are due, oldest ``next_poll_at`` first. On
  PostgreSQL it is one statement::

      UPDATE poll_target SET lease_owner = :owner, lease_expires_at = :until
      FROM (SELECT id, lease_owner FROM poll_target
            WHERE state = 'active' AND next_poll_at <= :due_by
              AND (lease_expires_at IS NULL OR lease_expires_at < :now)
            ORDER BY next_poll_at, id LIMIT :n FOR UPDATE SKIP LOCKED) AS due
      WHERE poll_target.id = due.id
      RETURNING poll_target.…, due.lease_owner

  ``SKIP LOCKED`` lets several daemons claim disjoint sets at the same moment (DESIGN §8), and
  the derived table is evaluated once, so ``LIMIT`` holds however the planner joins it. The
  previous ``lease_owner`` comes back with each row: a non-NULL one is an expired lease taken
  over (``ClaimedTarget.taken_over``; its holder died or stalled). On SQLite (≥ 3.35 for
  ``RETURNING``) the same selection and ``UPDATE … WHERE id IN (…)`` run inside the engine's
  ``BEGIN IMMEDIATE`` transaction, which serialises claimers; only one daemon may use a SQLite
  file anyway. A crashed poller's leases simply expire.
  Recording a result releases the lease (``ScheduleUpdate.release_lease``); targets a tick
  claimed but did not poll are handed back with :func:`release`, and a stopping daemon drops
  the leases of the polls it abandoned with :func:`release_owned`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    bindparam,
    func,
    or_,
    select,
    update,
)

from poller.errors import StoreDown, StoreUnavailable
from poller.model import Provider, TargetKey, require_utc
from poller.store.database import insert_ignoring_duplicates, read_only, store_errors
from poller.store.rows import RetiredReason, TargetState
from poller.store.schema import Base

TARGET: Table = Base.metadata.tables["poll_target"]
CONFERENCE: Table = Base.metadata.tables["conference"]
POLL_ERROR: Table = Base.metadata.tables["poll_error"]

SQLITE_MIN_RETURNING = (3, 35, 0)
IN_CHUNK = 400


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What :func:`sync_targets` changed, as target keys."""

    added: tuple[TargetKey, ...] = ()
    removed: tuple[TargetKey, ...] = ()
    reactivated: tuple[TargetKey, ...] = ()
    region_changed: tuple[TargetKey, ...] = ()

    def __str__(self) -> str:
        return (f"{len(self.added)} added, {len(self.removed)} removed, "
                f"{len(self.reactivated)} reactivated, {len(self.region_changed)} region updates")


@dataclass(frozen=True, slots=True)
class ClaimedTarget:
    """A target leased to this poller, with what the scheduler needs to know of it."""

    pk: int
    key: TargetKey
    next_poll_at: datetime
    state: TargetState = field(default_factory=TargetState)
    taken_over: bool = False
    """Its previous lease had expired unreleased (another daemon died or stalled holding it)."""


def sync_targets(engine: Engine, targets: Iterable[TargetKey], now: datetime) -> SyncReport:
    """Make ``poll_target`` match the configured ``targets`` (see the module docstring)."""
    require_utc(now, "now")
    wanted = {(t.account, t.conference_id): t for t in targets}
    with store_errors("syncing poll targets"), engine.begin() as conn:
        rows = {(r.account, r.conference_id): r
                for r in conn.execute(select(TARGET.c.id, TARGET.c.account,
                                             TARGET.c.conference_id, TARGET.c.provider,
                                             TARGET.c.region, TARGET.c.source, TARGET.c.state,
                                             TARGET.c.retired_reason))}
        added = [t for k, t in sorted(wanted.items()) if k not in rows]
        if added:
            # Another poller starting on the same database may insert them first: its rows win.
            inserted = conn.execute(
                insert_ignoring_duplicates(conn, TARGET, ("account", "conference_id"))
                .returning(TARGET.c.account, TARGET.c.conference_id),
                [{"provider": t.provider.value, "account": t.account,
                  "conference_id": t.conference_id, "region": t.region, "source": "config",
                  "state": "active", "next_poll_at": now, "created_at": now} for t in added])
            new_keys = {(r.account, r.conference_id) for r in inserted}
            added = [t for t in added if (t.account, t.conference_id) in new_keys]
        removed = [r for k, r in sorted(rows.items()) if k not in wanted
                   and r.source == "config" and r.state == "active"]
        if removed:
            conn.execute(update(TARGET).where(TARGET.c.id == bindparam("b_pk")).values(
                state="retired", retired_reason=RetiredReason.REMOVED, retired_at=now,
                lease_owner=None, lease_expires_at=None), [{"b_pk": r.id} for r in removed])
        back = [(rows[k], t) for k, t in sorted(wanted.items()) if k in rows
                and rows[k].state == "retired" and rows[k].retired_reason == RetiredReason.REMOVED]
        if back:
            conn.execute(update(TARGET).where(TARGET.c.id == bindparam("b_pk")).values(
                state="active", retired_reason=None, retired_at=None, source="config",
                next_poll_at=now), [{"b_pk": r.id} for r, _ in back])
        moved = [(rows[k], t) for k, t in sorted(wanted.items())
                 if k in rows and rows[k].region != t.region]
        if moved:
            conn.execute(update(TARGET).where(TARGET.c.id == bindparam("b_pk")).values(
                region=bindparam("b_region")),
                [{"b_pk": r.id, "b_region": t.region} for r, t in moved])
    return SyncReport(
        added=tuple(added),
        removed=tuple(_key(r) for r in removed),
        reactivated=tuple(t for _, t in back),
        region_changed=tuple(t for _, t in moved),
    )


def claim_due(engine: Engine, now: datetime, limit: int, owner: str, lease_seconds: float, *,
              due_by: datetime | None = None, exclude_accounts: Collection[str] = ()
              ) -> list[ClaimedTarget]:
    """Lease up to ``limit`` due active targets to ``owner``, oldest ``next_poll_at`` first.

    ``due_by`` (default ``now``) is the cut-off for ``next_poll_at`` (a burst run keeps its
    start time, so a target it reschedules is not claimed again); targets of
    ``exclude_accounts`` (paused) are left alone.
    """
    require_utc(now, "now")
    due_by = now if due_by is None else due_by
    if limit <= 0:
        return []
    check_returning_support(engine)
    conditions = [
        TARGET.c.state == "active",
        TARGET.c.next_poll_at <= due_by,
        or_(TARGET.c.lease_expires_at.is_(None), TARGET.c.lease_expires_at < now),
    ]
    if exclude_accounts:
        conditions.append(TARGET.c.account.not_in(sorted(exclude_accounts)))
    due = (select(TARGET.c.id, TARGET.c.lease_owner.label("previous_owner")).where(*conditions)
           .order_by(TARGET.c.next_poll_at, TARGET.c.id).limit(limit)
           .with_for_update(skip_locked=True))
    lease = {"lease_owner": owner, "lease_expires_at": now + timedelta(seconds=lease_seconds)}
    # The conference's stored status, looked up per row by its unique key: on PostgreSQL in the
    # UPDATE's RETURNING, on SQLite in the SELECT (whose planner scans the table for a subquery
    # in RETURNING, as it did for an IN list of key pairs).
    status = (select(CONFERENCE.c.status)
              .where(CONFERENCE.c.account == TARGET.c.account,
                     CONFERENCE.c.conference_id == TARGET.c.conference_id)
              .correlate(TARGET).scalar_subquery().label("last_status"))
    returned = (TARGET.c.id, TARGET.c.provider, TARGET.c.account, TARGET.c.conference_id,
                TARGET.c.region, TARGET.c.next_poll_at, TARGET.c.consecutive_failures,
                TARGET.c.not_found_since)
    with store_errors("claiming due poll targets"), engine.begin() as conn:
        # Either way the rows are (*returned, last_status, previous_owner).
        claimed: Sequence[Any]
        if conn.dialect.name == "postgresql":
            picked = due.subquery("due")
            claimed = sorted(conn.execute(
                update(TARGET).where(TARGET.c.id == picked.c.id).values(lease)
                .returning(*returned, status, picked.c.previous_owner)).all(),
                key=_claim_order)
        else:
            # BEGIN IMMEDIATE holds the write lock, so the due query picks the same rows twice:
            # read them (in order, with their status), then lease them by the same query.
            # Neither an IN list of their ids nor RETURNING (which the lease does not change).
            claimed = conn.execute(due.with_only_columns(
                *returned, status, TARGET.c.lease_owner.label("previous_owner"))).all()
            if claimed:
                ids = due.with_only_columns(TARGET.c.id).correlate(None).scalar_subquery()
                leased = conn.execute(update(TARGET).where(TARGET.c.id.in_(ids))
                                      .values(lease)).rowcount
                if leased != len(claimed):  # cannot happen under the write lock
                    raise StoreDown(f"claiming: {len(claimed)} due targets read but "
                                    f"{leased} leased")
        counts = _not_found_counts(conn, [r.id for r in claimed if r.not_found_since is not None])
    # By position (a row's attributes cost a look-up each: this is per target claimed).
    return [
        ClaimedTarget(
            pk=pk, key=TargetKey(PROVIDERS[provider], account, conference_id, region),
            next_poll_at=next_poll_at,
            state=TargetState(
                last_status=last_status,
                consecutive_failures=failures,
                not_found_since=not_found_since,
                not_found_count=counts.get(pk, 0),
            ),
            taken_over=previous_owner is not None,
        )
        for (pk, provider, account, conference_id, region, next_poll_at, failures,
             not_found_since, last_status, previous_owner) in claimed
    ]


def _claim_order(row: Any) -> tuple[datetime, int]:
    """A claimed row's place: ``next_poll_at``, then ``id`` (the columns of ``returned``)."""
    return row[5], row[0]


def release(engine: Engine, next_poll_at: Mapping[int, datetime]) -> None:
    """Hand claimed targets (by pk) back unpolled, due again at the given times."""
    if not next_poll_at:
        return
    with store_errors("releasing poll targets"), engine.begin() as conn:
        conn.execute(update(TARGET).where(TARGET.c.id == bindparam("b_pk")).values(
            next_poll_at=bindparam("b_next"), lease_owner=None, lease_expires_at=None),
            [{"b_pk": pk, "b_next": at} for pk, at in sorted(next_poll_at.items())])


def release_owned(engine: Engine, owner: str) -> int:
    """Drop every lease ``owner`` holds, leaving ``next_poll_at`` alone (so they stay due).

    ``poller run`` calls it on shutdown for the polls it abandoned; the number released.
    """
    with store_errors("releasing leases"), engine.begin() as conn:
        result = conn.execute(update(TARGET).where(TARGET.c.lease_owner == owner).values(
            lease_owner=None, lease_expires_at=None))
        return result.rowcount


def release_all(engine: Engine) -> int:
    """Drop every lease, whoever holds it; how many there were.

    Only for a process that knows no other poller runs: ``poller run`` and ``poller once`` on
    a SQLite file they hold the lock of. The leases found then belong to a poller that died
    (SIGKILL, power loss) and would otherwise keep its targets unpolled until they expire.
    """
    with store_errors("releasing stale leases"), engine.begin() as conn:
        result = conn.execute(update(TARGET).where(TARGET.c.lease_owner.is_not(None)).values(
            lease_owner=None, lease_expires_at=None))
        return result.rowcount


def next_due_at(engine: Engine) -> datetime | None:
    """The earliest ``next_poll_at`` of an active target (``None`` when there is none)."""
    with store_errors("reading the next due time"), engine.connect() as conn:
        value: datetime | None = conn.execute(
            select(func.min(TARGET.c.next_poll_at)).where(TARGET.c.state == "active")
        ).scalar_one()
        return value


def count_targets(engine: Engine) -> dict[tuple[str, str], int]:
    """Poll targets by ``(state, retired_reason or "")``: one read-only ``GROUP BY`` query.

    Raises ``StoreUnavailable`` when the database cannot be reached.
    """
    query = (select(TARGET.c.state, TARGET.c.retired_reason, func.count())
             .group_by(TARGET.c.state, TARGET.c.retired_reason))
    with store_errors("counting poll targets"), read_only(engine) as conn:
        rows = conn.execute(query).all()
    counts: dict[tuple[str, str], int] = {}
    for state, reason, n in rows:
        key = (state, "" if state == "active" else reason or "")
        counts[key] = counts.get(key, 0) + n
    return counts


def check_returning_support(engine: Engine) -> None:
    """Refuse SQLite older than 3.35, which lacks ``UPDATE … RETURNING``."""
    if engine.dialect.name == "sqlite" and sqlite3.sqlite_version_info < SQLITE_MIN_RETURNING:
        raise StoreUnavailable(
            f"SQLite {sqlite3.sqlite_version} is too old: poller needs 3.35 or newer")


def _not_found_counts(conn: Connection, pks: list[int]) -> dict[int, int]:
    """404s recorded per target since its ``not_found_since`` (the current run of 404s)."""
    counts: dict[int, int] = {}
    for start in range(0, len(pks), IN_CHUNK):
        chunk = pks[start:start + IN_CHUNK]
        query = (select(POLL_ERROR.c.target_pk, func.count())
                 .join(TARGET, TARGET.c.id == POLL_ERROR.c.target_pk)
                 .where(TARGET.c.id.in_(chunk), POLL_ERROR.c.kind == "not_found",
                        POLL_ERROR.c.occurred_at >= TARGET.c.not_found_since)
                 .group_by(POLL_ERROR.c.target_pk))
        counts.update({pk: n for pk, n in conn.execute(query)})
    return counts


PROVIDERS = {provider.value: provider for provider in Provider}
"""``Provider`` by its stored value (a dict look-up: calling the enum costs more)."""


def _key(row: Any) -> TargetKey:
    """The target key of a ``poll_target`` row."""
    return TargetKey(PROVIDERS[row.provider], row.account, row.conference_id, row.region)
