"""Retention: ``prune`` deletes old poll errors and clears old raw payloads, nothing else.

History is recorded through the real ``Recorder``; pruning runs through the library function
and through the real ``poller prune`` command, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from factories import failure, telnyx_member, telnyx_observation, telnyx_target
from sqlalchemy import Engine, text

from poller.cli import cli
from poller.model import PollResult
from poller.store.database import make_engine
from poller.store.recorder import Recorder
from poller.store.retention import PruneStats, prune

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

BUSY = telnyx_target("conf-busy")
"""A conference with four states: three closed snapshots and a current one."""
QUIET = telnyx_target("conf-quiet")
"""A conference seen once long ago: its only snapshot is current and keeps its payload."""


def days_ago(days: float, now: datetime = NOW) -> datetime:
    """``days`` before ``now``."""
    return now - timedelta(days=days)


def history(now: datetime) -> list[PollResult]:
    """Snapshots closing 15, 5 and 1 days before ``now``; errors 40, 31, 29 and 0.75 days old."""
    members = [telnyx_member("m1")]
    return [
        telnyx_observation(at=days_ago(20, now), target=BUSY, created_at=None, status="init"),
        telnyx_observation(at=days_ago(15, now), target=BUSY, created_at=None, members=members),
        telnyx_observation(at=days_ago(5, now), target=BUSY, created_at=None,
                           members=[*members, telnyx_member("m2")]),
        telnyx_observation(at=days_ago(1, now), target=BUSY, created_at=None, members=members),
        telnyx_observation(at=days_ago(60, now), target=QUIET, created_at=None),
        failure(at=days_ago(40, now), target=BUSY, kind="timeout", http_status=None),
        failure(at=days_ago(31, now), target=QUIET),
        failure(at=days_ago(29, now), target=QUIET),
        failure(at=days_ago(0.75, now), target=BUSY, kind="server_error", http_status=500),
    ]


def recorded(url: str, now: datetime) -> Engine:
    """An engine on ``url`` after recording :func:`history`."""
    engine = make_engine(url)
    Recorder(engine).record(history(now))
    return engine


@pytest.fixture
def engine_with_history(database_url: str) -> Iterator[Engine]:
    """The history of :func:`history` around the fixed ``NOW``."""
    engine = recorded(database_url, NOW)
    yield engine
    engine.dispose()


def error_times(engine: Engine) -> list[datetime]:
    """``occurred_at`` of the remaining poll errors, oldest first."""
    with engine.connect() as conn:
        values = conn.execute(text("SELECT occurred_at FROM poll_error ORDER BY occurred_at"))
        return [v if isinstance(v, datetime) else datetime.fromisoformat(v).replace(tzinfo=UTC)
                for (v,) in values]


def raw_cleared(engine: Engine) -> list[tuple[str, int]]:
    """(conference_id, snapshot number) of snapshots whose raw payload is SQL NULL."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT c.conference_id, s.valid_from, s.raw IS NULL, s.state IS NULL"
            " FROM conference_snapshot s JOIN conference c ON c.id = s.conference_pk"
            " ORDER BY c.conference_id, s.valid_from")).all()
    assert not any(state_null for *_, state_null in rows), "normalised state must stay"
    numbers: dict[str, int] = {}
    cleared = []
    for conference_id, _, raw_null, _ in rows:
        numbers[conference_id] = numbers.get(conference_id, 0) + 1
        if raw_null:
            cleared.append((conference_id, numbers[conference_id]))
    return cleared


def test_prune_deletes_old_errors_and_clears_old_payloads(engine_with_history: Engine) -> None:
    """Errors older than the setting go; raw payloads of snapshots closed before it are NULL."""
    stats = prune(engine_with_history, poll_error_days=30, raw_payload_days=10, now=NOW)
    assert stats == PruneStats(poll_errors_deleted=2, raw_payloads_cleared=1,
                               poll_error_cutoff=days_ago(30), raw_payload_cutoff=days_ago(10))
    assert error_times(engine_with_history) == [days_ago(29), days_ago(0.75)]
    # conf-busy's first snapshot closed 15 days ago; its second closed only 5 days ago.
    # conf-quiet's only snapshot is 60 days old but current: it keeps its payload.
    assert raw_cleared(engine_with_history) == [("conf-busy", 1)]


def test_prune_raw_payloads_by_close_time(engine_with_history: Engine) -> None:
    """A shorter setting clears the snapshots closed since; the current one always stays."""
    prune(engine_with_history, poll_error_days=365, raw_payload_days=10, now=NOW)
    # conf-busy snapshot 1 closed at -15 d, 2 at -5 d, 3 at -1 d; 4 is current.
    stats = prune(engine_with_history, poll_error_days=365, raw_payload_days=0.5, now=NOW)
    assert stats.raw_payloads_cleared == 2
    assert raw_cleared(engine_with_history) == [("conf-busy", 1), ("conf-busy", 2),
                                                ("conf-busy", 3)]


