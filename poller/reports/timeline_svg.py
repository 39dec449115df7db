"""Drawing a :class:`~poller.reports.timeline.Timeline` as SVG: the head and the member lanes.

The picture has two parts, so that a page can keep the head in view while its lanes scroll:

* the **head**: title, legend, the time axis (UTC) and the conference's status bands, with each
  transition's time and end reason written above its edge where there is room (and always in
  its tooltip);
* the **lanes**: one per member, from join to leave, with muted, on-hold and coaching spans
  shaded in thirds of the bar, and the time axis again at the bottom.

A time known exactly is a sharp black edge (``class="exact"``); a time known only between two
polls is a hatched span over the bracket (``class="bracket"``, ``data-from`` / ``data-to``).
Every shape carries a ``<title>`` (the browser's tooltip) with its times to the millisecond.
All text from the database is escaped; nothing is fetched and no script runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from xml.sax.saxutils import escape as _escape
from xml.sax.saxutils import quoteattr

from poller.reports.timeline import Lane, Moment, StatusBand, Stay, Timeline

WIDTH = 1200
LABEL_WIDTH = 250
RIGHT_MARGIN = 30
LANE_HEIGHT = 20
BAR_TOP, BAR_HEIGHT = 4, 12
HEAD_HEIGHT = 130
AXIS_HEIGHT = 34
CHAR_WIDTH = 6.6
"""Roughly how wide one character of the 11 px labels is, to keep labels from colliding."""

STATUS_COLOURS = {"init": "#c6d4e1", "in_progress": "#86c98a", "completed": "#a3a3a3"}
OTHER_STATUS_COLOUR = "#e3cf86"
SPAN_COLOURS = {"muted": "#e8912d", "coaching": "#1aa39a", "on_hold": "#8e5bd6"}
SPAN_ROWS = {"muted": 0, "coaching": 1, "on_hold": 2}
STAY_COLOUR = "#9db9ea"

STYLE = """
text { font: 11px sans-serif; fill: #222; }
.title { font-size: 15px; font-weight: bold; }
.member { font-family: monospace; }
.tick { stroke: #e4e4e4; }
.axis { stroke: #888; }
.exact { stroke: #000; stroke-width: 2; }
.open { stroke: #3a6fc4; stroke-dasharray: 3 2; }
.first-seen { stroke: #000; stroke-width: 1.5; stroke-dasharray: 2 2; }
"""

DEFS = ("<defs><pattern id=\"hatch\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" "
        "patternTransform=\"rotate(45)\"><rect width=\"6\" height=\"6\" fill=\"#fff\" "
        "fill-opacity=\"0.6\"/><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"#333\" "
        "stroke-width=\"2.2\"/></pattern></defs>")


def when(moment: datetime) -> str:
    """A moment for tooltips: UTC to the millisecond."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def iso(moment: datetime) -> str:
    """A moment for ``data-`` attributes: ISO 8601 UTC."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def describe(moment: Moment, what: str) -> str:
    """The tooltip of one edge."""
    if moment.exact:
        return f"{what} at {when(moment.latest)} (the provider's time)"
    if moment.width_seconds == 0:
        return f"{what} by {when(moment.latest)} (first seen then)"
    return (f"{what} between {when(moment.earliest)} and {when(moment.latest)} "
            f"({moment.width_seconds:g} s between two polls)")


@dataclass(frozen=True, slots=True)
class Scale:
    """Maps moments to x positions across the chart."""

    start: datetime
    end: datetime

    @classmethod
    def of(cls, timeline: Timeline) -> Scale:
        span = max((timeline.end - timeline.start).total_seconds(), 60.0)
        try:
            return cls(timeline.start - timedelta(seconds=span * 0.02),
                       timeline.end + timedelta(seconds=span * 0.04))
        except OverflowError:  # at the ends of the calendar: no margin
            return cls(timeline.start, timeline.start + timedelta(seconds=span))

    def x(self, moment: datetime) -> float:
        whole = (self.end - self.start).total_seconds()
        share = min(max((moment - self.start).total_seconds() / whole, -0.01), 1.01)
        return round(LABEL_WIDTH + share * (WIDTH - LABEL_WIDTH - RIGHT_MARGIN), 2)

    @property
    def right(self) -> float:
        return float(WIDTH - RIGHT_MARGIN)


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def escape(text: str) -> str:
    """``text`` as XML character data."""
    return _escape(clean(text))


def clean(text: str) -> str:
    """``text`` without the characters XML 1.0 forbids (shown as U+FFFD): a name from the
    provider must not make the SVG unreadable."""
    return _NOT_XML.sub("\ufffd", text)


def _tag(name: str, attrs: dict[str, object], body: str = "") -> str:
    text = " ".join(f"{key.replace('_', '-')}={quoteattr(clean(str(value)))}"
                    for key, value in attrs.items() if value is not None)
    return f"<{name} {text}>{body}</{name}>" if body else f"<{name} {text}/>"


def _title(text: str) -> str:
    return f"<title>{escape(clean(text))}</title>"


def _rect(x0: float, x1: float, y: float, height: float, tooltip: str, **attrs: object) -> str:
    return _tag("rect", {"x": x0, "y": y, "width": round(max(x1 - x0, 0.0), 2),
                         "height": height, **attrs}, _title(tooltip))


def edge(moment: Moment, scale: Scale, y: float, height: float, what: str) -> list[str]:
    """A sharp line for an exact time, a hatched span for a bracket wider than zero."""
    if moment.exact:
        x = scale.x(moment.latest)
        return [_tag("line", {"class": "exact", "x1": x, "x2": x, "y1": y, "y2": y + height,
                              "data_at": iso(moment.latest)}, _title(describe(moment, what)))]
    if moment.width_seconds <= 0:  # first seen then, earlier unknown: a dashed edge
        x = scale.x(moment.latest)
        return [_tag("line", {"class": "first-seen", "x1": x, "x2": x, "y1": y,
                              "y2": y + height, "data_at": iso(moment.latest)},
                     _title(describe(moment, what)))]
    x0, x1 = scale.x(moment.earliest), scale.x(moment.latest)
    x0 = min(x0, x1 - 3)  # a bracket narrower than a pixel still shows
    return [_rect(x0, x1, y, height, describe(moment, what), fill="url(#hatch)",
                  stroke="#555", stroke_width=0.5, **{"class": "bracket",
                  "data_edge": what, "data_from": iso(moment.earliest),
                  "data_to": iso(moment.latest)})]


def _ticks(scale: Scale) -> list[datetime]:
    steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
             43200, 86400, 172800, 604800]
    whole = (scale.end - scale.start).total_seconds()
    step = next((s for s in steps if whole / s <= 10), max(steps[-1], int(whole / 10)))
    first = int(scale.start.timestamp() // step + 1) * step
    return [datetime.fromtimestamp(t, UTC) for t in range(first, int(scale.end.timestamp()) + 1,
                                                           step)]


def _tick_label(moment: datetime, first: bool, scale: Scale) -> str:
    long = (scale.end - scale.start) > timedelta(days=1)
    if first or long or (moment.hour, moment.minute, moment.second) == (0, 0, 0):
        return moment.strftime("%Y-%m-%d %H:%M" if long else "%m-%d %H:%M:%S")
    return moment.strftime("%H:%M:%S" if moment.second else "%H:%M")


def axis(scale: Scale, y: float, grid_to: float, *, labels_above: bool) -> list[str]:
    """Tick lines from ``y`` down to ``grid_to`` and their UTC labels."""
    out = [_tag("line", {"class": "axis", "x1": LABEL_WIDTH, "x2": scale.right, "y1": y,
                         "y2": y})]
    for index, moment in enumerate(_ticks(scale)):
        x = scale.x(moment)
        out.append(_tag("line", {"class": "tick", "x1": x, "x2": x, "y1": y, "y2": grid_to}))
        out.append(_tag("text", {"x": x, "y": y - 5 if labels_above else y + 14,
                                 "text-anchor": "middle"},
                        escape(_tick_label(moment, index == 0, scale))))
    return out


def status_colour(status: str) -> str:
    """The fill of a status band."""
    return STATUS_COLOURS.get(status, OTHER_STATUS_COLOUR)


def _band_label(band: StatusBand) -> str:
    label = f"→ {band.status} {band.start.latest.astimezone(UTC):%H:%M:%S}"
    return f"{label} ({band.end_reason})" if band.end_reason else label


def bands(timeline: Timeline, scale: Scale, y: float, height: float) -> list[str]:
    """The status bands, their edges, and labels placed where they do not collide."""
    out: list[str] = []
    as_of = timeline.conference.last_observed_at or timeline.end
    rows_free = [0.0, 0.0]  # the x each of the two label rows is free from
    for band in timeline.bands:
        x0 = scale.x(band.start.latest)
        if band.end is not None:
            x1 = scale.x(band.end.earliest)
        elif band.status == "completed":
            x1 = scale.right
        else:
            x1 = scale.x(max(as_of, band.start.latest))
        tooltip = f"{band.status}: {describe(band.start, 'began')}"
        if band.end_reason:
            tooltip += f"; end reason {band.end_reason}"
        out.append(_rect(x0, x1, y, height, tooltip, fill=status_colour(band.status),
                         **{"class": "band", "data_status": band.status,
                            "data_seq": band.seq}))
        out += edge(band.start, scale, y, height, band.status)
        label = _band_label(band)
        width = len(label) * CHAR_WIDTH
        for row, free in enumerate(rows_free):
            if x0 >= free:
                anchor_end = x0 + width > WIDTH
                out.append(_tag("text", {"x": x0, "y": y - 6 - 13 * (1 - row),
                                         "text-anchor": "end" if anchor_end else None,
                                         "class": "band-label"}, escape(label)))
                rows_free[row] = x0 + width + 8
                break
    return out


def stay_shapes(stay: Stay, scale: Scale, y: float, as_of: datetime) -> list[str]:
    """One stay: the bar, its shaded spans, and its two edges."""
    top = y + BAR_TOP
    start = stay.joined.latest
    end = stay.left.earliest if stay.left is not None else max(as_of, start)
    tooltip = describe(stay.joined, "joined")
    tooltip += "; " + (describe(stay.left, "left") if stay.left is not None
                       else f"still present at the last poll, {when(as_of)}")
    out = [_rect(scale.x(start), scale.x(end), top, BAR_HEIGHT, tooltip, fill=STAY_COLOUR,
                 **{"class": "stay" if stay.left is not None else "stay present"})]
    third = BAR_HEIGHT / 3
    for span in stay.spans:
        span_end = span.end or (stay.left.latest if stay.left is not None else end)
        drawn_end = min(span_end, end)  # not over the hatched leave
        out.append(_rect(scale.x(span.start), scale.x(max(drawn_end, span.start)),
                         top + third * SPAN_ROWS[span.kind], third,
                         f"{span.kind.replace('_', ' ')} from {when(span.start)}"
                         + (f" to {when(span_end)}" if span.end else " to the end of the stay"),
                         fill=SPAN_COLOURS[span.kind], **{"class": f"span {span.kind}"}))
    out += edge(stay.joined, scale, top - 2, BAR_HEIGHT + 4, "joined")
    if stay.left is not None:
        out += edge(stay.left, scale, top - 2, BAR_HEIGHT + 4, "left")
    else:
        x = scale.x(end)
        out.append(_tag("polyline", {"class": "open", "fill": "none",
                                     "points": f"{x},{top} {x + 6},{top + BAR_HEIGHT / 2} "
                                               f"{x},{top + BAR_HEIGHT}"}))
    return out


def _short(text: str, room: int) -> str:
    return text if len(text) <= room else text[:room - 1] + "…"


def lane(lane: Lane, index: int, scale: Scale, y: float, as_of: datetime) -> str:
    """One member's lane as a ``<g class="lane">``."""
    shade = _tag("rect", {"x": 0, "y": y, "width": WIDTH, "height": LANE_HEIGHT,
                          "fill": "#dfe6ef", "fill-opacity": 0.45 if index % 2 else 0})
    tooltip = f"member {lane.member_id}"
    if lane.call_control_id and lane.call_control_id != lane.member_id:
        tooltip += f" (call {lane.call_control_id})"
    label = _tag("text", {"class": "member", "x": 8, "y": y + 14},
                 _title(tooltip) + escape(_short(lane.member_id, 34)))
    shapes = [s for stay in lane.stays for s in stay_shapes(stay, scale, y, as_of)]
    return _tag("g", {"class": "lane", "data_member": lane.member_id,
                      "data_stays": len(lane.stays)}, shade + label + "".join(shapes))


def legend(y: float) -> list[str]:
    """Swatches for every kind of shape in the picture."""
    fills: dict[str, str] = {**STATUS_COLOURS, "present": STAY_COLOUR,
                             **{k.replace("_", " "): c for k, c in SPAN_COLOURS.items()}}
    items: list[tuple[str, dict[str, object]]] = [(name, {"fill": c}) for name, c in fills.items()]
    items.append(("between two polls", {"fill": "url(#hatch)", "stroke": "#555",
                                        "stroke-width": 0.5}))
    out: list[str] = []
    x = 12.0
    for name, attrs in items:
        out.append(_tag("rect", {"x": x, "y": y, "width": 18, "height": 11, **attrs}))
        out.append(_tag("text", {"x": x + 23, "y": y + 10}, escape(name)))
        x += 23 + len(name) * CHAR_WIDTH + 16
    out.append(_tag("line", {"class": "exact", "x1": x + 9, "x2": x + 9, "y1": y - 2,
                             "y2": y + 13}))
    out.append(_tag("text", {"x": x + 18, "y": y + 10}, "exact (the provider's time)"))
    x += 18 + 28 * CHAR_WIDTH + 16
    out.append(_tag("line", {"class": "first-seen", "x1": x + 9, "x2": x + 9, "y1": y - 2,
                             "y2": y + 13}))
    out.append(_tag("text", {"x": x + 18, "y": y + 10}, "first seen (earlier unknown)"))
    return out


def svg(width: float, height: float, body: Iterable[str], *, label: str) -> str:
    """A standalone ``<svg>`` element."""
    return (f"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" "
            f"viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label={quoteattr(label)}>"
            f"<style>{STYLE}</style>{DEFS}{''.join(body)}</svg>")


def head(timeline: Timeline, scale: Scale, title: str | None = None, subtitle: str = ""
         ) -> tuple[list[str], float]:
    """Title (when given: an SVG file has no page around it), legend, axis and status bands;
    returns the shapes and their height."""
    top = 46.0 if title is not None else 0.0
    height = HEAD_HEIGHT + top
    out = [_tag("rect", {"x": 0, "y": 0, "width": WIDTH, "height": height, "fill": "#fff"})]
    if title is not None:
        out += [_tag("text", {"class": "title", "x": 12, "y": 22}, escape(title)),
                _tag("text", {"x": 12, "y": 40}, escape(subtitle))]
    out += [
        *legend(top + 8),
        *axis(scale, top + 58, height, labels_above=True),
        *bands(timeline, scale, top + 94, 26),
        _tag("text", {"x": 12, "y": top + 111}, "status"),
        _tag("text", {"x": 12, "y": height - 2},
             f"members ({len(timeline.lanes)})" if timeline.lanes else "no members recorded"),
    ]
    return out, height


def lanes(timeline: Timeline, scale: Scale, top: float = 0) -> tuple[list[str], float]:
    """Every member's lane and the bottom axis; returns the shapes and their height."""
    as_of = timeline.conference.last_observed_at or timeline.end
    height = len(timeline.lanes) * LANE_HEIGHT
    out = axis(scale, top + height + 4, top, labels_above=False)  # the grid under the lanes
    out += [lane(each, index, scale, top + index * LANE_HEIGHT, as_of)
            for index, each in enumerate(timeline.lanes)]
    return out, height + AXIS_HEIGHT
