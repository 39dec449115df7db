"""The files ``poller report timeline`` writes: a standalone SVG, an HTML page, an index page.

The HTML page is self-contained (inline SVG and CSS; no script, no network): a summary of the
conference, its status transitions as a table, then the picture, whose head (legend, time axis,
status bands) stays in view while the member lanes scroll beneath it. The SVG file is the same
picture in one piece. The index page lists conferences, newest first, each linking to its page.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from datetime import datetime
from html import escape

from poller.reports.tables import format_duration, format_time
from poller.reports.timeline import Timeline
from poller.reports.timeline_svg import WIDTH, Scale, describe, head, lanes, svg
from poller.store.timeline import ConferenceEntry

PAGE_STYLE = """
body { font: 14px sans-serif; color: #222; margin: 16px 24px; }
h1 { font-size: 20px; margin: 0 0 8px; }
table { border-collapse: collapse; margin: 8px 0 16px; }
th, td { text-align: left; padding: 3px 12px 3px 0; border-bottom: 1px solid #e4e4e4; }
th { color: #555; font-weight: normal; }
td.n { text-align: right; }
.mono { font-family: monospace; }
.head { position: sticky; top: 0; z-index: 1; background: #fff; }
.picture { width: WIDTHpx; }
.note { color: #666; font-size: 12px; }
""".replace("WIDTH", str(WIDTH))


def page_name(provider: str, conference_id: str, account: str | None = None, *,
              unique: bool = False) -> str:
    """A file name for one conference's page (``.html``), safe on every file system: no path
    separators, no leading dot. ``unique`` adds a short hash of the exact provider, account
    and ID, so that two conferences whose names clean up alike never share a file (index
    pages)."""
    parts = [provider, *([account] if account else []), conference_id]
    name = "-".join(re.sub(r"[^A-Za-z0-9._-]+", "_", part).strip(".")[:80] for part in parts)
    if unique:
        digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:10]
        name = f"{name}-{digest}"
    return f"timeline-{name}.html"


def _title(timeline: Timeline) -> str:
    c = timeline.conference
    name = f" “{c.name}”" if c.name else ""
    return f"{c.provider} · {c.account} · {c.conference_id}{name}"


def _subtitle(timeline: Timeline) -> str:
    c = timeline.conference
    parts = [f"status {c.status}"]
    if c.created_at is not None:
        parts.append(f"created {format_time(c.created_at)}")
    if c.completed_at is not None:
        parts.append(f"completed {format_time(c.completed_at)} ({c.completed_at_source})")
        if c.created_at is not None:
            lasted = (c.completed_at - c.created_at).total_seconds()
            parts.append(f"lasted {format_duration(lasted)}")
    if c.end_reason:
        parts.append(f"end reason {c.end_reason}")
    if c.gone_at is not None:
        parts.append(f"gone (404) since {format_time(c.gone_at)}")
    if c.last_observed_at is not None:
        parts.append(f"last poll {format_time(c.last_observed_at)}")
    return " · ".join(parts) + " · times UTC"


def render_svg(timeline: Timeline) -> str:
    """The whole picture as one SVG document."""
    scale = Scale.of(timeline)
    top, top_height = head(timeline, scale, _title(timeline), _subtitle(timeline))
    body, height = lanes(timeline, scale, top=top_height + 4)
    return ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            + svg(WIDTH, top_height + 4 + height, [*top, *body], label=_title(timeline)) + "\n")


def _exact_share(timeline: Timeline) -> str:
    edges = [m for lane in timeline.lanes for stay in lane.stays
             for m in (stay.joined, stay.left) if m is not None]
    exact = sum(1 for m in edges if m.exact)
    return f"{exact} of {len(edges)} join and leave times exact" if edges else "no stays"


def _transitions_table(timeline: Timeline) -> str:
    rows = []
    for band in timeline.bands:
        previous = timeline.bands[band.seq - 2].status if band.seq > 1 else "(new)"
        rows.append(f"<tr><td>{band.seq}</td><td>{escape(previous)} → {escape(band.status)}"
                    f"</td><td>{escape(describe(band.start, 'changed'))}</td>"
                    f"<td>{escape(band.end_reason or '')}</td></tr>")
    return ("<table><tr><th>#</th><th>transition</th><th>when</th><th>end reason</th></tr>"
            + "".join(rows) + "</table>")


def render_html(timeline: Timeline, *, generated_at: datetime, index: str | None = None
                ) -> str:
    """The conference's self-contained HTML page (``index``: a link back to an index page)."""
    scale = Scale.of(timeline)
    title = _title(timeline)
    shapes, top_height = head(timeline, scale)
    top = svg(WIDTH, top_height, shapes, label=f"{title}: status")
    body, height = lanes(timeline, scale)
    members = svg(WIDTH, height, body, label=f"{title}: members")
    stays = sum(len(lane.stays) for lane in timeline.lanes)
    back = f"<p><a href=\"{escape(index)}\">← all conferences</a></p>" if index else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{escape(title)}</title>
<style>{PAGE_STYLE}</style></head>
<body>
{back}<h1>{escape(title)}</h1>
<p>{escape(_subtitle(timeline))}<br>
{len(timeline.lanes)} members, {stays} stays; {escape(_exact_share(timeline))}.</p>
{_transitions_table(timeline)}
<div class="picture"><div class="head">{top}</div>{members}</div>
<p class="note">A sharp black edge is a time the provider gave; a hatched span is a change that
happened somewhere between two polls (the last that saw the old state and the first that saw
the new one). Hover a shape for its times to the millisecond. Drawn by poller report timeline
at {escape(format_time(generated_at))}.</p>
</body></html>
"""


def render_index(entries: Sequence[ConferenceEntry], pages: Sequence[str], *,
                 generated_at: datetime, heading: str) -> str:
    """An HTML page listing ``entries``, each linking to the page of the same position."""
    rows = []
    for entry, page in zip(entries, pages, strict=True):
        completed = format_time(entry.completed_at) if entry.completed_at else ""
        rows.append(
            f"<tr><td>{escape(format_time(entry.started_at))}</td>"
            f"<td>{escape(entry.provider)}</td><td>{escape(entry.account)}</td>"
            f"<td class=\"mono\"><a href=\"{escape(page)}\">{escape(entry.conference_id)}</a>"
            f"</td><td>{escape(entry.name or '')}</td><td>{escape(entry.status)}</td>"
            f"<td>{escape(completed)}</td><td class=\"n\">{entry.members}</td></tr>")
    table = ("<table><tr><th>started (UTC)</th><th>provider</th><th>account</th>"
             "<th>conference</th><th>name</th><th>status</th><th>completed</th>"
             "<th>members</th></tr>" + "".join(rows) + "</table>") if rows else \
        "<p>No conferences match.</p>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{escape(heading)}</title>
<style>{PAGE_STYLE}</style></head>
<body>
<h1>{escape(heading)}</h1>
{table}
<p class="note">Drawn by poller report timeline at {escape(format_time(generated_at))}.</p>
</body></html>
"""

