"""Several ``poller run`` processes on one database: registration, heartbeats, status (DESIGN §8).

Each daemon has an identity (``[daemon] identity``; ``host:pid`` by default) and a row in
``poller_daemon``:

* :func:`register` at start: a row whose daemon is *live* (not stopped, heartbeat younger than
  its lease) refuses the identity with :class:`IdentityInUse` (a ``ConfigError``: exit 2),
  unless it is this very process's (same host and pid: an earlier attempt whose commit the
  process did not hear of, the connection lost or the attempt cancelled).
  Otherwise the row is (re)written, the leases an earlier process of that identity left behind
  are dropped (so its targets are polled again at once), and rows of daemons gone for a week
  are deleted. It runs in one transaction; on PostgreSQL the row is locked (``INSERT … ON
  CONFLICT DO NOTHING`` then ``SELECT … FOR UPDATE``), so two processes starting with one
  identity at the same moment cannot both win.
* :func:`heartbeat` every ``[daemon] heartbeat_seconds``: refreshes ``heartbeat_at`` and the
  poll counts, and renews the leases this daemon holds (the targets it is working on) to
  ``now + lease_seconds``, so a slow poll never loses its lease while its daemon lives.
* :func:`mark_stopped` on a graceful stop.

A daemon killed without a stop keeps its row with ``stopped_at`` NULL; once its heartbeat is
older than its ``lease_seconds`` it counts as lost, its leases have expired with it, and the
others take its targets over. :func:`fleet_status` is what ``poller status`` shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import Connection, Engine, and_, delete, func, or_, select, update

from poller.errors import IdentityInUse
from poller.model import require_utc
from poller.store.database import insert_ignoring_duplicates, read_only, store_errors
from poller.store.schema import Base

DAEMON = Base.metadata.tables["poller_daemon"]
TARGET = Base.metadata.tables["poll_target"]

FORGET_AFTER = timedelta(days=7)
"""Rows of daemons stopped (or silent) this long are deleted by the next registration."""

DaemonState = Literal["live", "stopped", "lost"]


@dataclass(frozen=True, slots=True)
class Registration:
    """What :func:`register` found and did."""

    identity: str
    replaced: DaemonState | None
    """The state of the identity's previous row (``None``: first registration)."""
    released: int
    """Leases of the identity's previous process dropped."""
    live: int
    """Live daemons, this one included."""


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """What one :func:`heartbeat` did and saw."""

    renewed: int
    """Leases renewed."""
    live: int
    """Live daemons, this one included."""
    owned: bool = True
    """False when another process has registered the identity since (nothing was written)."""


@dataclass(frozen=True, slots=True)
class DaemonStatus:
    """One ``poller_daemon`` row, as ``poller status`` shows it."""

    identity: str
    host: str
    pid: int
    state: DaemonState
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_age_seconds: float
    stopped_at: datetime | None
    lease_seconds: float
    targets_held: int
    """Unexpired leases it holds now."""
    polls_last_minute: int
    polls_total: int


@dataclass(frozen=True, slots=True)
class OverdueTarget:
    """An active target not polled although due for longer than the threshold."""

    account: str
    conference_id: str
    provider: str
    next_poll_at: datetime
    late_seconds: float
    lease_owner: str | None


@dataclass(frozen=True, slots=True)
class FleetStatus:
    """The daemons and the overdue targets at ``now``."""

    now: datetime
    daemons: list[DaemonStatus]
    active_targets: int
    overdue_after_seconds: float
    overdue: int
    overdue_targets: list[OverdueTarget]
    """The most overdue ones first, at most the ``limit`` asked for."""


def daemon_state(stopped_at: datetime | None, heartbeat_at: datetime, lease_seconds: float,
                 now: datetime) -> DaemonState:
    """``stopped`` (graceful stop), ``live`` (heartbeat within its lease) or ``lost``."""
    if stopped_at is not None:
        return "stopped"
    if heartbeat_at >= now - timedelta(seconds=lease_seconds):
        return "live"
    return "lost"


def register(engine: Engine, identity: str, *, host: str, pid: int, now: datetime,
             lease_seconds: float) -> Registration:
    """Claim ``identity`` for this process, or raise :class:`IdentityInUse` (module doc)."""
    require_utc(now, "now")
    row = {"identity": identity, "host": host, "pid": pid, "started_at": now,
           "heartbeat_at": now, "stopped_at": None, "lease_seconds": lease_seconds,
           "polls_total": 0, "polls_last_minute": 0}
    with store_errors("registering this daemon"), engine.begin() as conn:
        inserted = conn.execute(insert_ignoring_duplicates(conn, DAEMON, ("identity",))
                                .values(row).returning(DAEMON.c.identity)).first()
        replaced: DaemonState | None = None
        if inserted is None:
            previous = conn.execute(select(DAEMON).where(DAEMON.c.identity == identity)
                                    .with_for_update()).one()
            replaced = daemon_state(previous.stopped_at, previous.heartbeat_at,
                                    previous.lease_seconds, now)
            if replaced == "live" and (previous.host, previous.pid) != (host, pid):
                age = (now - previous.heartbeat_at).total_seconds()
                raise IdentityInUse(
                    f"daemon.identity: {identity!r} is in use by a running poller (host "
                    f"{previous.host}, pid {previous.pid}, last heartbeat {age:.0f} s ago). "
                    f"Give this one another [daemon] identity, or stop the other one; if it "
                    f"was killed, its identity is free once its heartbeat is "
                    f"{previous.lease_seconds:g} s old.", key="daemon.identity")
            conn.execute(update(DAEMON).where(DAEMON.c.identity == identity).values(row))
        released = conn.execute(update(TARGET).where(TARGET.c.lease_owner == identity).values(
            lease_owner=None, lease_expires_at=None)).rowcount
        forget = now - FORGET_AFTER
        conn.execute(delete(DAEMON).where(DAEMON.c.identity != identity, or_(
            DAEMON.c.stopped_at < forget,
            and_(DAEMON.c.stopped_at.is_(None), DAEMON.c.heartbeat_at < forget))))
        live = _count_live(conn, now)
    return Registration(identity, replaced, released, live)


