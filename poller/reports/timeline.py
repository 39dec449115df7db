"""A conference's life as something to draw: status bands and member lanes, with honest times.

:func:`build_timeline` turns what the store read (``poller.store.timeline.TimelineFacts``) into
a :class:`Timeline`; ``poller.reports.timeline_svg`` draws it. The one rule that matters is how
well each time is known, a :class:`Moment`:

* **exact** where the provider gave the time (``provider_changed_at``: Telnyx ``created_at`` /
  ``updated_at``, Bandwidth ``completedTime``, a webhook's ``occurred_at``, a detail record):
  drawn as a sharp edge;
* otherwise a **bracket**: the change happened after the last poll that saw the old state and
  no later than the first poll that saw the new one, ``(previous_observed_at, observed_at]``,
  drawn hatched. A change seen by the very first poll of a conference has no previous poll: its
  bracket reaches back to the conference's creation (or is only that poll, if that is unknown).

A member closed by its conference's completion left when the conference completed, so its end
is exactly as well known as the completion (exact only from the provider's own time). Mute,
hold and coaching spans use each event's best estimate, ``COALESCE(provider_changed_at,
observed_at)``, as the ``member_session`` view does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from poller.store.detail_records import EXACT_SOURCES
from poller.store.timeline import (
    ConferenceFacts,
    EventFacts,
    MemberFacts,
    TimelineFacts,
    TransitionFacts,
)

PLAUSIBLE = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
"""Times outside these years are a provider's glitch (``docs/schema.md``, warnings)."""


@dataclass(frozen=True, slots=True)
class Moment:
    """When something happened: exactly (``earliest == latest``, the provider's time) or
    somewhere in the bracket ``(earliest, latest]`` between two polls."""

    earliest: datetime
    latest: datetime
    exact: bool

    @classmethod
    def at(cls, moment: datetime) -> Moment:
        """A time the provider gave."""
        return cls(moment, moment, exact=True)

    @classmethod
    def between(cls, earliest: datetime | None, latest: datetime) -> Moment:
        """A bracket ending at the poll that saw the change (``earliest`` unknown: that poll)."""
        start = latest if earliest is None or earliest > latest else earliest
        return cls(start, latest, exact=False)

    @property
    def width_seconds(self) -> float:
        """How wide the bracket is (0 for an exact time)."""
        return (self.latest - self.earliest).total_seconds()


@dataclass(frozen=True, slots=True)
class StatusBand:
    """One status of the conference, from the transition into it to the next one."""

    seq: int
    status: str
    start: Moment
    end: Moment | None
    """The next transition; ``None``: still in this status as of the last poll (or final)."""
    end_reason: str | None


@dataclass(frozen=True, slots=True)
class Span:
    """A stretch of a stay spent muted, on hold or coaching (best-estimate times)."""

    kind: str
    """``muted``, ``on_hold`` or ``coaching``."""
    start: datetime
    end: datetime | None
    """``None``: still so at the end of the stay."""


@dataclass(frozen=True, slots=True)
class Stay:
    """A member's time in the conference, from a join (or rejoin) to the next leave."""

    joined: Moment
    left: Moment | None
    """``None``: still present as of the last poll."""
    left_source: str | None
    spans: tuple[Span, ...] = ()


@dataclass(frozen=True, slots=True)
class Lane:
    """One member: its stays in order."""

    member_id: str
    call_control_id: str | None
    stays: tuple[Stay, ...]


@dataclass(frozen=True, slots=True)
class Timeline:
    """Everything a picture of one conference shows."""

    conference: ConferenceFacts
    bands: tuple[StatusBand, ...]
    lanes: tuple[Lane, ...]
    start: datetime
    """The earliest moment shown."""
    end: datetime
    """The latest moment shown: completion, the last poll, or the last thing recorded."""


def build_timeline(facts: TimelineFacts) -> Timeline:
    """The drawable timeline of one conference."""
    conference = facts.conference
    opened = conference.created_at
    bands = _bands(facts.transitions, opened)
    completion = next((b.start for b in reversed(bands) if b.status == "completed"), None)
    lanes = tuple(_lane(member, opened, completion) for member in facts.members)
    moments = [m for band in bands for m in (band.start, band.end) if m is not None]
    moments += [m for lane in lanes for stay in lane.stays
                for m in (stay.joined, stay.left) if m is not None]
    known = [t for m in moments for t in (m.earliest, m.latest)]
    known += [t for t in (opened, conference.completed_at, conference.last_observed_at,
                          conference.gone_at, conference.first_observed_at) if t is not None]
    known += [s.start for lane in lanes for stay in lane.stays for s in stay.spans]
    # An implausible provider time (kept with a warning: 1970, 9999) must not stretch the
    # scale over decades; shapes there are drawn at the edge. Poll times are always plausible.
    plausible = [t for t in known if PLAUSIBLE[0] <= t < PLAUSIBLE[1]]
    plausible = plausible or [conference.first_observed_at]
    start, end = min(plausible), max(plausible)
    return Timeline(conference=conference, bands=bands, lanes=lanes, start=start, end=end)