def test_prune_in_small_batches(engine_with_history: Engine) -> None:
    """A batch size of one row gives the same result as one big batch."""
    stats = prune(engine_with_history, poll_error_days=0.5, raw_payload_days=0, now=NOW,
                  batch_size=1)
    assert (stats.poll_errors_deleted, stats.raw_payloads_cleared) == (4, 3)
    assert error_times(engine_with_history) == []
    assert raw_cleared(engine_with_history) == [("conf-busy", 1), ("conf-busy", 2),
                                                ("conf-busy", 3)]


def test_prune_again_does_nothing(engine_with_history: Engine) -> None:
    """A second run with the same settings finds nothing left to do."""
    prune(engine_with_history, poll_error_days=30, raw_payload_days=10, now=NOW)
    again = prune(engine_with_history, poll_error_days=30, raw_payload_days=10, now=NOW)
    assert (again.poll_errors_deleted, again.raw_payloads_cleared) == (0, 0)


def test_prune_without_raw_setting_keeps_payloads(engine_with_history: Engine) -> None:
    """With no raw-payload setting every payload stays, and the stats say it was off."""
    stats = prune(engine_with_history, poll_error_days=30, raw_payload_days=None, now=NOW)
    assert (stats.raw_payloads_cleared, stats.raw_payload_cutoff) == (0, None)
    assert raw_cleared(engine_with_history) == []


def test_prune_keeps_history(engine_with_history: Engine) -> None:
    """Pruning touches no conference, member, event or transition row."""
    tables = ["conference", "conference_snapshot", "status_transition", "member",
              "member_event", "poll_target"]

    def counts() -> list[int]:
        with engine_with_history.connect() as conn:
            return [conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in tables]

    before = counts()
    prune(engine_with_history, poll_error_days=0, raw_payload_days=0, now=NOW)
    assert counts() == before


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"poll_error_days": -1, "raw_payload_days": None, "now": NOW}, "poll_error_days"),
    ({"poll_error_days": 1, "raw_payload_days": -1, "now": NOW}, "raw_payload_days"),
    ({"poll_error_days": 1, "raw_payload_days": None, "now": NOW, "batch_size": 0},
     "batch_size"),
    ({"poll_error_days": 1, "raw_payload_days": None, "now": NOW.replace(tzinfo=None)}, "now"),
])
def test_prune_refuses_bad_arguments(engine: Engine, kwargs: dict[str, object],
                                     message: str) -> None:
    """Negative ages, an empty batch and a naive clock are refused before any change."""
    with pytest.raises(ValueError, match=message):
        prune(engine, **kwargs)  # type: ignore[arg-type]


def test_cli_prune(database_url: str) -> None:
    """``poller prune`` prunes the configured database and says what it did."""
    now = datetime.now(UTC)
    engine = recorded(database_url, now)
    try:
        result = CliRunner().invoke(
            cli, ["prune", "--poll-error-days", "30", "--raw-payload-days", "10"],
            env={"POLLER_DATABASE_URL": database_url},
        )
        assert result.exit_code == 0, result.output
        assert "deleted 2 poll_error rows" in result.output
        assert "cleared 1 raw payloads" in result.output
        assert len(error_times(engine)) == 2
        assert raw_cleared(engine) == [("conf-busy", 1)]
    finally:
        engine.dispose()


def test_cli_prune_defaults_keep_payloads(database_url: str) -> None:
    """Without options ``poller prune`` keeps 30 days of errors and every raw payload."""
    engine = recorded(database_url, datetime.now(UTC))
    try:
        result = CliRunner().invoke(cli, ["prune"], env={"POLLER_DATABASE_URL": database_url})
        assert result.exit_code == 0, result.output
        assert "deleted 2 poll_error rows" in result.output
        assert "raw payloads kept" in result.output
        assert raw_cleared(engine) == []
    finally:
        engine.dispose()


def test_cli_prune_rejects_negative_days() -> None:
    """A negative age is a usage error (exit 2) naming the option."""
    result = CliRunner().invoke(cli, ["prune", "--poll-error-days", "-1"],
                                env={"POLLER_DATABASE_URL": "sqlite:///unused.db"})
    assert result.exit_code == 2
    assert "--poll-error-days" in result.output


def test_old_provider_events_with_an_outcome_are_deleted(engine: Engine) -> None:
    """``webhook_event_days``: events received before the cutoff go once they have an outcome;
    a pending one stays however old, and so do recent ones."""
    from poller.model import EventKind, Provider, ProviderEvent
    from poller.store.inbox import store_event, stored_events

    def event(key: str, days: float, kind: EventKind | None) -> None:
        store_event(engine, "bw", ProviderEvent(
            provider=Provider.BANDWIDTH, key=key, event_type="conferenceMemberJoin", kind=kind,
            conference_id="conf-1", call_id="c-1", occurred_at=days_ago(days)), "{}",
            days_ago(days))

    event("old-ignored", 40, None)  # ignored at once: an outcome
    event("old-pending", 40, EventKind.MEMBER_JOINED)
    event("new-ignored", 2, None)
    stats = prune(engine, poll_error_days=30, raw_payload_days=None, now=NOW,
                  webhook_event_days=30)
    assert stats.webhook_events_deleted == 1
    assert sorted(e.event_key for e in stored_events(engine)) == ["new-ignored", "old-pending"]
    assert prune(engine, poll_error_days=30, raw_payload_days=None,
                 now=NOW).webhook_events_deleted == 0