def heartbeat(engine: Engine, identity: str, *, now: datetime, lease_seconds: float,
              polls_total: int, polls_last_minute: int, host: str | None = None,
              pid: int | None = None) -> Heartbeat:
    """Say ``identity`` lives and renew its leases to ``now + lease_seconds``; how many, and
    how many daemons are live.

    With ``host`` and ``pid`` (the registered ones), a row another process has registered
    since (this one missed its heartbeats for longer than its lease: frozen, cut off) is left
    alone, and so are the leases: ``owned`` is False.
    """
    require_utc(now, "now")
    mine = [DAEMON.c.identity == identity]
    if host is not None and pid is not None:
        mine += [DAEMON.c.host == host, DAEMON.c.pid == pid]
    with store_errors("sending the heartbeat"), engine.begin() as conn:
        beat = conn.execute(update(DAEMON).where(*mine).values(
            heartbeat_at=now, polls_total=polls_total, polls_last_minute=polls_last_minute))
        if beat.rowcount == 0:
            return Heartbeat(0, _count_live(conn, now), owned=False)
        renewed: int = conn.execute(update(TARGET).where(
            TARGET.c.lease_owner == identity, TARGET.c.lease_expires_at.is_not(None)).values(
            lease_expires_at=now + timedelta(seconds=lease_seconds))).rowcount
        live = _count_live(conn, now)
    return Heartbeat(renewed, live)


def _count_live(conn: Connection, now: datetime) -> int:
    rows = conn.execute(select(DAEMON.c.heartbeat_at, DAEMON.c.lease_seconds)
                        .where(DAEMON.c.stopped_at.is_(None))).all()
    return sum(1 for r in rows if daemon_state(None, r.heartbeat_at, r.lease_seconds, now)
               == "live")


def mark_stopped(engine: Engine, identity: str, *, now: datetime, polls_total: int,
                 polls_last_minute: int) -> None:
    """Note a graceful stop of ``identity`` (with its final poll counts)."""
    require_utc(now, "now")
    with store_errors("marking this daemon stopped"), engine.begin() as conn:
        conn.execute(update(DAEMON).where(DAEMON.c.identity == identity).values(
            heartbeat_at=now, stopped_at=now, polls_total=polls_total,
            polls_last_minute=polls_last_minute))


def fleet_status(engine: Engine, now: datetime, *, overdue_after_seconds: float,
                 include_gone: bool = False, limit: int = 20) -> FleetStatus:
    """The daemons (live ones, or all with ``include_gone``) and the overdue targets at
    ``now``: active targets whose ``next_poll_at`` passed more than ``overdue_after_seconds``
    ago. One read-only transaction."""
    require_utc(now, "now")
    held = (select(TARGET.c.lease_owner, func.count().label("n"))
            .where(TARGET.c.lease_owner.is_not(None), TARGET.c.lease_expires_at >= now)
            .group_by(TARGET.c.lease_owner).subquery())
    late_before = now - timedelta(seconds=overdue_after_seconds)
    overdue_where = (TARGET.c.state == "active", TARGET.c.next_poll_at < late_before)
    with store_errors("reading the daemons' status"), read_only(engine) as conn:
        rows = conn.execute(
            select(DAEMON, func.coalesce(held.c.n, 0).label("held"))
            .outerjoin(held, held.c.lease_owner == DAEMON.c.identity)
            .order_by(DAEMON.c.identity)).all()
        active = conn.execute(select(func.count()).where(TARGET.c.state == "active")
                              .select_from(TARGET)).scalar_one()
        overdue = conn.execute(select(func.count()).where(*overdue_where)
                               .select_from(TARGET)).scalar_one()
        late = conn.execute(
            select(TARGET.c.account, TARGET.c.conference_id, TARGET.c.provider,
                   TARGET.c.next_poll_at, TARGET.c.lease_owner)
            .where(*overdue_where).order_by(TARGET.c.next_poll_at, TARGET.c.id)
            .limit(limit)).all()
    daemons = []
    for r in rows:
        state = daemon_state(r.stopped_at, r.heartbeat_at, r.lease_seconds, now)
        if state != "live" and not include_gone:
            continue
        daemons.append(DaemonStatus(
            identity=r.identity, host=r.host, pid=r.pid, state=state, started_at=r.started_at,
            heartbeat_at=r.heartbeat_at,
            heartbeat_age_seconds=max(0.0, (now - r.heartbeat_at).total_seconds()),
            stopped_at=r.stopped_at, lease_seconds=r.lease_seconds,
            targets_held=r.held if state != "stopped" else 0,
            polls_last_minute=r.polls_last_minute if state == "live" else 0,
            polls_total=r.polls_total))
    return FleetStatus(
        now=now, daemons=daemons, active_targets=active,
        overdue_after_seconds=overdue_after_seconds, overdue=overdue,
        overdue_targets=[OverdueTarget(t.account, t.conference_id, t.provider, t.next_poll_at,
                                       (now - t.next_poll_at).total_seconds(), t.lease_owner)
                         for t in late])