def _transition_moment(transition: TransitionFacts, opened: datetime | None) -> Moment:
    if transition.provider_changed_at is not None:
        return Moment.at(transition.provider_changed_at)
    earliest = transition.previous_observed_at
    if earliest is None:  # the first sighting: it was so since creation at the latest
        earliest = opened
    return Moment.between(earliest, transition.observed_at)


def _bands(transitions: tuple[TransitionFacts, ...], opened: datetime | None
           ) -> tuple[StatusBand, ...]:
    moments = [_transition_moment(t, opened) for t in transitions]
    return tuple(
        StatusBand(seq=t.seq, status=t.to_status, start=moments[i],
                   end=moments[i + 1] if i + 1 < len(moments) else None,
                   end_reason=t.end_reason)
        for i, t in enumerate(transitions))


def _event_moment(event: EventFacts, opened: datetime | None) -> Moment:
    if event.provider_changed_at is not None:
        return Moment.at(event.provider_changed_at)
    earliest = event.previous_observed_at if event.previous_observed_at is not None else opened
    return Moment.between(earliest, event.observed_at)


def _best(event: EventFacts) -> datetime:
    return event.provider_changed_at or event.observed_at


_SPAN_EVENTS = {"muted": ("muted", True), "unmuted": ("muted", False),
                "held": ("on_hold", True), "unheld": ("on_hold", False)}


class _StayBuilder:
    """Follows one stay's events: where it began, and the spans open so far."""

    def __init__(self, joined: Moment, detail: dict[str, object] | None, at: datetime) -> None:
        self.joined = joined
        self.last = at
        """The best time of the stay's latest event."""
        self.open: dict[str, datetime] = {}
        self.spans: list[Span] = []
        detail = detail or {}
        for kind, key in (("muted", "muted"), ("on_hold", "on_hold")):
            if detail.get(key) is True:
                self.open[kind] = at
        if detail.get("coaching"):
            self.open["coaching"] = at

    def switch(self, kind: str, on: bool, at: datetime) -> None:
        self.last = max(self.last, at)
        if on and kind not in self.open:
            self.open[kind] = at
        elif not on and kind in self.open:
            self.spans.append(Span(kind, self.open.pop(kind), at))

    def close(self, left: Moment | None, source: str | None, at: datetime | None) -> Stay:
        for kind, began in sorted(self.open.items()):
            self.spans.append(Span(kind, began, at))
        return Stay(self.joined, left, source, tuple(sorted(self.spans, key=_span_key)))


def _span_key(span: Span) -> tuple[datetime, str]:
    return span.start, span.kind


def _lane(member: MemberFacts, opened: datetime | None, completion: Moment | None) -> Lane:
    stays: list[Stay] = []
    current: _StayBuilder | None = None
    for event in member.events:
        if event.kind in ("joined", "rejoined"):
            if current is not None:  # a rejoin without a recorded leave: it left before
                left = Moment.between(current.last, event.observed_at)
                stays.append(current.close(left, None, _best(event)))
            current = _StayBuilder(_event_moment(event, opened), event.detail, _best(event))
        elif current is None:
            continue
        elif event.kind == "left":
            source = str((event.detail or {}).get("source") or "") or None
            left = _event_moment(event, opened)
            if source == "conference_completed" and completion is not None:
                left = completion  # as well known as the completion itself
            stays.append(current.close(left, source, _best(event)))
            current = None
        elif event.kind in _SPAN_EVENTS:
            kind, on = _SPAN_EVENTS[event.kind]
            current.switch(kind, on, _best(event))
        elif event.kind == "coaching_changed":
            current.switch("coaching", bool((event.detail or {}).get("to")), _best(event))
    if current is not None:
        stays.append(current.close(None, None, None))
    if not stays and member.joined_at is not None:  # no events kept: the member row alone
        stays.append(_stay_from_row(member))
    return Lane(member.member_id, member.call_control_id, tuple(stays))


def _stay_from_row(member: MemberFacts) -> Stay:
    assert member.joined_at is not None
    joined = (Moment.at(member.joined_at) if member.joined_at_source in EXACT_SOURCES
              else Moment.between(None, member.joined_at))
    left = None
    if member.left_at is not None:
        left = (Moment.at(member.left_at) if member.left_at_source in EXACT_SOURCES
                else Moment.between(None, member.left_at))
    return Stay(joined, left, member.left_at_source)
