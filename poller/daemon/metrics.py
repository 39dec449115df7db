"""Prometheus metrics of the poller daemon, on a registry of their own.

:class:`PollerMetrics` owns a dedicated ``CollectorRegistry`` (never prometheus_client's global
one), so each daemon, and each test, has its own counters. Three kinds of callers feed it:

* the tick, once per tick, through :func:`observe_tick` (poll outcomes, transitions, member
  events, retirements, the last successful tick);
* the provider layer and the poller, once per event, through the protocols they declare
  (``poller.providers.http.ResponseObserver``: HTTP responses by status class;
  ``poller.polling.report.PollObserver``: poll latency and lateness, rate-limit waits). The
  protocols keep prometheus_client out of the code that calls them; ``observer=None`` means
  "not measured";
* the ``/metrics`` endpoint, which refreshes the targets-by-state gauge with
  :func:`poller.store.targets.count_targets`, one ``GROUP BY`` on ``poll_target`` per scrape.

Label values are bounded on purpose: ``provider`` (telnyx, bandwidth), ``outcome`` (ok,
unchanged, a ``poll_error.kind``), ``status_class``, ``to_status``, ``kind``, ``state`` and
``reason``. No label carries a conference ID or an account name: those are unbounded and belong
in the database and the logs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from poller.model import utc_now
from poller.polling.report import TickReport

Clock = Callable[[], datetime]
"""Returns the current aware-UTC time."""

UNKNOWN: Final = "unknown"
"""Label value for counts the caller could not break down (see :func:`observe_tick`)."""

TARGET_STATES: Final[tuple[tuple[str, str], ...]] = (
    ("active", ""), ("retired", "completed"), ("retired", "gone"),
    ("retired", "never_found"), ("retired", "removed"),
)
"""``(state, reason)`` pairs always exported by ``poller_targets`` (0 when there are none)."""

LEASE_EVENTS: Final = ("taken", "renewed", "expired")
"""``poller_leases`` events, always exported (0 until they happen)."""

SPOOL_EVENTS: Final = ("spooled", "replayed", "dropped")
"""``poller_spool_results`` events, always exported (0 until they happen)."""

POLL_SECONDS_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Poll latency buckets: provider APIs answer in tens of ms; timeouts sit at tens of seconds."""
LATENESS_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0,
                           30.0, 60.0, 300.0)
"""Lateness buckets: a poller keeping up starts polls within a tick period (≤ 1 s) of due."""


def status_class(status_code: int | None) -> str:
    """``2xx`` … ``5xx`` for a status code, ``none`` when there was no response."""
    if status_code is None or not 100 <= status_code <= 599:
        return "none"
    return f"{status_code // 100}xx"


