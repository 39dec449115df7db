"""Poll targets that do not come from ``config.toml``: the watch list and discovery.

``poll_target.source`` says where a target came from: ``config`` (synced from the file by
:func:`poller.store.targets.sync_targets`), ``cli`` (``poller watch add``, or an application
inserting the row itself: ``docs/discovery.md``) and ``discovered`` (found in a provider's
conference list by :mod:`poller.polling.discovery`). Config syncs never retire ``cli`` or
``discovered`` rows, and a running daemon needs no reload to poll them: every tick claims
whatever active row is due.

* :func:`watch` adds (or reactivates) a ``cli`` target, due now;
* :func:`unwatch` retires a ``cli`` or ``discovered`` target ``removed``; a ``config`` one is
  refused (the next config sync would bring it back: remove it from the file instead);
* :func:`watched` lists targets for ``poller watch list``;
* :func:`add_discovered` inserts newly listed conferences as ``discovered`` targets, leaving
  every existing row (of any source or state) alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine, func, select, update

from poller.model import TargetKey, require_utc
from poller.store.database import insert_ignoring_duplicates, store_errors
from poller.store.rows import RetiredReason
from poller.store.targets import CONFERENCE, TARGET


class WatchOutcome(StrEnum):
    """What :func:`watch` / :func:`unwatch` did."""

    ADDED = "added"
    REACTIVATED = "reactivated"
    ALREADY = "already"
    """Already active (``watch``) or already retired (``unwatch``)."""
    REMOVED = "removed"
    NOT_FOUND = "not_found"
    FROM_CONFIG = "from_config"
    """``unwatch`` of a target the config file lists: refused."""
    OTHER_PROVIDER = "other_provider"
    """The row exists for the same account and ID under another provider: refused."""


@dataclass(frozen=True, slots=True)
class WatchResult:
    """The outcome, with the row as it was before (``None`` when there was none)."""

    outcome: WatchOutcome
    source: str | None = None
    state: str | None = None
    retired_reason: str | None = None


def watch(engine: Engine, target: TargetKey, now: datetime) -> WatchResult:
    """Make ``target`` an active ``cli`` target due at ``now`` (see the module docstring).

    An active row of any source is left as it is (its region updated if ``target`` names
    another); a retired one is reactivated as ``cli`` with its failure counters reset.
    """
    require_utc(now, "now")
    with store_errors("adding a watched conference"), engine.begin() as conn:
        row = conn.execute(select(TARGET).where(
            TARGET.c.account == target.account,
            TARGET.c.conference_id == target.conference_id)).first()
        if row is None:
            conn.execute(insert_ignoring_duplicates(conn, TARGET, ("account", "conference_id")),
                         [_new_row(target, "cli", now)])
            return WatchResult(WatchOutcome.ADDED)
        before = WatchResult(WatchOutcome.ALREADY, row.source, row.state, row.retired_reason)
        if row.provider != target.provider.value:
            return WatchResult(WatchOutcome.OTHER_PROVIDER, row.source, row.state,
                               row.retired_reason)
        if row.state == "active":
            if target.region is not None and row.region != target.region:
                conn.execute(update(TARGET).where(TARGET.c.id == row.id)
                             .values(region=target.region))
            return before
        conn.execute(update(TARGET).where(TARGET.c.id == row.id).values(
            state="active", source="cli", retired_reason=None, retired_at=None,
            region=target.region if target.region is not None else row.region,
            next_poll_at=now, consecutive_failures=0, not_found_since=None,
            lease_owner=None, lease_expires_at=None))
        return WatchResult(WatchOutcome.REACTIVATED, row.source, row.state, row.retired_reason)


def unwatch(engine: Engine, account: str, conference_id: str, now: datetime) -> WatchResult:
    """Retire a ``cli`` or ``discovered`` target ``removed`` (``config`` ones are refused)."""
    require_utc(now, "now")
    with store_errors("removing a watched conference"), engine.begin() as conn:
        row = conn.execute(select(TARGET).where(
            TARGET.c.account == account, TARGET.c.conference_id == conference_id)).first()
        if row is None:
            return WatchResult(WatchOutcome.NOT_FOUND)
        if row.state != "active":
            return WatchResult(WatchOutcome.ALREADY, row.source, row.state, row.retired_reason)
        if row.source == "config":
            return WatchResult(WatchOutcome.FROM_CONFIG, row.source, row.state)
        conn.execute(update(TARGET).where(TARGET.c.id == row.id).values(
            state="retired", retired_reason=RetiredReason.REMOVED, retired_at=now,
            lease_owner=None, lease_expires_at=None))
        return WatchResult(WatchOutcome.REMOVED, row.source, row.state)


def watched(engine: Engine, *, account: str | None = None, source: str | None = None,
            include_retired: bool = False) -> list[dict[str, Any]]:
    """Targets as dicts (provider, account, conference_id, region, source, state,
    retired_reason, next_poll_at, last_polled_at, last_outcome), by account and ID."""
    columns = [TARGET.c.provider, TARGET.c.account, TARGET.c.conference_id, TARGET.c.region,
               TARGET.c.source, TARGET.c.state, TARGET.c.retired_reason,
               TARGET.c.next_poll_at, TARGET.c.last_polled_at, TARGET.c.last_outcome]
    query = select(*columns).order_by(TARGET.c.account, TARGET.c.conference_id)
    if account is not None:
        query = query.where(TARGET.c.account == account)
    if source is not None:
        query = query.where(TARGET.c.source == source)
    if not include_retired:
        query = query.where(TARGET.c.state == "active")
    with store_errors("listing poll targets"), engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def add_discovered(engine: Engine, targets: Iterable[TargetKey], now: datetime
                   ) -> list[TargetKey]:
    """Insert ``targets`` not yet in ``poll_target`` as ``discovered``, due at ``now``;
    the ones inserted (rows that exist, whatever their source or state, are left alone)."""
    require_utc(now, "now")
    wanted = {(t.account, t.conference_id): t for t in targets}
    if not wanted:
        return []
    with store_errors("adding discovered conferences"), engine.begin() as conn:
        known = _existing(conn, list(wanted))
        new = [t for key, t in sorted(wanted.items()) if key not in known]
        if not new:
            return []
        inserted = conn.execute(
            insert_ignoring_duplicates(conn, TARGET, ("account", "conference_id"))
            .returning(TARGET.c.account, TARGET.c.conference_id),
            [_new_row(t, "discovered", now) for t in new])
        keys = {(r.account, r.conference_id) for r in inserted}
    return [t for t in new if (t.account, t.conference_id) in keys]


def newest_discovered_created_at(engine: Engine, account: str) -> datetime | None:
    """The newest provider ``created_at`` of the account's ``discovered`` conferences."""
    query = (select(func.max(CONFERENCE.c.created_at))
             .join(TARGET, (TARGET.c.account == CONFERENCE.c.account)
                   & (TARGET.c.conference_id == CONFERENCE.c.conference_id))
             .where(CONFERENCE.c.account == account, TARGET.c.source == "discovered"))
    with store_errors("reading the discovery cursor"), engine.connect() as conn:
        value: datetime | None = conn.execute(query).scalar_one()
        return value


def _existing(conn: Any, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of ``keys`` (account, conference_id) have a row, by account to keep it indexed."""
    found: set[tuple[str, str]] = set()
    by_account: dict[str, list[str]] = {}
    for account, conference_id in keys:
        by_account.setdefault(account, []).append(conference_id)
    for account, ids in by_account.items():
        for start in range(0, len(ids), 400):
            chunk = ids[start:start + 400]
            found.update((account, cid) for (cid,) in conn.execute(
                select(TARGET.c.conference_id).where(TARGET.c.account == account,
                                                     TARGET.c.conference_id.in_(chunk))))
    return found


def _new_row(target: TargetKey, source: str, now: datetime) -> dict[str, Any]:
    return {"provider": target.provider.value, "account": target.account,
            "conference_id": target.conference_id, "region": target.region, "source": source,
            "state": "active", "next_poll_at": now, "created_at": now}
