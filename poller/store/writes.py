"""Writing one batch's history rows once its conferences have their keys.

:class:`HistoryWrites` collects, over the plans of one recorder batch
(``poller.store.batch``), the snapshots, status transitions, members and member events to
insert, and writes each kind with one executemany: snapshots close the previous current row
first; ``seq`` numbers continue from the highest stored one (read under the conference lock);
new members get their keys from ``RETURNING`` before their events are written.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, bindparam, insert, update

from poller.store.rows import ConferenceView, HistoryPlan, MemberView
from poller.store.schema import Base

if TYPE_CHECKING:
    from poller.store.batch import BatchWriter

SNAPSHOT: Table = Base.metadata.tables["conference_snapshot"]
TRANSITION: Table = Base.metadata.tables["status_transition"]
MEMBER: Table = Base.metadata.tables["member"]
MEMBER_EVENT: Table = Base.metadata.tables["member_event"]

Key = tuple[str, str]


class HistoryWrites:
    """History rows collected over a batch, written once the conference pks are known."""

    def __init__(self) -> None:
        self.snapshots: dict[Key, list[Any]] = defaultdict(list)
        self.transitions: dict[Key, list[Any]] = defaultdict(list)
        self.events: dict[Key, list[Any]] = defaultdict(list)
        self.changed_members: dict[Key, set[str]] = defaultdict(set)

    def add(self, key: Key, plan: HistoryPlan) -> None:
        """Collect what ``plan`` inserts for the conference ``key``."""
        if plan.snapshot is not None:
            self.snapshots[key].append(plan.snapshot)
        self.transitions[key].extend(plan.transitions)
        self.events[key].extend(plan.member_events)
        self.changed_members[key] |= plan.changed_members

    def write(self, writer: BatchWriter, pks: Mapping[Key, int],
              original: Mapping[Key, ConferenceView],
              members: Mapping[Key, Mapping[str, MemberView]]) -> None:
        """Write snapshots, transitions, members and member events of the batch."""
        conn = writer.conn
        closes, snapshots = [], []
        for key, planned in sorted(self.snapshots.items()):
            if key in original:
                closes.append({"b_pk": pks[key], "b_valid_to": planned[0].valid_from})
            for i, snap in enumerate(planned):
                valid_to = planned[i + 1].valid_from if i + 1 < len(planned) else None
                snapshots.append({"conference_pk": pks[key], "valid_from": snap.valid_from,
                                  "valid_to": valid_to, "content_hash": snap.content_hash,
                                  "status": snap.status, "member_count": snap.member_count,
                                  "state": snap.state, "raw": snap.raw,
                                  "warnings": list(snap.warnings) or None})
        if closes:
            conn.execute(update(SNAPSHOT).where(SNAPSHOT.c.conference_pk == bindparam("b_pk"),
                                                SNAPSHOT.c.valid_to.is_(None))
                         .values(valid_to=bindparam("b_valid_to")), closes)
            writer.updated["conference_snapshot"] += len(closes)
        self._insert(writer, SNAPSHOT, snapshots)

        with_transitions = [k for k, v in self.transitions.items() if v]
        base = writer.max_seq(TRANSITION, "conference_pk",
                               [pks[k] for k in with_transitions if k in original])
        rows = []
        for key in sorted(with_transitions):
            start = base.get(pks[key], 0)
            for seq, t in enumerate(self.transitions[key], start=start + 1):
                rows.append({"conference_pk": pks[key], "seq": seq, "from_status": t.from_status,
                             "to_status": t.to_status,
                             "from_provider_status": t.from_provider_status,
                             "to_provider_status": t.to_provider_status,
                             "observed_at": t.observed_at,
                             "previous_observed_at": t.previous_observed_at,
                             "provider_changed_at": t.provider_changed_at,
                             "end_reason": t.end_reason})
        self._insert(writer, TRANSITION, rows)
        writer.transitions_by_status.update(str(row["to_status"]) for row in rows)
        member_pks = self._write_members(writer, pks, members)
        self._write_events(writer, pks, member_pks)

    def _write_members(
        self, writer: BatchWriter, pks: Mapping[Key, int],
        members: Mapping[Key, Mapping[str, MemberView]],
    ) -> dict[Key, dict[str, int]]:
        """Insert new members, update changed ones; return member pks by key and member_id."""
        member_pks: dict[Key, dict[str, int]] = defaultdict(dict)
        new_keys, new_rows, updates = [], [], []
        for key, ids in sorted(self.changed_members.items()):
            for member_id in sorted(ids):
                view = members[key][member_id]
                if view.pk is None:
                    new_keys.append((key, member_id))
                    new_rows.append(view.values() | {"conference_pk": pks[key]})
                else:
                    member_pks[key][member_id] = view.pk
                    updates.append(view.values() | {"b_pk": view.pk})
        if new_rows:
            stmt = insert(MEMBER).returning(MEMBER.c.id, sort_by_parameter_order=True)
            for (key, member_id), pk in zip(new_keys, writer.conn.execute(stmt, new_rows).scalars(),
                                            strict=True):
                member_pks[key][member_id] = pk
            writer.inserted["member"] += len(new_rows)
        writer.update_many(MEMBER, updates)
        for key, views in members.items():
            for member_id, view in views.items():
                if view.pk is not None:
                    member_pks[key].setdefault(member_id, view.pk)
        return member_pks

    def _write_events(self, writer: BatchWriter, pks: Mapping[Key, int],
                      member_pks: Mapping[Key, Mapping[str, int]]) -> None:
        events = [(key, e) for key, planned in sorted(self.events.items()) for e in planned]
        if not events:
            return
        base = writer.max_seq(MEMBER_EVENT, "member_pk",
                               [member_pks[key][e.member_id] for key, e in events])
        rows = []
        for key, e in events:
            member_pk = member_pks[key][e.member_id]
            base[member_pk] = seq = base.get(member_pk, 0) + 1
            rows.append({"member_pk": member_pk, "conference_pk": pks[key], "seq": seq,
                         "kind": e.kind, "observed_at": e.observed_at,
                         "previous_observed_at": e.previous_observed_at,
                         "provider_changed_at": e.provider_changed_at, "detail": e.detail})
        self._insert(writer, MEMBER_EVENT, rows)
        writer.member_events_by_kind.update(str(row["kind"]) for row in rows)

    @staticmethod
    def _insert(writer: BatchWriter, table: Table, rows: list[dict[str, Any]]) -> None:
        if rows:
            writer.conn.execute(insert(table), rows)
            writer.inserted[table.name] += len(rows)