class PollerMetrics:
    """Every poller metric, registered on ``registry`` (default: a new, private registry).

    The attributes are the prometheus_client metric objects (see ``docs/operations.md`` for
    names and labels); prefer the methods and :func:`observe_tick` over touching them.
    """

    def __init__(self, registry: CollectorRegistry | None = None, *,
                 clock: Clock = utc_now) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.clock = clock
        self._last_successful_tick: datetime | None = None
        self._target_labels: set[tuple[str, str]] = set(TARGET_STATES)
        self._children: dict[tuple[object, ...], Any] = {}
        """Label children of the per-poll and per-request metrics, looked up once each."""
        r = self.registry
        self.polls = Counter("poller_polls", "Polls by provider and outcome (ok: changed or "
                             "first seen; unchanged; or the poll_error kind).",
                             ["provider", "outcome"], registry=r)
        self.poll_seconds = Histogram("poller_poll_duration_seconds",
                                      "Time one poll took, including retries inside the client.",
                                      ["provider"], buckets=POLL_SECONDS_BUCKETS, registry=r)
        self.poll_lateness = Histogram("poller_poll_lateness_seconds",
                                       "How long after its due time (next_poll_at) a poll "
                                       "started: the schedule lag.", ["provider"],
                                       buckets=LATENESS_BUCKETS, registry=r)
        self.http_responses = Counter("poller_http_responses",
                                      "Provider HTTP responses by status class (none: no "
                                      "response).", ["provider", "status_class"], registry=r)
        self.rate_limit_waits = Counter("poller_rate_limit_waits",
                                        "Requests that waited for their account's token bucket.",
                                        ["provider"], registry=r)
        self.rate_limit_wait_seconds = Counter("poller_rate_limit_wait_seconds",
                                               "Seconds spent waiting for token buckets.",
                                               ["provider"], registry=r)
        self.transitions = Counter("poller_status_transitions",
                                   "Conference status transitions recorded, by new status.",
                                   ["to_status"], registry=r)
        self.member_events = Counter("poller_member_events", "Member events recorded, by kind.",
                                     ["kind"], registry=r)
        self.retirements = Counter("poller_targets_retired",
                                   "Targets retired by a tick, by reason.", ["reason"],
                                   registry=r)
        self.claimed = Counter("poller_targets_claimed",
                               "Targets leased by ticks (leases taken).", registry=r)
        self.leases = Counter("poller_leases",
                              "Target leases by event: taken (claimed by a tick), renewed (by "
                              "a heartbeat, for polls still running), expired (taken over "
                              "from a daemon that died or stalled holding them).",
                              ["event"], registry=r)
        self.deferred = Counter("poller_polls_deferred",
                                "Claimed targets handed back unpolled (paused account, no "
                                "token).", registry=r)
        self.internal_errors = Counter("poller_internal_errors",
                                       "Our own bugs met and carried on from, by where (poll, "
                                       "schedule, list polling, discovery, prune, reload, "
                                       "heartbeat, tick, client).", ["where"], registry=r)
        self.spool_results = Counter("poller_spool_results",
                                     "Poll results the store could not take: spooled (kept on "
                                     "disk), replayed (recorded once it was back), dropped "
                                     "(the spool was full or the disk refused).", ["event"],
                                     registry=r)
        self.spool_bytes = Gauge("poller_spool_bytes",
                                 "Bytes of results waiting in the spool.", registry=r)
        self.spool_waiting = Gauge("poller_spool_waiting_results",
                                   "Results waiting in the spool for the store.", registry=r)
        self.poll_slots = Gauge("poller_poll_slots",
                                "Poll slots: limit (polls that may be in flight at once; "
                                "moves with concurrency = \"auto\"), in_use (polls in flight), "
                                "waiting (polls waiting for a slot).", ["state"], registry=r)
        self.webhook_events = Counter("poller_webhook_events",
                                      "Provider events received and stored, by provider and "
                                      "result (stored: new; duplicate: a repeated delivery).",
                                      ["provider", "result"], registry=r)
        self.webhook_rejected = Counter("poller_webhook_rejected",
                                        "Webhook requests refused (nothing stored), by provider "
                                        "and reason.", ["provider", "reason"], registry=r)
        self.webhook_outcomes = Counter("poller_webhook_outcomes",
                                        "Stored provider events given an outcome by "
                                        "reconciliation: applied, conflict (contradicts what "
                                        "polling saw: not applied), unmatched.",
                                        ["provider", "outcome"], registry=r)
        self.webhook_stays = Counter("poller_webhook_stays",
                                     "Member stays no poll saw, recorded from their join and "
                                     "leave events.", registry=r)
        self.ticks = Counter("poller_ticks", "Ticks run, by result (ok, store_error).",
                             ["result"], registry=r)
        self.targets = Gauge("poller_targets", "Poll targets by state and retired reason "
                             "(read from the database at scrape time).", ["state", "reason"],
                             registry=r)
        self.last_successful_tick = Gauge("poller_last_successful_tick_timestamp_seconds",
                                          "Unix time the last tick that recorded its results "
                                          "finished.", registry=r)
        for result in ("ok", "store_error"):
            self.ticks.labels(result)
        for state, reason in TARGET_STATES:
            self.targets.labels(state, reason)
        for state in ("limit", "in_use", "waiting"):
            self.poll_slots.labels(state)
        for event in LEASE_EVENTS:
            self.leases.labels(event)
        for event in SPOOL_EVENTS:
            self.spool_results.labels(event)
        for provider in ("telnyx", "bandwidth"):
            for result in ("stored", "duplicate"):
                self.webhook_events.labels(provider, result)
            for outcome in ("applied", "conflict", "unmatched"):
                self.webhook_outcomes.labels(provider, outcome)

    # -- ResponseObserver and PollObserver --------------------------------------------------

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, resolved once (it takes a lock and a dict look-up)."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe_poll_seconds(self, provider: str, seconds: float) -> None:
        """One poll of ``provider`` took ``seconds``."""
        self._child(self.poll_seconds, provider).observe(max(seconds, 0.0))

    def observe_poll_lateness(self, provider: str, seconds: float) -> None:
        """A poll of ``provider`` started ``seconds`` after it was due."""
        self._child(self.poll_lateness, provider).observe(max(seconds, 0.0))

    def observe_http_response(self, provider: str, status_code: int | None) -> None:
        """One HTTP request to ``provider`` got ``status_code`` (``None``: no response)."""
        self._child(self.http_responses, provider, status_class(status_code)).inc()

    def observe_internal_error(self, where: str) -> None:
        """One of our own bugs was met in ``where`` (and carried on from)."""
        self.internal_errors.labels(where).inc()

    def observe_webhook(self, provider: str, *, stored: bool | None = None,
                        rejected: str | None = None) -> None:
        """One webhook request: stored (``True``: new, ``False``: a repeat) or ``rejected``
        for the reason given."""
        if rejected is not None:
            self.webhook_rejected.labels(provider, rejected).inc()
        else:
            self.webhook_events.labels(provider, "stored" if stored else "duplicate").inc()

    def observe_rate_limit_wait(self, provider: str, seconds: float) -> None:
        """A request to ``provider`` waited ``seconds`` for a token."""
        self.rate_limit_waits.labels(provider).inc()
        self.rate_limit_wait_seconds.labels(provider).inc(max(seconds, 0.0))

    # -- state -----------------------------------------------------------------------------

    @property
    def last_successful_tick_at(self) -> datetime | None:
        """When the last tick that recorded its results finished (``None``: none yet)."""
        return self._last_successful_tick

    def tick_succeeded(self, at: datetime | None = None) -> None:
        """Note a tick that recorded its results at ``at`` (default: the clock)."""
        at = at or self.clock()
        self._last_successful_tick = at
        self.last_successful_tick.set(at.timestamp())

    def set_poll_slots(self, limit: int, in_use: int, waiting: int) -> None:
        """Set ``poller_poll_slots`` (``poller.polling.slots.Slots``: its limit, the slots held
        and the polls waiting)."""
        self.poll_slots.labels("limit").set(limit)
        self.poll_slots.labels("in_use").set(in_use)
        self.poll_slots.labels("waiting").set(waiting)

    def leases_renewed(self, count: int) -> None:
        """A heartbeat renewed ``count`` leases."""
        _add(self.leases.labels("renewed"), count)

    def set_targets(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Set ``poller_targets`` to ``counts`` (``(state, reason)`` → n); others go to 0.

        Label sets once seen are zeroed rather than removed, so a scrape never sees a series
        vanish and come back.
        """
        self._target_labels.update(counts)
        for labels in self._target_labels:
            self.targets.labels(*labels).set(counts.get(labels, 0))


def observe_tick(metrics: PollerMetrics, report: TickReport, *,
                 by_provider: Mapping[str, TickReport] | None = None,
                 transitions_by_status: Mapping[str, int] | None = None,
                 member_events_by_kind: Mapping[str, int] | None = None,
                 at: datetime | None = None) -> None:
    """Add one tick's ``report`` to the counters; note the tick as successful if it recorded.

    ``TickReport`` counts polls, transitions and member events without saying which provider,
    status or kind they were; the keyword arguments supply those breakdowns:

    * ``by_provider``: one report per provider (``provider`` → its polls' report) for
      ``poller_polls``; without it the polls are counted under ``provider="unknown"``;
    * ``transitions_by_status`` (``to_status`` → n) and ``member_events_by_kind`` (``kind`` →
      n); without them, ``report.transitions`` / ``report.member_events`` go under ``unknown``.

    A tick with a ``store_error`` counts as ``poller_ticks{result="store_error"}`` and does not
    move the last-successful-tick time; its polls still count (they happened). A tick skipped
    while backing off from an unavailable store counts nothing.
    """
    if report.skipped:
        return
    for provider, part in (by_provider or {UNKNOWN: report}).items():
        _add(metrics.polls.labels(provider, "ok"), part.ok - part.unchanged)
        _add(metrics.polls.labels(provider, "unchanged"), part.unchanged)
        for kind, n in part.failed.items():
            _add(metrics.polls.labels(provider, kind), n)
    for status, n in (transitions_by_status or {UNKNOWN: report.transitions}).items():
        _add(metrics.transitions.labels(status), n)
    for kind, n in (member_events_by_kind or {UNKNOWN: report.member_events}).items():
        _add(metrics.member_events.labels(kind), n)
    for reason, n in report.retired.items():
        _add(metrics.retirements.labels(reason), n)
    _add(metrics.claimed, report.claimed)
    _add(metrics.leases.labels("taken"), report.claimed)
    _add(metrics.leases.labels("expired"), report.taken_over)
    _add(metrics.deferred, report.deferred)
    _add(metrics.spool_results.labels("spooled"), report.spooled)
    _add(metrics.spool_results.labels("replayed"), report.spool_replayed)
    _add(metrics.spool_results.labels("dropped"), report.spool_dropped)
    if report.store_error is None:
        metrics.ticks.labels("ok").inc()
        metrics.tick_succeeded(at)
    else:
        metrics.ticks.labels("store_error").inc()


def _add(counter: Counter, amount: int) -> None:
    """Increment ``counter`` by ``amount``, ignoring zero (and negative: never decrement)."""
    if amount > 0:
        counter.inc(amount)
